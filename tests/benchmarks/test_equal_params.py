"""benchmarks/equal_params/: uniform subsets within a budget, the arms, the protocol, and a smoke run that resumes."""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
from peft import LoraConfig

from benchmarks.compare_picks.choosing import BenchmarkError
from benchmarks.equal_params import agreement, arms, main, report, running, sampling, selection, tasks
from benchmarks.equal_params.skeleton import Skeleton, describe, lora_summary
from peft_ntk_select.candidates import ALL_LINEAR, Candidate
from peft_ntk_select.errors import InvalidConfigError

# ------------------------------------------------------------------------------------- uniform sampling

WEIGHTS = [2, 3, 3, 5, 1, 4]
CAPACITY = 7


def brute_force(weights, capacity):
    """Every nonempty subset (sorted indices) whose weights sum to at most ``capacity``."""
    everything = itertools.chain.from_iterable(
        itertools.combinations(range(len(weights)), size) for size in range(1, len(weights) + 1)
    )
    return [list(subset) for subset in everything if sum(weights[i] for i in subset) <= capacity]


def chi_square_threshold(df: int, z: float = 3.09) -> float:
    """Wilson-Hilferty upper quantile of chi-square with ``df`` degrees of freedom (z = 3.09: p = 0.001)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def test_counting_and_unranking_enumerate_exactly_the_admissible_subsets():
    admissible = brute_force(WEIGHTS, CAPACITY)
    assert sampling.count_subsets(WEIGHTS, CAPACITY) == len(admissible)
    small, room = sampling.reduced(WEIGHTS, CAPACITY)
    counts = sampling.subset_counts(small, room)
    unranked = [sampling.unrank(counts, small, room, index) for index in range(1, counts[0][room])]
    assert sorted(unranked) == sorted(admissible)  # index 1..total is a bijection onto the space


def test_draws_are_uniform_over_the_admissible_subsets_against_brute_force():
    admissible = brute_force(WEIGHTS, CAPACITY)
    generator = random.Random(0)
    draws = 200 * len(admissible)
    seen = Counter(tuple(sampling.sample_subset(WEIGHTS, CAPACITY, generator)) for _ in range(draws))
    assert set(seen) == {tuple(subset) for subset in admissible}
    expected = draws / len(admissible)
    statistic = sum((seen[tuple(subset)] - expected) ** 2 / expected for subset in admissible)
    assert statistic < chi_square_threshold(len(admissible) - 1)


def test_the_gcd_of_the_weights_shrinks_the_table_but_not_the_space():
    weights = [6144, 15360, 6144, 15360, 6144]  # MiniLM's attention and MLP modules at r = 8
    assert sampling.reduced(weights, 18432) == ([2, 5, 2, 5, 2], 6)
    assert sampling.count_subsets(weights, 18432) == len(brute_force(weights, 18432))
    assert sampling.count_subsets(weights, 6143) == 0


def test_distinct_draws_are_seeded_and_the_first_draws_do_not_depend_on_how_many_follow():
    eight = sampling.sample_subsets(WEIGHTS, CAPACITY, 8, random.Random(3))
    assert len({tuple(s) for s in eight}) == 8
    assert sampling.sample_subsets(WEIGHTS, CAPACITY, 3, random.Random(3)) == eight[:3]
    everything = sampling.sample_subsets(WEIGHTS, CAPACITY, 1000, random.Random(0))
    assert len(everything) == len(brute_force(WEIGHTS, CAPACITY))  # never more than the space holds
    with pytest.raises(ValueError, match="no nonempty subset"):
        sampling.sample_subset([5, 6], 4, random.Random(0))


# ------------------------------------------------------------------------------------------- the arms


def candidate(name: str, params: int) -> Candidate:
    return Candidate(name, 0, "q", 1, 1, params)


def test_kappa_fills_the_budget_greedily_in_peft_order_skipping_what_does_not_fit():
    pool = [candidate("a", 4), candidate("b", 5), candidate("c", 2), candidate("d", 3)]
    order = ["classifier", "b", "a", "d", "c"]  # classifier: KappaTune ranks it, it is no candidate
    assert [c.name for c in arms.kappa_fill(order, pool, 8)] == ["b", "d"]  # a (4) does not fit after b: skipped
    assert [c.name for c in arms.kappa_fill(order, pool, 11)] == ["b", "a", "c"]
    assert arms.kappa_fill(order, pool, 1) == []


def test_uniform_rank_is_the_largest_rank_that_fits():
    assert arms.uniform_rank(41_472, 73_728) == 1  # MiniLM: every linear module at rank 1 fits P
    assert arms.uniform_rank(41_472, 18_432) == 0  # but not P/4
    assert arms.uniform_rank(100, 299) == 2


@pytest.fixture(scope="module")
def skeleton(model_dir):
    return Skeleton(str(model_dir), 2)


def test_all_linear_takes_the_largest_uniform_rank_or_is_left_out_with_its_cost(skeleton):
    # tiny BERT: 2 layers, hidden 16, MLP 32; per rank: 4 x (16 + 16) + 2 x (16 + 32) = 224 per layer
    full = 2 * 2 * 8 * 32
    at_p, notes = arms.fixed_arms(skeleton, "P", full, ["all_linear"], r=8, alpha=8)
    assert notes == [] and at_p[0].modules.count("@2") == 12 and at_p[0].placement.lora_params == 2 * 448
    at_quarter, notes = arms.fixed_arms(skeleton, "P/4", full // 4, ["all_linear"], r=8, alpha=8)
    assert at_quarter == [] and "448" in notes[0] and "P/4:all_linear" in notes[0]


def test_every_fixed_arm_is_within_its_budget_with_alpha_fixed(skeleton):
    full = 1024
    for budget, params in (("P", full), ("P/4", full // 4)):
        planned, _ = arms.fixed_arms(skeleton, budget, params, list(arms.ARM_NAMES), r=8, alpha=8, n_random=4,
                                     kappa_order=[c.name for c in skeleton.candidates(ALL_LINEAR, 8)])  # fmt: skip
        names = [arm.name for arm in planned]
        assert {"default", "kappa", "eva", "random:3"} <= set(names) and ("v_only" in names) == (budget == "P/4")
        for arm in planned:
            assert 0 < arm.placement.lora_params <= params
            assert arm.placement.config.lora_alpha == 8
        default = next(arm for arm in planned if arm.name == "default")
        assert default.placement.lora_params == params  # q and v everywhere at r / divisor spend the whole budget
        assert next(arm for arm in planned if arm.name == "eva").placement.config.init_lora_weights == "eva"


def test_kinds_everywhere_lists_every_kind_set_whose_modules_in_every_layer_fit(skeleton):
    # tiny BERT, 2 layers, hidden 16, MLP 32: at rank 2 a kind in every layer costs 2 x 2 x (16 + 16) = 128 LoRA
    # parameters for q, k, v, o and 2 x 2 x (16 + 32) = 192 for up and down
    cost = {"q": 128, "k": 128, "v": 128, "o": 128, "up": 192, "down": 192}
    candidates = skeleton.candidates(ALL_LINEAR, 2)
    for budget in (128, 255, 256, 320, 512):
        space = selection.kinds_everywhere(candidates, budget)
        fitting = {frozenset(combo) for size in range(1, 7) for combo in itertools.combinations(cost, size)
                   if sum(cost[kind] for kind in combo) <= budget}  # fmt: skip
        assert space["layers_per_pick"] == 2 and len(space["kind_sets"]) == len(fitting)
        assert set(map(frozenset, space["kind_sets"])) == fitting
        assert set(space["kinds"]) == set().union(*fitting)
    assert {"q", "v"} in map(set, selection.kinds_everywhere(candidates, 256)["kind_sets"])
    with pytest.raises(BenchmarkError, match="no kind in every layer fits 127"):
        selection.kinds_everywhere(candidates, 127)
    partial = [c for c in candidates if (c.kind, c.layer) != ("o", 1)]  # o only in layer 0: no set may hold it
    assert all("o" not in kinds for kinds in selection.kinds_everywhere(partial, 512)["kind_sets"])
    found = selection.Selections(Path("unused"), lambda: None, [], lora_config=LoraConfig(r=8))
    with pytest.raises(BenchmarkError, match="needs the budget's rank"):  # never silently at the config's rank
        found.select(selection.PICKS["pick:kinds"], "P/4", 256, explicit=False)


def test_an_arm_over_its_budget_is_refused(skeleton):
    config = LoraConfig(
        r=8, lora_alpha=8, task_type="SEQ_CLS", target_modules=["bert.encoder.layer.0.attention.self.query"]
    )
    candidates = skeleton.candidates(ALL_LINEAR, 8)
    assert lora_summary(skeleton, config, candidates, 8) == {"lora_params": 256, "modules": "L0.q"}
    assert arms.make_arm(skeleton, "P/4", "x", config, 256, candidates, 8).placement.lora_params == 256
    with pytest.raises(BenchmarkError, match="over its budget"):
        arms.make_arm(skeleton, "P/4", "x", config, 255, candidates, 8)


def test_a_trained_model_over_its_budget_raises_except_after_eva_which_is_recorded(skeleton, caplog):
    config = LoraConfig(
        r=8, lora_alpha=8, task_type="SEQ_CLS", target_modules=["bert.encoder.layer.0.attention.self.query"]
    )
    candidates = skeleton.candidates(ALL_LINEAR, 8)
    arm = arms.make_arm(skeleton, "P/4", "x", config, 256, candidates, 8)
    trainer = running.ArmTrainer("unused", None, None, candidates, 8, eva=lambda model, budget: None)
    assert trainer.inspect(arm, skeleton.peft(config)) == {"lora_params": 256, "modules": "L0.q"}
    arm.budget_params = 255  # as if EVA or a library change had moved ranks after planning
    with pytest.raises(BenchmarkError, match="over its budget"):
        trainer.inspect(arm, skeleton.peft(config))
    arm.eva = True
    with caplog.at_level("WARNING", logger="equal_params"):
        assert trainer.inspect(arm, skeleton.peft(config))["lora_params"] == 256
    assert "over the budget" in caplog.text


def test_modules_are_short_names_with_the_rank_where_it_is_not_r(skeleton):
    candidates = skeleton.candidates(ALL_LINEAR, 8)
    names = {c.name: c for c in candidates}
    ranks = {"bert.encoder.layer.1.attention.self.value": 4, "bert.encoder.layer.0.attention.self.query": 8}
    assert set(ranks) <= set(names)
    assert describe(ranks, candidates, 8) == "L0.q;L1.v@4"


def test_a_missing_library_feature_skips_its_arm_unless_asked_for(tmp_path, monkeypatch):
    def missing(*args, **kwargs):
        raise TypeError("NTKSelector.__init__() got an unexpected keyword argument 'ranks'")

    monkeypatch.setattr(selection, "NTKSelector", missing)
    found = selection.Selections(tmp_path, lambda: None, [], lora_config=LoraConfig(r=8))
    assert found.select(selection.PICKS["pick:ranks"], "P", 100, explicit=False) is None
    with pytest.raises(BenchmarkError, match="not available"):
        found.select(selection.PICKS["pick:ranks"], "P", 100, explicit=True)
    with pytest.raises(TypeError):  # an arm the library has always had: a real error, never skipped
        found.select(selection.PICKS["pick:lora"], "P", 100, explicit=False)

    def invalid(*args, **kwargs):
        raise InvalidConfigError("unknown kernel 'adam'")

    monkeypatch.setattr(selection, "NTKSelector", invalid)
    assert found.select(selection.PICKS["pick:adam"], "P", 100, explicit=False) is None
    assert selection.PICKS["pick:ranks"].keywords(8)["ranks"] == (2, 4, 8, 16)


def test_another_budget_of_a_pick_reranks_its_stored_kernels_and_picks_what_a_fresh_selection_picks(
    model_dir, tmp_path, monkeypatch
):
    from peft_ntk_select.cli.loading import load_classifier, load_tokenizer

    rows = [{"text": f"review {i} was {'good' if i % 2 else 'bad'} and long", "label": i % 2} for i in range(16)]
    train = tasks.make_splits(rows, load_tokenizer(str(model_dir)), (8, 4, 4), seed=0, max_length=16).train

    def folder(name, seed=0, **lora):
        def load():
            return load_classifier(str(model_dir), 2, seed=0)[0]

        return selection.Selections(tmp_path / name, load, train, lora_config=LoraConfig(**{"r": 8, **lora}),
                                    num_samples=8, seed=seed)  # fmt: skip

    pick = selection.PICKS["pick:lora"]
    fresh = folder("fresh").select(pick, "P/4", 600, explicit=False)
    reused = folder("reused")
    reused.select(pick, "P", 2400, explicit=False)
    assert (tmp_path / "reused" / "selection_lora_P" / selection.KERNELS_FILE).is_file()

    def must_not_run(*args, **kwargs):
        raise AssertionError("the kernels were computed again")

    monkeypatch.setattr(selection.NTKSelector, "select", must_not_run)
    picked = reused.select(pick, "P/4", 600, explicit=False)
    assert sorted(picked.target_modules) == sorted(fresh.target_modules)
    assert reused.info("pick:lora", "P/4")["kernels_reused"] and not reused.info("pick:lora", "P")["kernels_reused"]
    ranking = [json.loads((tmp_path / name / "selection_lora_P4" / "ranking.json").read_text()) for name in
               ("fresh", "reused")]  # fmt: skip
    assert [e["modules"] for e in ranking[0]] == [e["modules"] for e in ranking[1]]
    with pytest.raises(AssertionError, match="computed again"):  # another kernel never reuses lora's
        reused.select(selection.PICKS["pick:expected"], "P/4", 600, explicit=False)
    with pytest.raises(AssertionError, match="computed again"):  # nor does another selection seed
        folder("reused", seed=1).select(pick, "P/2", 1200, explicit=False)
    for lora in ({"r": 4}, {"lora_alpha": 16}, {"use_rslora": True}):  # nor another rank or scaling
        with pytest.raises(AssertionError, match="computed again"):
            folder("reused", **lora).select(pick, "P/2", 1200, explicit=False)


# -------------------------------------------------------------------------------------- data and protocol


def test_splits_are_disjoint_and_the_test_split_shrinks_to_what_is_left(caplog):
    train, val, test = tasks.split_indices(100, (50, 20, 30), seed=0)
    assert (len(train), len(val), len(test)) == (50, 20, 30)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert tasks.split_indices(100, (50, 20, 30), seed=0) == (train, val, test)
    with caplog.at_level("WARNING", logger="equal_params"):
        assert len(tasks.split_indices(100, (50, 20, 600), seed=0)[2]) == 30
    assert "lowered" in caplog.text
    with pytest.raises(BenchmarkError, match="lower them"):
        tasks.split_indices(100, (90, 20, 5), seed=0)


def run(key, lr, seed, val_accuracy, val_loss=0.5):
    return {"key": key, "lr": lr, "seed": seed, "val_accuracy": val_accuracy, "val_loss": val_loss}


def test_the_learning_rate_is_seed_zeros_best_validation_accuracy_then_loss_then_the_smaller_rate():
    lrs = [1e-3, 5e-3]
    assert running.choose_lr([run("a", 1e-3, 0, 0.7), run("a", 5e-3, 0, 0.8)], lrs) == 5e-3
    assert running.choose_lr([run("a", 1e-3, 0, 0.8, 0.4), run("a", 5e-3, 0, 0.8, 0.3)], lrs) == 5e-3
    assert running.choose_lr([run("a", 1e-3, 0, 0.8), run("a", 5e-3, 0, 0.8)], lrs) == 1e-3
    assert running.choose_lr([run("a", 1e-3, 0, 0.7), run("a", 5e-3, 1, 0.9)], lrs) == 1e-3  # seed 0 only
    assert running.choose_lr([run("a", 1e-3, 0, 0.7), run("a", 1e-2, 0, 0.9)], lrs) == 1e-3  # among --lrs
    assert running.choose_lr([], lrs) is None


class FakeArm:
    def __init__(self, key):
        self.key = key


def fake_trainer(calls):
    def train(arm, lr, seed):
        calls.append((arm.key, lr, seed))
        accuracy = {("a", 1e-3): 0.9, ("a", 5e-3): 0.6, ("b", 1e-3): 0.6, ("b", 5e-3): 0.9}[(arm.key, lr)]
        return {name: 0 for name in running.RUN_FIELDS} | {"key": arm.key, "budget": "P", "arm": arm.key, "lr": lr,
                                                            "seed": seed, "budget_params": 1, "val_accuracy": accuracy,
                                                            "test_accuracy": accuracy}  # fmt: skip

    return train


def test_seed_zero_runs_every_rate_of_every_arm_first_then_other_seeds_only_at_the_chosen_rate(tmp_path):
    calls = []
    path = tmp_path / "runs.csv"
    rows = running.run_study([FakeArm("a"), FakeArm("b")], [1e-3, 5e-3], [1, 2], path, fake_trainer(calls), False)
    assert calls[:4] == [("a", 1e-3, 0), ("a", 5e-3, 0), ("b", 1e-3, 0), ("b", 5e-3, 0)]
    assert calls[4:] == [("a", 1e-3, 1), ("a", 1e-3, 2), ("b", 5e-3, 1), ("b", 5e-3, 2)]
    assert len(rows) == 8
    again = []
    running.run_study([FakeArm("a"), FakeArm("b")], [1e-3, 5e-3], [1, 2], path, fake_trainer(again), False)
    assert again == []  # resumed: nothing is trained twice
    running.run_study([FakeArm("a"), FakeArm("b")], [1e-3, 5e-3], [1, 2, 3], path, fake_trainer(again), False)
    assert again == [("a", 1e-3, 3), ("b", 5e-3, 3)]


def test_the_report_pairs_each_arm_with_the_default_arm_and_takes_the_median_random_placement():
    def rows(key, accuracies):
        return [{"key": key, "budget": "P", "arm": key.split(":", 1)[1], "lr": 1e-3, "seed": seed,
                 "val_accuracy": acc, "val_loss": 0.5, "test_accuracy": acc, "test_loss": 0.5, "lora_params": 10,
                 "budget_params": 10, "modules": "L0.q", "train_seconds": 1.0}
                for seed, acc in accuracies.items()]  # fmt: skip

    runs = [*rows("P:default", {0: 0.7, 1: 0.7}), *rows("P:pick:lora", {0: 0.8, 1: 0.6}),
            *rows("P:random:0", {0: 0.5, 1: 0.9}), *rows("P:random:1", {0: 0.6, 1: 0.5}),
            *rows("P:random:2", {0: 0.8, 1: 0.7})]  # fmt: skip
    keys = ["P:default", "P:pick:lora", "P:random:0", "P:random:1", "P:random:2"]
    table = report.summarize(runs, keys, {"P": 10}, [1e-3], [1])["budgets"]["P"]
    by_arm = {row["arm"]: row for row in table["arms"]}
    assert by_arm["pick:lora"]["wins"] == 1 and by_arm["pick:lora"]["paired_seeds"] == 2
    median = by_arm["random (median of 3)"]  # seed 0: median 0.6, seed 1: median 0.7
    assert median["per_seed_test_accuracy"] == {0: 0.6, 1: 0.7} and median["test_accuracy"] == pytest.approx(0.65)
    assert median["wins"] == 0 and median["ties"] == 1


# ------------------------------------------------------------------------------------------------ smoke


@pytest.fixture(scope="module")
def smoke(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("equal_params") / "out"
    argv = ["--smoke", "--model", str(model_dir), "--output", str(out), "--no-progress"]
    return argv, out, main.main(argv)


def test_smoke_run_trains_every_arm_once_within_its_budget_and_writes_every_output(smoke):
    argv, out, summary = smoke
    assert {p.name for p in out.iterdir()} >= {"runs.csv", "summary.json", "report.txt", "config.json",
                                               "selection.json", "selection_lora_P4", "eva_P4.pt"}  # fmt: skip
    with (out / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    keys = {row["key"] for row in runs}
    assert {"P/4:default", "P/4:v_only", "P/4:pick:lora", "P/4:pick:expected", "P/4:pick:attention", "P/4:kappa",
            "P/4:pick:kinds", "P/4:eva", "P/4:random:0", "P/4:random:1", "head_only"} <= keys  # fmt: skip
    assert len(runs) == len(keys) and {row["seed"] for row in runs} == {"0"} and {row["steps"] for row in runs} == {"2"}
    for row in runs:
        assert row["key"] == "head_only" or 0 < int(row["lora_params"]) <= int(row["budget_params"])
        assert 0 <= float(row["test_accuracy"]) <= 1 and 0 <= float(row["val_accuracy"]) <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["r"] == 8 and config["lrs"] == [5e-3] and "versions" in config["metadata"]
    assert summary["budgets"]["P/4"]["budget_params"] == 256 and "P/4:all_linear left out" in " ".join(summary["notes"])
    assert "random (median of 2)" in (out / "report.txt").read_text()


def test_pick_kinds_trains_one_kind_set_in_every_layer_at_the_budgets_rank_and_its_ranking_holds_only_such_sets(
    smoke, model_dir
):
    from peft import get_peft_model

    from peft_ntk_select.cli.loading import load_classifier

    _, out, summary = smoke
    folder = out / "selection_kinds_P4"
    config = LoraConfig.from_pretrained(str(folder))
    assert config.r == 2  # P/4: the default arm's rank r / 4
    model = get_peft_model(load_classifier(str(model_dir), 2, seed=0)[0], config)
    adapted = {name.removesuffix(".lora_A.default"): module.weight.shape[0]
               for name, module in model.named_modules() if name.endswith(".lora_A.default")}  # fmt: skip
    layers = {int(name.split(".layer.")[1].split(".")[0]) for name in adapted}
    kinds = {name.split(".layer.")[1].split(".", 1)[1] for name in adapted}
    assert layers == {0, 1} and len(adapted) == 2 * len(kinds) and set(adapted.values()) == {2}
    trained = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    planned = next(arm for arm in summary["planned"] if arm["key"] == "P/4:pick:kinds")
    assert trained == planned["lora_params"] <= planned["budget_params"] == 256
    ranking = json.loads((folder / "ranking.json").read_text())
    for entry in ranking:
        short = [module.split(".layer.")[1] for module in entry["modules"]]
        entry_kinds = {name.split(".", 1)[1] for name in short}
        assert {int(name.split(".")[0]) for name in short} == {0, 1} and len(short) == 2 * len(entry_kinds)
    assert sorted(ranking[0]["modules"]) == sorted(config.target_modules)


def test_a_second_run_trains_and_selects_nothing_and_reports_the_same(smoke, monkeypatch):
    argv, out, summary = smoke

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run or selection was repeated")

    monkeypatch.setattr(running, "train_subset", must_not_run)
    monkeypatch.setattr(selection.NTKSelector, "select", must_not_run)
    lines = (out / "runs.csv").read_text().count("\n")
    again = main.main(argv)
    assert (out / "runs.csv").read_text().count("\n") == lines
    assert again["budgets"] == summary["budgets"]


def test_a_folder_made_with_other_run_settings_is_refused(smoke):
    argv, out, _ = smoke
    with pytest.raises(BenchmarkError, match="other settings"):
        main.main([*argv, "--r", "4"])
    with pytest.raises(BenchmarkError, match="other settings"):
        main.main([*argv, "--train-size", "24"])


# ------------------------------------------------------------------------------------ shards (several processes)


def test_shards_partition_the_arms_and_each_shard_runs_its_arms_whole(tmp_path):
    five = [FakeArm(key) for key in "abcde"]
    assert [[arm.key for arm in running.shard_arms(five, index, 3)] for index in range(3)] == [["a", "d"], ["b", "e"],
                                                                                                ["c"]]  # fmt: skip
    arms = [FakeArm("a"), FakeArm("b")]
    shards = [running.shard_arms(arms, index, 2) for index in range(2)]
    path = tmp_path / "runs.csv"
    running.start_runs(path)
    calls = []
    for shard in shards:  # one after another here; on a GPU, at once
        running.run_study(shard, [1e-3, 5e-3], [1], path, fake_trainer(calls), False)
    alone = []
    running.run_study(arms, [1e-3, 5e-3], [1], tmp_path / "alone.csv", fake_trainer(alone), False)
    assert sorted(calls) == sorted(alone)  # the same runs, chosen rates included
    again = []
    running.run_study(arms, [1e-3, 5e-3], [1], path, fake_trainer(again), False)
    assert again == []  # the final pass trains nothing
    assert path.read_text().count("key,") == 1  # one header


@pytest.mark.parametrize("text", ["2/2", "a/2", "1", "-1/2"])
def test_a_bad_shard_is_refused(text):
    with pytest.raises(BenchmarkError, match="--shard"):
        running.parse_shard(text)


def test_prepare_then_shards_then_a_final_pass_give_the_single_process_runs(smoke, model_dir, tmp_path):
    _, single, summary = smoke
    out = tmp_path / "sharded"
    argv = ["--smoke", "--model", str(model_dir), "--output", str(out), "--no-progress"]
    prepared = main.main([*argv, "--prepare"])
    assert (out / "runs.csv").read_text().count("\n") == 1 and not (out / "summary.json").exists()
    shards = [main.main([*argv, "--shard", f"{index}/2"]) for index in range(2)]
    assert sorted(key for shard in shards for key in shard["arms"]) == sorted(prepared["prepared"])
    final = main.main(argv)

    def runs(folder):
        with (folder / "runs.csv").open() as handle:
            return {(row["key"], row["lr"], row["seed"]): row["test_accuracy"] for row in csv.DictReader(handle)}

    assert runs(out) == runs(single)  # the same training, whichever process ran it

    def accuracies(result):
        return {(row["key"], row["lr"]): row["test_accuracy"] for budget in result["budgets"].values()
                for row in budget["arms"]}  # fmt: skip

    assert accuracies(final) == accuracies(summary)


# ------------------------------------------------------------------ agreement: does the score order placements?


def test_spearman_is_the_textbook_formula_without_ties_and_ranks_ties_at_their_mean():
    generator = random.Random(0)
    for _ in range(50):
        m = generator.randint(3, 12)
        x, y = generator.sample(range(100), m), generator.sample(range(100), m)
        rank_x = {v: i for i, v in enumerate(sorted(x))}
        rank_y = {v: i for i, v in enumerate(sorted(y))}
        d2 = sum((rank_x[a] - rank_y[b]) ** 2 for a, b in zip(x, y, strict=True))
        assert agreement.spearman(x, y) == pytest.approx(1 - 6 * d2 / (m * (m * m - 1)))
        assert agreement.spearman(x, [v**3 for v in x]) == pytest.approx(1.0)  # only the order counts
    assert agreement.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9))  # ties: ranks 2.5, 2.5
    assert agreement.spearman([1, 2], [2, 1]) is None and agreement.spearman([1, 1, 1], [1, 2, 3]) is None
    assert agreement.spearman([1, float("nan"), 3], [1, 2, 3]) is None


def test_placement_scores_follow_pefts_modules_and_ranks_and_agree_with_the_selections_own_ranking(smoke):
    argv, out, _ = smoke
    payload = main.main([*argv, "--score-placements"])
    assert json.loads((out / agreement.SCORES_FILE).read_text())["scores"] == payload["scores"]
    scores, unscored = payload["scores"], payload["unscored"]
    assert {"P/4:default", "P/4:v_only", "P/4:pick:lora", "P/4:pick:ranks", "P/4:random:0"} <= set(scores)
    assert set(unscored) >= {"P/4:eva", "head_only"} and not set(scores) & set(unscored)
    top = json.loads((out / "selection_ranks_P4" / "ranking.json").read_text())[0]
    assert scores["P/4:pick:ranks"]["score"] == pytest.approx(top["score"], rel=1e-9)
    assert scores["P/4:pick:ranks"]["ratio"] == pytest.approx(top["ratio"], rel=1e-9)
    assert payload["kernels"]["pick"] == "pick:ranks" and "versions" in payload["metadata"]
    rows = agreement.agreement([out])
    assert [(row["task"], row["budget"]) for row in rows] == [("reviews", "P/4")]
    assert rows[0]["arms"] == len(scores) and set(rows[0]["test"]) == set(agreement.STATISTICS)
    assert "rho(score)" in agreement.render(rows, markdown=True)
    with pytest.raises(BenchmarkError, match="not per shard"):
        main.main([*argv, "--score-placements", "--shard", "0/2"])


def test_a_model_folder_that_does_not_exist_is_named_before_anything_runs(tmp_path):
    """transformers would call a missing folder a bad hub name; the study says there is no such folder."""
    from peft_ntk_select.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="no such folder"):
        main.main(["--task", "reviews", "--model", str(tmp_path / "no_model"), "--output", str(tmp_path / "out")])

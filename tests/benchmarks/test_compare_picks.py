"""benchmarks/compare_picks/: subset choice, statistics, and a smoke run end to end that resumes."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import LoraConfig
from transformers import BertForSequenceClassification

from benchmarks.compare_picks import choosing, main, statistics, training
from peft_ntk_select import SelectionResult
from peft_ntk_select.candidates import Candidate
from peft_ntk_select.search.objectives import DEFAULT_OBJECTIVE, OBJECTIVES
from peft_ntk_select.settings import RankingSettings

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def tiny_result(layers: int = 4, budget: int = 3) -> SelectionResult:
    """A selection over layers x (q, k, v) candidates from random PSD kernels, every subset ranked."""
    generator = torch.Generator().manual_seed(0)
    n = 6
    candidates = [
        Candidate(f"encoder.layer.{layer}.attention.{name}", layer, kind, 16, 16, 8 * 32)
        for layer in range(layers)
        for kind, name in (("q", "query"), ("k", "key"), ("v", "value"))
    ]
    factors = torch.randn(len(candidates), n, 3, generator=generator, dtype=torch.float64)
    contributions = factors @ factors.transpose(1, 2)
    base = torch.eye(n, dtype=torch.float64) * 10
    config = LoraConfig(r=8, lora_alpha=8, task_type="SEQ_CLS")
    settings = RankingSettings(budget=budget, sigma=1e-4, search="exhaustive")  # the script's selection
    return SelectionResult.from_kernels(candidates, base, contributions, config, settings=settings, seed=0,
                                        sample_indices=list(range(n)), engine="func", output_mode="trace")  # fmt: skip


def by_role(placements, role):
    return [p for p in placements if role in p.roles]


def short(placement, result):
    names = choosing.short_names(result.candidates)
    return [names[m] for m in placement.modules]


# ------------------------------------------------------------------------------------------ subset choice


def test_ranked_subsets_are_evenly_spaced_and_include_top_and_bottom():
    result = tiny_result()
    placements = choosing.choose_subsets(result, n_ranked=10, n_random=0, baselines=())
    ranks = sorted(p.rank for p in placements)
    assert len(placements) == 10 and ranks[0] == 0 and ranks[-1] == len(result.ranking) - 1 == 219
    assert [p.rank for p in by_role(placements, "top")] == [0]
    assert [p.rank for p in by_role(placements, "bottom")] == [219]
    assert max(np.diff(ranks)) - min(np.diff(ranks)) <= 1
    assert choosing.ranked_positions(220, 1) == [0]


def test_random_subsets_are_distinct_members_of_the_space_and_seeded():
    result = tiny_result()
    space = {frozenset(entry.modules) for entry in result.ranking}
    placements = by_role(choosing.choose_subsets(result, n_ranked=2, n_random=8, seed=3, baselines=()), "random")
    assert len(placements) == 8 and len({p.modules for p in placements}) == 8
    assert all(frozenset(p.modules) in space and p.rank is not None for p in placements)
    again = by_role(choosing.choose_subsets(result, n_ranked=2, n_random=8, seed=3, baselines=()), "random")
    assert [p.key for p in again] == [p.key for p in placements]


def test_last_and_first_layer_baselines_prefer_query_and_value():
    result = tiny_result()
    placements = choosing.choose_subsets(result, n_ranked=2, n_random=0, baselines=("last_layers", "first_layers"))
    assert sorted(short(by_role(placements, "last_layers")[0], result)) == ["L2.q", "L3.q", "L3.v"]
    assert sorted(short(by_role(placements, "first_layers")[0], result)) == ["L0.q", "L0.v", "L1.q"]
    only_keys = [c for c in result.candidates if c.kind == "k" or c.layer == 0]
    assert [c.kind for c in choosing.layer_pick(only_keys, 3, last=True)] == ["q", "v", "k"]  # k only when q/v run out


def test_kappa_baseline_takes_the_best_ranked_candidates_of_peft_order():
    result = tiny_result()
    names = [c.name for c in result.candidates]
    order = ["classifier", names[5], "encoder.layer.0.output.dense", names[1], names[7], names[0]]
    placements = choosing.choose_subsets(result, n_ranked=2, n_random=0, kappa_order=order, baselines=("kappa",))
    assert set(by_role(placements, "kappa")[0].modules) == {names[5], names[1], names[7]}


def test_default_placement_and_head_only_are_planned_outside_the_space():
    result = tiny_result()
    placements = choosing.choose_subsets(result, n_ranked=2, n_random=0, baselines=("default", "head_only"))
    default = next(p for p in placements if p.key == "default")
    assert len(default.modules) == 8 and {m.rsplit(".", 1)[-1] for m in default.modules} == {"query", "value"}
    assert default.rank is None and default.lora_params == 8 * 256
    assert set(default.config.target_modules) == set(default.modules)
    head = next(p for p in placements if p.key == "head_only")
    assert head.modules == () and head.config is None


def test_a_subset_chosen_twice_is_trained_once_with_both_roles():
    result = tiny_result()
    placements = choosing.choose_subsets(result, n_ranked=10, n_random=220, baselines=())
    assert len(placements) == 220
    assert "random" in by_role(placements, "top")[0].roles


def test_unknown_baseline_is_refused():
    with pytest.raises(choosing.BenchmarkError, match="unknown baselines"):
        choosing.choose_subsets(tiny_result(), baselines=("everything",))


# ------------------------------------------------------------------------------------------- statistics


def test_spearman_with_ties_matches_a_hand_computation():
    x, y = [1.0, 2.0, 2.0, 3.0], [1.0, 3.0, 2.0, 4.0]
    assert statistics.average_ranks(x).tolist() == [1.0, 2.5, 2.5, 4.0]
    # ranks x: 1, 2.5, 2.5, 4; ranks y: 1, 3, 2, 4; centred: (-1.5, 0, 0, 1.5) and (-1.5, .5, -.5, 1.5)
    assert statistics.spearman(x, y) == pytest.approx(4.5 / math.sqrt(4.5 * 5.0))
    assert statistics.spearman([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)
    assert math.isnan(statistics.spearman([1, 1, 1], [1, 2, 3]))


def test_kendall_is_tau_b_and_the_batched_version_matches_the_library():
    # pairs: (1,2) concordant, (1,3) concordant, (2,3) tied in x: tau-b = 2 / sqrt(2 * 3)
    assert statistics.kendall([1.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx(2 / math.sqrt(6))
    rows = np.random.default_rng(0).integers(0, 4, size=(2, 5, 9)).astype(float)  # many ties
    batched = statistics.kendall_rows(rows[0], rows[1])
    assert batched == pytest.approx([statistics.kendall(a, b) for a, b in zip(rows[0], rows[1], strict=True)])
    assert statistics.spearman_rows(rows[0], rows[1]) == pytest.approx(
        [statistics.spearman(a, b) for a, b in zip(*rows, strict=True)]
    )


def test_bootstrap_interval_contains_the_point_estimate():
    generator = np.random.default_rng(0)
    x = generator.normal(size=20)
    y = x + generator.normal(size=20)
    row = statistics.correlation(x, y, draws=500, seed=1)
    assert row["n"] == 20
    assert row["spearman_low"] <= row["spearman"] <= row["spearman_high"]
    assert row["kendall_low"] <= row["kendall"] <= row["kendall_high"]
    assert row == statistics.correlation(x, y, draws=500, seed=1)  # seeded


def test_correlation_drops_missing_scores_and_needs_three_pairs():
    row = statistics.correlation([1.0, np.nan, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0], draws=10)
    assert row["n"] == 3 and row["spearman"] == pytest.approx(1.0)
    assert math.isnan(statistics.correlation([1.0, 2.0], [1.0, 2.0])["spearman"])


def _row(key, roles, accuracy):
    return {"key": key, "roles": roles, "lora_params": 1, "seeds": len(accuracy), "per_seed_accuracy": accuracy,
            "eval_accuracy": float(np.mean(list(accuracy.values()))), "rank": None,
            "eval_accuracy_std": float(np.std(list(accuracy.values())))}  # fmt: skip


def test_top_pick_is_paired_by_seed_against_the_median_of_random_subsets():
    rows = [_row("a", "top", {0: 0.7, 1: 0.6}), _row("b", "random", {0: 0.5, 1: 0.9}),
            _row("c", "random", {0: 0.6, 1: 0.5}), _row("d", "random", {0: 0.8, 1: 0.7})]  # fmt: skip
    table = statistics.compare_to_baselines(rows, [0, 1])
    assert table[0]["baseline"].startswith("random (median of 3)")
    assert table[0]["accuracy"] == pytest.approx(0.65) and table[0]["wins"] == 1 and table[0]["seeds"] == 2


def test_sanity_check_fails_when_the_default_placement_does_not_beat_head_only():
    learned = [_row("default", "default", {0: 0.72, 1: 0.70}), _row("head_only", "head_only", {0: 0.60, 1: 0.61})]
    flat = [_row("default", "default", {0: 0.56, 1: 0.55}), _row("head_only", "head_only", {0: 0.55, 1: 0.55})]
    assert statistics.sanity_check(learned, 0.02, 0.5)["passed"] is True
    assert statistics.sanity_check(flat, 0.02, 0.5)["passed"] is False


def test_head_only_trains_only_the_classifier(model_dir):
    model = BertForSequenceClassification.from_pretrained(model_dir)
    training.freeze_all_but_head(model)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}


# ------------------------------------------------------------------------------------------------ smoke


def test_smoke_run_writes_every_output_and_a_rerun_trains_nothing(model_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["--smoke", "--model", str(model_dir), "--output", str(out), "--no-progress"]
    summary = main.main(argv)
    printed = capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"runs.csv", "subsets.csv", "summary.json", "compare_picks.png",
                                               "config.json", "selection.json", "selection_lora",
                                               "selection_expected"}  # fmt: skip
    with (out / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    keys = {p["key"] for p in summary["placements"]}
    assert len(runs) == len(keys) and {r["key"] for r in runs} == keys and {r["seed"] for r in runs} == {"0"}
    assert {"default", "head_only"} <= keys
    roles = {role for p in summary["placements"] for role in p["roles"]}
    assert {"top", "bottom", "kappa", "last_layers", "first_layers"} <= roles
    assert {f"pick:{name}" for name in OBJECTIVES} <= roles  # the smoke data has labels: every objective picks
    assert [row["objective"] for row in summary["objectives"]] == list(OBJECTIVES)
    assert all(row["pick"] is not None and row["seeds"] == 1 for row in summary["objectives"])
    assert all(0.0 <= float(r["eval_accuracy"]) <= 1.0 and int(r["steps"]) == 3 for r in runs)
    names = {(row["score"], row["outcome"]) for row in summary["correlations"]}
    assert ("ratio", "eval_accuracy") in names and ("expected_risk_upper", "final_train_loss") in names
    assert ("objective_max_alignment", "eval_accuracy") in names
    assert ("expected_objective_max_effective_rank", "eval_accuracy") in names
    assert summary["sanity"]["checked"] and summary["times"]["lora"] > 0
    assert "top pick" in printed and "Spearman" in printed and "Table 2" in printed and "ORIENTED" in printed
    assert json.loads((out / "summary.json").read_text())["selection"]["ranked_subsets"] == 20

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run or selection was repeated")

    monkeypatch.setattr(main, "train_subset", must_not_run)
    monkeypatch.setattr(main, "NTKSelector", must_not_run)
    again = main.main(argv)
    assert (out / "runs.csv").read_text().count("\n") == len(runs) + 1
    assert [row["eval_accuracy"] for row in again["subsets"]] == [row["eval_accuracy"] for row in summary["subsets"]]


def test_text_pairs_from_a_csv_and_a_changed_setting_is_refused(model_dir, tmp_path):
    data = tmp_path / "pairs.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["premise", "hypothesis", "gold"])
        for i in range(40):
            writer.writerow([f"the film number {i} was shown", f"it was {'good' if i % 2 else 'bad'}", i % 2])
    out = tmp_path / "out"
    argv = ["--smoke", "--model", str(model_dir), "--data", str(data), "--text-column", "premise",
            "--text-pair-column", "hypothesis", "--label-column", "gold", "--train-size", "24", "--eval-size", "12",
            "--random", "0", "--baselines", "head_only", "--picks", "none", "--output", str(out),
            "--no-progress"]  # fmt: skip
    summary = main.main(argv)
    assert {row["key"] for row in summary["subsets"]} >= {"head_only"} and len(summary["subsets"]) == 3
    with pytest.raises(choosing.BenchmarkError, match="other settings"):
        main.main([*argv, "--lr", "1e-2"])


def test_a_line_cut_short_by_an_interruption_is_skipped_and_the_next_run_appends_cleanly(tmp_path):
    path = tmp_path / "runs.csv"
    row = {"key": "a", "seed": 0, "roles": "top", "modules": "m", "lora_params": 1, "trainable_params": 2, "steps": 3,
           "train_loss": 0.5, "final_train_loss": 0.4, "eval_loss": 0.6, "eval_accuracy": 0.7, "train_seconds": 1.0,
           "eval_seconds": 0.1}  # fmt: skip
    training.append_run(path, row)
    with path.open("a") as handle:
        handle.write("b,0,ran")  # killed mid-write
    assert [r["key"] for r in training.read_runs(path)] == ["a"]
    training.append_run(path, {**row, "key": "c", "seed": 1})
    assert [(r["key"], r["seed"]) for r in training.read_runs(path)] == [("a", 0), ("c", 1)]


def test_objective_scores_are_each_objectives_score_in_the_reranked_result():
    result = tiny_result()
    modules = result.ranking[5].modules
    reranked = choosing.rerankings(result, list(OBJECTIVES))
    assert set(reranked) == {name for name, o in OBJECTIVES.items() if not o.needs_targets}  # no labels: left out
    scores = statistics.objective_scores(reranked, modules)
    assert scores["objective_min_ratio"] == scores["objective_max_ratio"] == pytest.approx(result.ranking[5].ratio)
    assert scores["objective_min_kappa"] == pytest.approx(result.ranking[5].kappa)
    assert scores["objective_min_risk"] is None  # no labels in this result
    assert all(value is None for value in statistics.objective_scores(reranked, []).values())


def test_each_objective_picks_its_best_subset_of_the_ranked_space():
    result = tiny_result()
    assert result.objective == DEFAULT_OBJECTIVE == "max_ratio"
    picks = choosing.objective_picks(result, list(OBJECTIVES))
    assert set(picks) == {name for name, o in OBJECTIVES.items() if not o.needs_targets}  # no labels: skipped
    reranked = choosing.rerankings(result, list(picks))
    for name, modules in picks.items():
        values = [statistics.objective_scores(reranked, e.modules)[f"objective_{name}"] for e in result.ranking]
        best = max(values) if OBJECTIVES[name].maximize else min(values)
        assert statistics.objective_scores(reranked, modules)[f"objective_{name}"] == best
    assert picks["max_ratio"] == tuple(result.ranking[0].modules)
    assert picks["min_ratio"] == tuple(result.ranking[-1].modules)
    placements = choosing.choose_subsets(result, n_ranked=2, n_random=0, baselines=(), picks=picks)
    assert "pick:max_ratio" in placements[0].roles and "pick:min_ratio" in placements[1].roles


def test_objective_table_orients_rho_and_counts_wins_over_the_median_random_subset():
    rows = [_row("a", "ranked pick:max_ratio", {0: 0.8, 1: 0.6}), _row("b", "random", {0: 0.5, 1: 0.9}),
            _row("c", "random pick:min_ratio", {0: 0.6, 1: 0.5}), _row("d", "random", {0: 0.7, 1: 0.7}),
            _row("default", "default", {0: 0.75, 1: 0.75})]  # fmt: skip
    correlation_rows = [
        {"score": "objective_min_ratio", "outcome": "eval_accuracy", "n": 4, "spearman": 0.8,
         "spearman_low": 0.2, "spearman_high": 0.9},
        {"score": "objective_max_ratio", "outcome": "eval_accuracy", "n": 4, "spearman": 0.8,
         "spearman_low": 0.2, "spearman_high": 0.9},
    ]  # fmt: skip
    table = {row["objective"]: row for row in statistics.objective_table(rows, correlation_rows, [0, 1])}
    assert (table["max_ratio"]["spearman"], table["max_ratio"]["spearman_low"]) == (0.8, 0.2)
    assert (table["min_ratio"]["spearman"], table["min_ratio"]["spearman_low"], table["min_ratio"]["spearman_high"]) \
        == (-0.8, -0.9, -0.2)  # fmt: skip
    # medians of the random subsets: seed 0 -> 0.6, seed 1 -> 0.7
    assert table["max_ratio"]["median_random_accuracy"] == pytest.approx(0.65)
    assert table["max_ratio"]["wins_over_median_random"] == 1 and table["max_ratio"]["seeds"] == 2
    assert table["min_ratio"]["wins_over_median_random"] == 0
    assert table["max_ratio"]["default_accuracy"] == pytest.approx(0.75)
    assert table["min_risk"]["pick"] is None and math.isnan(table["min_risk"]["spearman"])


@pytest.mark.parametrize("folder", sorted(RESULTS.glob("compare_picks_*")), ids=lambda path: path.name)
def test_a_committed_result_folder_resumes_with_its_settings_and_refuses_others(folder, tmp_path):
    saved = json.loads((folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(saved))
    argv = ["--output", str(tmp_path), "--data", saved["data"], "--max-length", str(saved["max_length"])]
    args = main.resolve(main.build_parser().parse_args([*argv, "--objective", saved["objective"]]))
    assert main.settings_of(args) == saved  # the keys it stores (n_samples) and every value
    main.check_folder(tmp_path, main.settings_of(args))
    other = "max_ratio" if saved["objective"] != "max_ratio" else "min_ratio"
    args = main.resolve(main.build_parser().parse_args([*argv, "--objective", other]))
    with pytest.raises(choosing.BenchmarkError, match="objective"):
        main.check_folder(tmp_path, main.settings_of(args))


def test_a_library_error_in_the_benchmark_is_one_line_and_exit_status_1(tmp_path):
    """A missing data file is the library's InvalidInputError: the benchmark's __main__ (harness.run_benchmark)
    prints one line and exits with 1, no traceback."""
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "benchmarks.compare_picks", "--data", str(tmp_path / "missing.csv"),
               "--output", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("compare_picks: error: data file")


def test_a_model_folder_that_does_not_exist_is_named_before_anything_runs(tmp_path):
    """transformers would call a missing folder a bad hub name; the benchmark says there is no such folder."""
    from peft_ntk_select.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="no such folder"):
        main.main(["--model", str(tmp_path / "no_model"), "--output", str(tmp_path / "out")])

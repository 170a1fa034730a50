"""The equal-parameter study's pre-registered rule (``benchmarks/equal_params/decide.py``) on synthetic folders."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Mapping, Sequence
from statistics import fmean

import pytest

from benchmarks.compare_picks.training import append_run
from benchmarks.equal_params import decide, running

LRS = [5e-3, 1.5e-2]
BUDGETS = ("P", "P/4")
SEEDS = (0, 1, 2)
RULE = ("default", *decide.RULE_ARMS)
CLOSE = {"pick:lora": 0.72, "pick:expected": 0.71, "pick:adam": 0.70, "pick:attention": 0.705, "pick:ranks": 0.69}


def run(budget, arm, lr, seed, val, test, params=100, val_loss=0.5):
    """One row as ``ArmTrainer`` writes it (``budget`` None: head-only)."""
    return {name: 0 for name in running.RUN_FIELDS} | {
        "key": arm if budget is None else f"{budget}:{arm}", "budget": budget or "", "arm": arm, "lr": lr,
        "seed": seed, "modules": "L0.q@8", "lora_params": params, "budget_params": "" if budget is None else 1000,
        "val_accuracy": val, "val_loss": val_loss, "test_accuracy": test,
    }  # fmt: skip


def per_seed(value, budget):
    """``value``: one accuracy, a list per seed, or a dict budget -> either."""
    value = value[budget] if isinstance(value, Mapping) else value
    return list(value) if isinstance(value, Sequence) else [value] * len(SEEDS)


def arm_runs(budget, arm, val, test=0.5, params=100):
    """The arm's rate is LRS[0]: its seed 0 also ran at LRS[1] with a worse validation and a perfect test accuracy
    (which must not matter); seeds 1 and 2 ran only at LRS[0]."""
    vals, tests = per_seed(val, budget), per_seed(test, budget)
    rows = [run(budget, arm, LRS[0], seed, v, t, params) for seed, v, t in zip(SEEDS, vals, tests, strict=True)]
    return [*rows, run(budget, arm, LRS[1], 0, vals[0] - 0.05, 1.0, params)]


def write_folder(path, task, rows, planned=None, r=8):
    """An equal_params folder: config.json, runs.csv and, with ``planned`` keys, summary.json (a pass ended)."""
    path.mkdir(parents=True)
    config = {"task": task, "model": None, "smoke": False, "r": r, "lrs": LRS, "seeds": [1, 2], "budgets": ["P", "P/4"]}
    (path / "config.json").write_text(json.dumps(config))
    for row in rows:
        append_run(path / "runs.csv", row, running.RUN_FIELDS)
    if planned is not None:
        arms = [{"key": key, "arm": key.partition(":")[2] or key} for key in planned]  # "<budget>:<arm>" or the arm
        (path / "summary.json").write_text(json.dumps({"planned": arms}))
    return path


def study(path, task="reviews", vals=None, tests=None, budgets=BUDGETS, extra=(), complete=True, r=8):
    """A folder with the rule's six arms (validation ``vals``, test ``tests`` per arm) at every budget."""
    vals = {"default": 0.70, **CLOSE, **(vals or {})}
    tests = tests or {}
    rows = [row for budget in budgets for arm, val in vals.items() if per_seed(val, budget)[0] is not None
            for row in arm_runs(budget, arm, val, tests.get(arm, 0.5))]  # fmt: skip
    rows += list(extra)
    planned = sorted({row["key"] for row in rows}) if complete else None
    return write_folder(path / task, task, rows, planned, r)


def verdict_of(*folders):
    return decide.apply_rule(decide.load_cells(folders))


# the rule


def test_the_arm_with_the_highest_mean_validation_difference_to_default_wins_and_sets_the_defaults(tmp_path):
    verdict = verdict_of(study(tmp_path))
    assert verdict.status == "provisional"  # convention_party and debate_party have no folder
    assert verdict.winner == "pick:lora"
    assert verdict.mean_d == pytest.approx({arm: value - 0.70 for arm, value in CLOSE.items()})
    assert len(verdict.cells) == 6 and verdict.wins_over_current == 6
    assert verdict.change_defaults and verdict.defaults == {"kernel": "lora", "kinds": "all-linear", "ranks": None}


def test_the_verdict_is_final_with_the_three_minilm_tasks_complete(tmp_path):
    folders = [study(tmp_path, task, vals={"pick:ranks": 0.73}) for task in decide.MINILM_TASKS]
    verdict = verdict_of(*folders)
    assert verdict.status == "final" and len(verdict.cells) == 18
    assert verdict.winner == "pick:ranks" and verdict.change_defaults
    assert verdict.defaults == {"kernel": "lora", "kinds": "all-linear", "ranks": [2, 4, 8, 16]}


@pytest.mark.parametrize(
    ("arm", "r", "expected"),
    [
        ("pick:lora", 8, ("lora", "all-linear", None)),
        ("pick:expected", 8, ("expected", "all-linear", None)),
        ("pick:adam", 8, ("adam", "all-linear", None)),
        ("pick:attention", 8, ("lora", "attention", None)),
        ("pick:ranks", 8, ("lora", "all-linear", [2, 4, 8, 16])),
        ("pick:ranks", 16, ("lora", "all-linear", [4, 8, 16, 32])),
    ],
)
def test_each_selector_arm_maps_to_its_kernel_kinds_and_ranks(arm, r, expected):
    assert decide.defaults_of(arm, r) == dict(zip(("kernel", "kinds", "ranks"), expected, strict=True))


def test_the_rank_of_pick_ranks_comes_from_the_folders_config(tmp_path):
    verdict = verdict_of(study(tmp_path, vals={"pick:ranks": 0.8}, r=16))
    assert verdict.defaults["ranks"] == [4, 8, 16, 32]


def test_a_tie_on_mean_difference_keeps_pick_attention_then_the_listed_order(tmp_path):
    verdict = verdict_of(study(tmp_path / "a", vals={"pick:lora": 0.705, "pick:expected": 0.70}))
    assert verdict.winner == "pick:attention" and not verdict.change_defaults
    assert verdict.defaults == {"kernel": "lora", "kinds": "attention", "ranks": None}
    verdict = verdict_of(study(tmp_path / "b", vals={"pick:lora": 0.75, "pick:expected": 0.75, "pick:adam": 0.75}))
    assert verdict.winner == "pick:lora"


def test_defaults_stay_when_the_winner_beats_pick_attention_in_only_half_of_the_cells(tmp_path):
    # pick:lora: far ahead at P, just behind pick:attention at P/4: highest mean d, but 3 wins of 6 cells
    verdict = verdict_of(study(tmp_path / "half", vals={"pick:lora": {"P": 0.80, "P/4": 0.69}, "pick:attention": 0.70}))
    assert verdict.winner == "pick:lora" and verdict.wins_over_current == 3 and len(verdict.cells) == 6
    assert not verdict.change_defaults
    assert verdict.defaults == {"kernel": "lora", "kinds": "attention", "ranks": None}
    # one more win (4 of 6) is more than half: the defaults change
    vals = {"pick:lora": {"P": 0.80, "P/4": [0.71, 0.69, 0.69]}, "pick:attention": 0.70}
    verdict = verdict_of(study(tmp_path / "more", vals=vals))
    assert verdict.wins_over_current == 4 and verdict.change_defaults


def test_a_tie_with_pick_attention_in_a_cell_is_not_a_win(tmp_path):
    vals = {"pick:lora": {"P": 0.80, "P/4": [0.70, 0.70, 0.69]}, "pick:attention": 0.70}
    verdict = verdict_of(study(tmp_path, vals=vals))
    assert verdict.winner == "pick:lora" and verdict.wins_over_current == 3 and not verdict.change_defaults


def test_an_arm_missing_everywhere_makes_the_rule_pending(tmp_path):
    verdict = verdict_of(study(tmp_path, vals={"pick:adam": None, "pick:lora": 0.9}))
    assert verdict.status == "pending" and verdict.winner is None and verdict.missing_arms == ["pick:adam"]
    assert not verdict.change_defaults and verdict.mean_d == {} and verdict.cells == []
    assert verdict.defaults == decide.defaults_of("pick:attention")
    assert "pick:adam" in verdict.notes[0] and len(verdict.excluded_cells) == 6
    assert "pending" in decide.markdown(decide.load_cells([tmp_path / "reviews"]), verdict, None)


def test_cells_lacking_an_arm_are_left_out_and_named(tmp_path):
    rows = [row for budget in BUDGETS for row in arm_runs(budget, "pick:adam", 0.70)]
    rows = [row for row in rows if not (row["budget"] == "P/4" and row["seed"] == 2)]
    verdict = verdict_of(study(tmp_path, vals={"pick:adam": None}, extra=rows))
    assert verdict.status == "provisional" and len(verdict.cells) == 5
    assert verdict.excluded_cells == {"reviews P/4 seed 2": ["pick:adam"]}


def test_the_rate_is_chosen_by_seed_zero_validation_accuracy_only(tmp_path):
    folder = study(tmp_path, tests={"pick:lora": 0.6})
    cells = decide.load_cells([folder])
    score = cells.scores[("reviews", "P", 0)]["pick:lora"]
    assert score.lr == LRS[0] and score.test_accuracy == 0.6  # the other rate's test accuracy 1.0 is not used
    assert score.val_accuracy == 0.72
    assert {seed for (_, _, seed) in cells.scores} == set(SEEDS)


def test_an_arm_counts_only_once_seed_zero_has_run_at_every_rate(tmp_path):
    rows = [row for row in arm_runs("P", "pick:adam", 0.70) if row["lr"] == LRS[0]]  # seed 0 lacks LRS[1]
    folder = study(tmp_path, vals={"pick:adam": {"P": None, "P/4": 0.7}}, extra=rows)
    cells = decide.load_cells([folder])
    assert "pick:adam" not in cells.scores[("reviews", "P", 0)]
    assert "pick:adam" in cells.scores[("reviews", "P/4", 0)]


def test_test_accuracy_never_changes_the_verdict(tmp_path):
    draw = random.Random(0)
    vals = {"pick:lora": {"P": 0.80, "P/4": 0.69}, "pick:attention": 0.70}
    verdicts = []
    for i in range(3):
        tests = {arm: [draw.random() for _ in SEEDS] for arm in RULE}
        verdicts.append(verdict_of(study(tmp_path / str(i), vals=vals, tests=tests)))
    swapped = {arm: {"P": 0.9, "P/4": 0.1} if arm == "pick:expected" else 0.5 for arm in RULE}
    verdicts.append(verdict_of(study(tmp_path / "swapped", vals=vals, tests=swapped)))
    assert all(verdict == verdicts[0] for verdict in verdicts)


# what is counted


def test_smollm2_counts_only_when_its_folder_is_complete(tmp_path):
    minilm = study(tmp_path, vals={"pick:lora": 0.72})
    smol = study(tmp_path / "a", "smollm2_reviews", vals={"pick:expected": 0.9}, complete=False)
    verdict = verdict_of(minilm, smol)
    assert verdict.winner == "pick:lora" and len(verdict.cells) == 6
    assert any("smollm2_reviews not counted" in note for note in verdict.notes)
    smol = study(tmp_path / "b", "smollm2_reviews", vals={"pick:expected": 0.9})
    verdict = verdict_of(minilm, smol)
    assert verdict.winner == "pick:expected" and len(verdict.cells) == 12


def test_a_folder_lacking_a_seed_or_a_planned_arm_is_incomplete(tmp_path):
    rows = [row for budget in BUDGETS for arm in RULE for row in arm_runs(budget, arm, 0.7)]
    cut = [row for row in rows if (row["key"], row["seed"]) != ("P/4:pick:ranks", 2)]
    folder = write_folder(tmp_path / "a", "smollm2_reviews", cut, sorted({row["key"] for row in rows}))
    assert decide.load_cells([folder]).tasks["smollm2_reviews"].missing == {"pick:ranks": ["P/4:pick:ranks seed 2"]}
    folder = write_folder(tmp_path / "b", "smollm2_reviews", rows, ["P:kappa", *{row["key"] for row in rows}])
    missing = decide.load_cells([folder]).tasks["smollm2_reviews"].missing
    assert missing == {"kappa": ["P:kappa seed 0 lr 0.005", "P:kappa seed 0 lr 0.015"]}
    folder = write_folder(tmp_path / "c", "smollm2_reviews", rows, sorted({row["key"] for row in rows}))
    cells = decide.load_cells([folder])
    assert cells.tasks["smollm2_reviews"].missing == {} and cells.tasks["smollm2_reviews"].counted
    folder = decide.load_cells([write_folder(tmp_path / "d", "smollm2_reviews", cut)]).tasks["smollm2_reviews"]
    assert list(folder.missing) == ["summary.json", "pick:ranks"] and not folder.counted  # no pass has finished
    assert folder.missing_text() == "no summary yet; missing runs: at least 1, e.g. P/4:pick:ranks seed 2"
    assert folder.lacks(["default"]) == ["summary.json (no pass of the study has finished)"]


def test_two_folders_for_one_task_are_refused(tmp_path):
    with pytest.raises(decide.BenchmarkError, match="two folders"):
        decide.load_cells([study(tmp_path / "a"), study(tmp_path / "b")])


# statistics


def test_the_sign_flip_p_value_equals_a_hand_count():
    # sums of +-1 +-2 +-3: 6, 4, 2, 0, 0, -2, -4, -6: |sum| >= 6 in 2 of 8
    assert decide.sign_flip_p([0.01, 0.02, 0.03]) == (0.25, "exact, all 8 sign flips")
    assert decide.sign_flip_p([0.01, 0.02, 0.03, 0.04])[0] == 2 / 16
    assert decide.sign_flip_p([0.01, 0.02, -0.03, 0.0])[0] == pytest.approx(1.0)  # observed 0 (up to rounding)
    assert decide.sign_flip_p([0.02, 0.01, -0.01])[0] == 6 / 8  # |sums|: 2, 0, 4, 2, 2, 4, 0, 2 (x0.01)


def test_the_sign_flip_p_value_is_monte_carlo_above_twenty_cells():
    diffs = [0.01 * (i % 5 - 1) for i in range(21)]
    p, how = decide.sign_flip_p(diffs, draws=2000)
    assert "2,000 random sign flips (seed 0)" in how and 0 < p <= 1
    assert decide.sign_flip_p(diffs, draws=2000) == (p, how)
    exact, _ = decide.sign_flip_p([0.03, 0.01, 0.02, -0.01, 0.04])
    approx, how = decide.sign_flip_p([0.03, 0.01, 0.02, -0.01, 0.04], exact_max=4, draws=20_000)
    assert "random" in how and approx == pytest.approx(exact, abs=0.02)


def test_the_bootstrap_interval_contains_the_mean_and_is_reproducible():
    diffs = [random.Random(i).uniform(-0.05, 0.08) for i in range(15)]
    low, high = decide.bootstrap_interval(diffs)
    assert low < fmean(diffs) < high and high - low < 0.1
    assert decide.bootstrap_interval(diffs) == (low, high)
    assert decide.bootstrap_interval([0.02, 0.02]) == pytest.approx((0.02, 0.02))


def test_paired_statistics_count_wins_ties_and_losses():
    paired = decide.paired_stats([0.1, 0.0, -0.05, 0.2], "default")
    assert (paired.wins, paired.ties, paired.losses, paired.cells) == (2, 1, 1, 4)
    assert paired.mean_difference == pytest.approx(0.0625)
    assert paired.p_value == decide.sign_flip_p([0.1, 0, -0.05, 0.2])[0]
    assert decide.paired_stats([], "default") is None


def test_the_winner_is_compared_on_test_with_default_and_the_median_random_placement(tmp_path):
    tests = {"default": {"P": 0.60, "P/4": 0.50}, "pick:lora": {"P": 0.65, "P/4": 0.49}}
    randoms = [row for budget in BUDGETS for i, test in enumerate((0.4, 0.62, 0.55))
               for row in arm_runs(budget, f"random:{i}", 0.6, test)]  # fmt: skip
    cells = decide.load_cells([study(tmp_path, tests=tests, extra=randoms)])
    report = decide.compare_on_test(cells, "pick:lora")
    by = {p.against: p for p in report.paired}
    assert (by["default"].wins, by["default"].losses) == (3, 3)
    assert by["default"].mean_difference == pytest.approx((0.05 - 0.01) / 2)
    assert by["median random (3 per cell)"].mean_difference == pytest.approx((0.65 - 0.55 + 0.49 - 0.55) / 2)
    assert report.vs_default == {"reviews": pytest.approx(0.02)}
    assert report.minilm_wins == 1 and not report.goal_met  # 1 of 3 MiniLM tasks, two have no data
    assert report.more_params_cells == []


# tables, markdown and the command line


def full_study(path):
    extra = [row for budget in BUDGETS for arm in ("all_linear", "kappa", "eva", "random:0", "random:1")
             for row in arm_runs(budget, arm, 0.6, 0.55, params=90)]  # fmt: skip
    extra += arm_runs("P/4", "v_only", 0.6, 0.55) + arm_runs(None, "head_only", 0.5, 0.45, params=0)
    return study(path, extra=extra)


def test_the_tables_hold_every_arm_per_budget_with_the_random_arms_as_one_median_row(tmp_path):
    tables = decide.task_tables(decide.load_cells([full_study(tmp_path)]))
    arms = [row["arm"] for row in tables["reviews"]["P/4"]]
    assert arms == ["default", "v_only", "all_linear", "pick:lora", "pick:expected", "pick:attention", "pick:adam",
                    "pick:ranks", "random (median of 2)", "kappa", "eva", "head_only"]  # fmt: skip
    assert "v_only" not in [row["arm"] for row in tables["reviews"]["P"]]
    lora = next(row for row in tables["reviews"]["P"] if row["arm"] == "pick:lora")
    assert lora["seeds"] == 3 and lora["lr"] == LRS[0] and lora["lora_params"] == [100]
    assert lora["test_mean"] == pytest.approx(0.5) and lora["test_std"] == 0.0


def test_the_markdown_holds_every_arm_the_verdict_the_statistics_and_the_goal(tmp_path):
    cells, verdict, report = decide.decide([full_study(tmp_path)])
    text = decide.markdown(cells, verdict, report)
    for arm in (*RULE, "v_only", "all_linear", "kappa", "eva", "head_only", "random (median of 2)"):
        assert f"| {arm} |" in text
    assert "0.500 ± 0.000 (3)" in text and "| 0.005 |" in text
    assert "Rule (validation accuracy): provisional" in text and "Winner: pick:lora" in text
    assert "sign-flip p" in text and "exact, all 64 sign flips" in text
    assert "on 0 of the 3 MiniLM tasks" in text and "Goal not met" in text


def test_the_command_line_prints_the_verdict_and_writes_json(tmp_path, capsys):
    folder = full_study(tmp_path)
    payload = decide.main([str(folder), "--json", str(tmp_path / "out.json")])
    out = capsys.readouterr().out
    assert "Winner: pick:lora" in out and "pick:attention" in out and "|" not in out
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["verdict"]["winner"] == payload["verdict"]["winner"] == "pick:lora"
    assert written["test"]["arm"] == "pick:lora"
    assert written["follow_up"]["status"] == "pending" and written["follow_up_test"] is None  # no pick:kinds run
    decide.main([str(folder), "--markdown"])
    assert "| arm |" in capsys.readouterr().out


def test_cells_are_the_product_of_task_budget_and_seed(tmp_path):
    cells = decide.load_cells([full_study(tmp_path)])
    assert set(cells.scores) == set(itertools.product(["reviews"], BUDGETS, SEEDS))
    assert cells.scores[("reviews", "P", 1)]["head_only"] == cells.scores[("reviews", "P/4", 1)]["head_only"]


def test_table_rows_have_one_order_in_every_process():
    """Two random median rows (different counts per budget) once swapped places between processes (a set's order
    follows the string hash seed): the row order must tell every name apart."""
    names = ["default", "pick:lora", "random (median of 8)", "random (median of 7/8)", "kappa", "head_only"]
    keys = [decide._row_order(name) for name in names]
    assert len(set(keys)) == len(names)
    assert sorted(names, key=decide._row_order)[2:4] == ["random (median of 7/8)", "random (median of 8)"]


# follow-up 1: pick:kinds against default


def minilm_with_kinds(path, kinds_vals, kinds_tests=0.5, cut_seed=None):
    """The three MiniLM folders, complete, each with pick:kinds at validation ``kinds_vals[task]`` (per budget
    and seed as ``per_seed`` reads it); ``cut_seed``: that seed of P/4:pick:kinds never ran in ``debate_party``."""
    folders = []
    for task in decide.MINILM_TASKS:
        extra = [row for budget in BUDGETS for row in arm_runs(budget, "pick:kinds", kinds_vals[task], kinds_tests)
                 if task != "debate_party" or (row["key"], row["seed"]) != ("P/4:pick:kinds", cut_seed)]  # fmt: skip
        folders.append(study(path, task, extra=extra))
    return folders


def test_follow_up_helps_iff_its_mean_validation_difference_is_positive_and_it_wins_more_cells_than_it_loses(
    tmp_path,
):
    # per task and budget, seeds 0, 1, 2 against default's 0.70: three wins of +0.01 and a loss of -0.10 per task
    vals = {"reviews": {"P": [0.71, 0.71, 0.71], "P/4": [0.70, 0.70, 0.60]}}
    vals |= {"convention_party": vals["reviews"], "debate_party": vals["reviews"]}
    follow_up = decide.apply_follow_up(decide.load_cells(minilm_with_kinds(tmp_path / "a", vals)))
    d = [0.01] * 9 + [0.0] * 6 + [-0.10] * 3
    assert follow_up.status == "final" and len(follow_up.cells) == 18
    assert (follow_up.wins, follow_up.ties, follow_up.losses) == (9, 6, 3)
    assert follow_up.mean_d == pytest.approx(fmean(d)) and follow_up.mean_d < 0 and not follow_up.helps
    vals = {task: {"P": [0.71, 0.71, 0.71], "P/4": [0.70, 0.70, 0.69]} for task in decide.MINILM_TASKS}
    follow_up = decide.apply_follow_up(decide.load_cells(minilm_with_kinds(tmp_path / "b", vals)))
    assert follow_up.mean_d > 0 and follow_up.wins > follow_up.losses and follow_up.helps
    vals = {task: {"P": [0.90, 0.70, 0.70], "P/4": [0.69, 0.69, 0.70]} for task in decide.MINILM_TASKS}
    follow_up = decide.apply_follow_up(decide.load_cells(minilm_with_kinds(tmp_path / "c", vals)))
    assert follow_up.mean_d > 0 and follow_up.wins < follow_up.losses and not follow_up.helps  # mean alone: no


def test_follow_up_reads_only_validation_and_a_missing_run_makes_it_provisional_but_leaves_the_rule_final(tmp_path):
    vals = {task: 0.71 for task in decide.MINILM_TASKS}
    good = decide.load_cells(minilm_with_kinds(tmp_path / "a", vals, kinds_tests=0.1))
    bad = decide.load_cells(minilm_with_kinds(tmp_path / "b", vals, kinds_tests=0.9))
    assert decide.apply_follow_up(good) == decide.apply_follow_up(bad)
    cut = decide.load_cells(minilm_with_kinds(tmp_path / "c", vals, cut_seed=2))
    follow_up = decide.apply_follow_up(cut)
    assert follow_up.status == "provisional" and follow_up.excluded_cells == ["debate_party P/4 seed 2"]
    assert decide.apply_rule(cut).status == "final"  # the rule's six arms are all there
    two_tasks = decide.load_cells(minilm_with_kinds(tmp_path / "e", vals)[:2])
    assert decide.apply_follow_up(two_tasks).status == "provisional"  # a MiniLM task has no folder
    assert decide.apply_follow_up(decide.load_cells([study(tmp_path / "d")])).status == "pending"


def test_the_markdown_adds_the_follow_up_and_its_test_statistics_once_it_has_a_cell(tmp_path):
    vals = {task: 0.71 for task in decide.MINILM_TASKS}
    cells = decide.load_cells(minilm_with_kinds(tmp_path, vals, kinds_tests=0.6))
    text = decide.markdown(cells, decide.apply_rule(cells), None)
    assert "**Follow-up 1, pick:kinds (validation accuracy): final.**" in text
    assert "mean +0.010, wins/ties/losses 18/0/0. By the registered rule it helps." in text
    assert "**pick:kinds on test**" in text and "| default | 18 | 18/0/0 | +0.100 |" in text
    assert "minus default: reviews +0.100, convention_party +0.100, debate_party +0.100" in text
    assert "Follow-up" not in decide.markdown(*decide.decide([study(tmp_path / "none")]))
    payload = decide.main([folder.folder for folder in cells.tasks.values()])
    assert payload["follow_up"]["helps"] and payload["follow_up_test"]["arm"] == "pick:kinds"


# headroom (post hoc)


def test_headroom_keeps_the_best_arm_on_validation_and_reports_its_test_gain_and_the_oracles(tmp_path):
    from benchmarks.equal_params import headroom

    # pick:lora is best on validation (0.72) but tests at 0.45; pick:ranks tests best (0.60); default tests at 0.50
    folder = study(tmp_path, vals={"pick:lora": 0.72}, tests={"default": 0.50, "pick:lora": 0.45, "pick:ranks": 0.60})
    rows = headroom.headroom(decide.load_cells([folder]))
    assert [(row.task, row.budget) for row in rows] == [("reviews", "P"), ("reviews", "P/4")]
    for row in rows:
        assert row.arms == 6 and row.seeds == 3
        assert row.val_best == ("pick:lora",) and row.val_best_gain == pytest.approx(-0.05)
        assert row.test_best == ("pick:ranks",) and row.test_best_gain == pytest.approx(0.10)
    text = headroom.render(rows, markdown=True)
    assert "| reviews | P | 6 | pick:lora | -0.050 | pick:ranks | +0.100 |" in text
    assert "gains -0.050 on test over default on average (above zero in 0)" in text


def test_headroom_averages_the_arms_tied_on_validation_and_leaves_out_arms_missing_a_seed(tmp_path):
    from benchmarks.equal_params import headroom

    vals = {"pick:lora": 0.72, "pick:expected": 0.72}
    tests = {"default": 0.50, "pick:lora": 0.40, "pick:expected": 0.70}
    late = [row for row in arm_runs("P", "pick:kinds", 0.99, 0.99) if row["seed"] != 2]  # no seed 2: left out
    rows = headroom.headroom(decide.load_cells([study(tmp_path, vals=vals, tests=tests, extra=late)]))
    at_p = next(row for row in rows if row.budget == "P")
    assert at_p.val_best == ("pick:expected", "pick:lora") and at_p.val_best_gain == pytest.approx(0.05)
    assert at_p.arms == 6 and "pick:kinds" not in at_p.test_best

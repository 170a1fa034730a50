"""README's pre-registered rule for the library's defaults (section "Equal parameters"), and its test report.

    .venv/bin/python -m benchmarks.equal_params.decide benchmarks/results/equal_params_minilm_reviews ... \\
        [--markdown] [--json out.json]

Every number comes from the folders' ``runs.csv`` and ``config.json`` (``summary.json``'s planned arms only to
tell whether a folder is complete). Accuracies are fractions in [0, 1]; differences are in the same units.

1. ``load_cells``: per cell (task, budget, seed), each arm's validation and test accuracy at the arm's rate
   (``running.choose_lr``: seed 0's best validation accuracy, then lower validation loss, then the smaller
   rate). An arm counts only once seed 0 has run at every rate of the folder's ``lrs`` (its rate is settled).
   Head-only has no budget: its runs enter every budget of the folder.
2. ``apply_rule`` (validation accuracy only): cells of the three MiniLM tasks, and of ``smollm2_reviews`` when
   its folder is complete, at budgets P and P/4, where ``default`` and all five selector arms ran. d = arm -
   default per cell; the highest mean d wins (ties: ``pick:attention``, then ``RULE_ARMS``' order). Defaults
   change to the winner's iff it is not ``pick:attention`` and beats it (strictly) in more than half the cells.
   No such cell: "pending". Cells or registered tasks left out: "provisional". Otherwise "final".
3. ``compare_on_test`` (test accuracy, never used to choose): one arm against ``default`` and against the
   median of the ``random:*`` arms per cell, paired over the same cells: wins/ties/losses, mean difference,
   95 % percentile bootstrap interval (cells resampled, 10,000 draws, seed 0), two-sided sign-flip
   permutation p-value (exact over all 2^m flips for m <= 20 cells, else 100,000 random flips, seed 0); and
   the README's goal per task. ``task_tables``: per task and budget, every arm's test accuracy mean +- std
   over seeds, LoRA parameters and rate (the random arms as one row: per cell their median, then mean +- std).
4. ``render`` / ``markdown``: the tables, the verdict, the paired statistics and the goal, as text or as
   README Markdown.
5. ``apply_follow_up`` (README's follow-up 1, validation accuracy only): ``pick:kinds`` against ``default`` over
   the same scope of cells, where both ran: d = pick:kinds - default; it *helps* iff mean d > 0 and it wins
   (strictly) more cells than it loses. ``render`` adds it, and ``compare_on_test`` for it, once it has a cell.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean, median, stdev
from typing import Any, NamedTuple

import numpy as np

from peft_ntk_select.tables import format_table

from .. import harness
from ..compare_picks.choosing import BenchmarkError
from .arms import ARM_NAMES, HEAD_ONLY
from .report import RANDOM_PREFIX
from .running import LR_SEED, choose_lr, load_runs

logger = logging.getLogger("equal_params")

REFERENCE = "default"
CURRENT = "pick:attention"  # today's library defaults
RULE_ARMS = ("pick:lora", "pick:expected", "pick:adam", "pick:attention", "pick:ranks")
FOLLOW_UP = "pick:kinds"  # README's follow-up 1: the same kinds in every layer
SUMMARY_FILE = "summary.json"
TIE_ORDER = (CURRENT, *(arm for arm in RULE_ARMS if arm != CURRENT))
RULE_BUDGETS = ("P", "P/4")
MINILM_TASKS = ("reviews", "convention_party", "debate_party")
COMPLETE_ONLY_TASKS = ("smollm2_reviews",)  # counted only when its folder is complete
PROTOCOL_SEEDS = (0, 1, 2)
BOOTSTRAP_DRAWS = 10_000
EXACT_MAX_CELLS = 20
PERMUTATION_DRAWS = 100_000
STAT_SEED = 0
DEFAULT_R = 8
# arm -> (kernel, candidate kinds, per-module ranks as multiples of r, or None for one rank r)
ARM_DEFAULTS: dict[str, tuple[str, str, tuple[float, ...] | None]] = {
    "pick:lora": ("lora", "all-linear", None),
    "pick:expected": ("expected", "all-linear", None),
    "pick:adam": ("adam", "all-linear", None),
    "pick:attention": ("lora", "attention", None),
    "pick:ranks": ("lora", "all-linear", (0.25, 0.5, 1.0, 2.0)),
}

Cell = tuple[str, str, int]  # (task, budget label "P" or "P/4", seed)


class Score(NamedTuple):
    """One arm in one cell, at the arm's chosen rate."""

    val_accuracy: float  # fraction of the validation split, [0, 1]
    test_accuracy: float  # fraction of the test split, [0, 1]
    lora_params: int  # LoRA parameters trained (PEFT's count)
    lr: float  # the arm's learning rate


@dataclass
class TaskFolder:
    """One folder: its task, LoRA rank r, rates tried, what it still lacks, and whether the rule counts it."""

    task: str
    folder: str
    r: int
    lrs: list[float]
    missing: dict[str, list[str]]  # arm (or SUMMARY_FILE) -> runs the registered protocol still needs; {} if complete
    counted: bool

    def lacks(self, arms: Sequence[str] | None = None) -> list[str]:
        """The missing runs of ``arms`` (None: of every arm), and the summary if it is missing."""
        return [run for arm, runs in self.missing.items() if arms is None or arm in (SUMMARY_FILE, *arms)
                for run in runs]  # fmt: skip

    def missing_text(self, example: bool = True) -> str:
        """ "missing runs: N" (``example``: ", e.g. <run>"); "at least N" while no summary says which arms were
        planned."""
        runs = [run for arm, lacking in self.missing.items() if arm != SUMMARY_FILE for run in lacking]
        unknown = SUMMARY_FILE in self.missing
        return (f"{'no summary yet; ' if unknown else ''}missing runs: {'at least ' if unknown else ''}{len(runs)}"
                + (f", e.g. {runs[0]}" if runs and example else ""))  # fmt: skip


@dataclass
class Cells:
    """``scores[(task, budget, seed)][arm]``: every arm's ``Score`` per cell; ``tasks``: the folders by task."""

    scores: dict[Cell, dict[str, Score]]
    tasks: dict[str, TaskFolder]

    def in_scope(self) -> list[Cell]:
        """The cells the rule and the test report use: counted tasks, budgets P and P/4 (sorted)."""
        return sorted(cell for cell in self.scores if self.tasks[cell[0]].counted and cell[1] in RULE_BUDGETS)


@dataclass
class Verdict:
    """The rule's outcome. ``status``: "pending" (not applicable), "provisional" or "final"."""

    status: str
    winner: str | None
    mean_d: dict[str, float]  # arm -> mean over ``cells`` of (arm - default) validation accuracy
    cells: list[str]  # the cells used, "task budget seed s"
    wins_over_current: int | None  # cells where the winner's validation accuracy > pick:attention's
    change_defaults: bool
    defaults: dict[str, Any]  # {"kernel", "kinds": "all-linear" | "attention", "ranks": None | [int, ...]}
    missing_arms: list[str] = field(default_factory=list)  # rule arms absent from every cell in scope
    excluded_cells: dict[str, list[str]] = field(default_factory=dict)  # cell -> rule arms it lacks
    notes: list[str] = field(default_factory=list)


@dataclass
class Paired:
    """One arm against ``against`` on test accuracy, paired over ``cells`` cells (differences: arm - against)."""

    against: str
    cells: int
    wins: int
    ties: int
    losses: int
    mean_difference: float
    ci_low: float  # 95 % percentile bootstrap interval of the mean difference
    ci_high: float
    p_value: float  # two-sided sign-flip permutation test of mean difference 0
    p_method: str


@dataclass
class TestReport:
    """``arm`` on test: paired statistics and the README's goal, per task the mean over its cells of arm -
    default and of arm - median random, and the cells where ``arm`` trains more LoRA parameters than default."""

    __test__ = False  # not a pytest class

    arm: str
    paired: list[Paired]
    vs_default: dict[str, float]
    vs_random: dict[str, float]
    minilm_wins: int
    beats_random_everywhere: bool
    more_params_cells: list[str]
    goal_met: bool


def _label(cell: Cell) -> str:
    return f"{cell[0]} {cell[1]} seed {cell[2]}"


def _missing_runs(folder: Path, runs: Sequence[Mapping[str, Any]], lrs: Sequence[float]) -> dict[str, list[str]]:
    """What the registered protocol still needs in ``folder``, by arm: every planned arm (``summary.json``),
    every arm in ``runs.csv`` and the rule's six arms at P and P/4, with seed 0 at every rate and every protocol
    seed at the chosen rate; while no pass has finished (no summary, so the planned arms are unknown), the
    summary first."""
    summary = folder / SUMMARY_FILE
    missing: dict[str, list[str]] = {}
    if summary.is_file():
        arm_of = {arm["key"]: arm["arm"] for arm in json.loads(summary.read_text()).get("planned", [])}
    else:
        arm_of, missing[SUMMARY_FILE] = {}, [f"{SUMMARY_FILE} (no pass of the study has finished)"]
    arm_of |= {run["key"]: run["arm"] for run in runs}
    arm_of |= {f"{b}:{a}": a for b in RULE_BUDGETS for a in (REFERENCE, *RULE_ARMS)}
    for key in sorted(arm_of):
        mine = [run for run in runs if run["key"] == key]
        tried = {run["lr"] for run in mine if run["seed"] == LR_SEED}
        lacking = [f"{key} seed {LR_SEED} lr {lr:g}" for lr in lrs if lr not in tried]
        if not lacking:
            lr = choose_lr(mine, lrs)
            done = {run["seed"] for run in mine if run["lr"] == lr}
            lacking = [f"{key} seed {seed}" for seed in PROTOCOL_SEEDS if seed not in done]
        if lacking:
            missing.setdefault(arm_of[key], []).extend(lacking)
    return missing


def load_cells(folders: Sequence[Path | str]) -> Cells:
    """Every folder's runs as cells: per (task, budget, seed), each arm's ``Score`` at its chosen rate; arms
    whose seed 0 has not run at every rate of ``config.json``'s ``lrs`` are left out. One folder per task."""
    scores: dict[Cell, dict[str, Score]] = {}
    tasks: dict[str, TaskFolder] = {}
    for folder in map(Path, folders):
        if not (folder / "config.json").is_file():
            raise BenchmarkError(f"{folder}: no config.json (not an equal_params folder)")
        config = json.loads((folder / "config.json").read_text())
        task, lrs = config["task"], [float(lr) for lr in config["lrs"]]
        if task in tasks:
            raise BenchmarkError(f"two folders for task {task}: {tasks[task].folder} and {folder}")
        runs = load_runs(folder / "runs.csv")
        missing = _missing_runs(folder, runs, lrs)
        counted = task in MINILM_TASKS or (task in COMPLETE_ONLY_TASKS and not missing)
        if config.get("model") or config.get("smoke"):
            logger.warning("%s: another model or a smoke run, not the registered study: not counted", folder)
            counted = False
        tasks[task] = TaskFolder(task, str(folder), int(config.get("r", DEFAULT_R)), lrs, missing, counted)
        for key in dict.fromkeys(run["key"] for run in runs):
            mine = [run for run in runs if run["key"] == key]
            if not all(any(run["seed"] == LR_SEED and run["lr"] == lr for run in mine) for lr in lrs):
                continue  # the arm's rate is not settled yet
            lr = choose_lr(mine, lrs)
            budgets = [mine[0]["budget"]] if mine[0]["budget"] else list(config.get("budgets", RULE_BUDGETS))
            for run in (run for run in mine if run["lr"] == lr):
                score = Score(run["val_accuracy"], run["test_accuracy"], run["lora_params"], lr)
                for budget in budgets:
                    scores.setdefault((task, budget, run["seed"]), {}).setdefault(run["arm"], score)
        logger.info("%s: task %s, %d runs, %s", folder, task, len(runs),
                    tasks[task].missing_text() if missing else "complete")  # fmt: skip
    return Cells(scores, tasks)


def defaults_of(arm: str, r: int = DEFAULT_R) -> dict[str, Any]:
    """The library defaults an arm stands for: kernel, candidate kinds, and ranks (None: one rank r)."""
    kernel, kinds, ranks = ARM_DEFAULTS[arm]
    return {"kernel": kernel, "kinds": kinds, "ranks": None if ranks is None else [int(m * r) for m in ranks]}


def apply_rule(cells: Cells) -> Verdict:
    """README's rule on validation accuracy (test accuracy is never read here)."""
    scope = cells.in_scope()
    needed = (REFERENCE, *RULE_ARMS)
    used = [cell for cell in scope if all(arm in cells.scores[cell] for arm in needed)]
    excluded = {_label(c): [a for a in needed if a not in cells.scores[c]] for c in scope if c not in used}
    absent = [arm for arm in needed if not any(arm in cells.scores[cell] for cell in scope)]
    ranks = {folder.r for folder in cells.tasks.values() if folder.counted} or {DEFAULT_R}
    if len(ranks) > 1:
        raise BenchmarkError(f"the counted folders use different LoRA ranks r: {sorted(ranks)}")
    r = ranks.pop()
    notes = [f"{task} not counted: " + (f"incomplete ({folder.missing_text()})" if folder.missing
                                        else "not the registered study")
             for task, folder in cells.tasks.items() if not folder.counted]  # fmt: skip
    notes += [f"{task}: no folder" for task in MINILM_TASKS if task not in cells.tasks]
    notes += [f"{task} incomplete (missing runs: {len(cells.tasks[task].lacks(needed))})" for task in MINILM_TASKS
              if task in cells.tasks and cells.tasks[task].lacks(needed)]  # fmt: skip
    if not used:
        what = f"arms with no run in any cell: {', '.join(absent)}" if absent else "no cell has all six arms"
        return Verdict("pending", None, {}, [], None, False, defaults_of(CURRENT, r), absent, excluded,
                       [f"the rule cannot be applied: {what}", *notes])  # fmt: skip
    mean_d = {arm: fmean(cells.scores[c][arm].val_accuracy - cells.scores[c][REFERENCE].val_accuracy for c in used)
              for arm in RULE_ARMS}  # fmt: skip
    winner = max(TIE_ORDER, key=lambda arm: (mean_d[arm], -TIE_ORDER.index(arm)))
    wins = sum(cells.scores[c][winner].val_accuracy > cells.scores[c][CURRENT].val_accuracy for c in used)
    change = winner != CURRENT and 2 * wins > len(used)
    final = not excluded and _settled(cells, needed)
    return Verdict("final" if final else "provisional", winner, mean_d, [_label(c) for c in used], wins, change,
                   defaults_of(winner if change else CURRENT, r), absent, excluded, notes)  # fmt: skip


def _settled(cells: Cells, arms: Sequence[str]) -> bool:
    """Whether every MiniLM task has a folder that lacks no run of ``arms``."""
    return all(task in cells.tasks and not cells.tasks[task].lacks(arms) for task in MINILM_TASKS)


@dataclass
class FollowUp:
    """README's follow-up 1 on validation accuracy: ``arm`` against default over ``cells``, the rule's scope of
    cells where both ran. ``status``: "pending" (no such cell), "provisional" or "final"."""

    arm: str
    status: str
    cells: list[str]  # "task budget seed s"
    mean_d: float | None  # mean over cells of (arm - default) validation accuracy
    wins: int
    ties: int
    losses: int
    helps: bool  # mean_d > 0 and wins > losses
    excluded_cells: list[str]  # cells in scope where the arm or default did not run


def apply_follow_up(cells: Cells, arm: str = FOLLOW_UP) -> FollowUp:
    """README's follow-up 1 on validation accuracy (test accuracy is never read here)."""
    scope = cells.in_scope()
    used = [cell for cell in scope if arm in cells.scores[cell] and REFERENCE in cells.scores[cell]]
    excluded = [_label(cell) for cell in scope if cell not in used]
    d = [cells.scores[c][arm].val_accuracy - cells.scores[c][REFERENCE].val_accuracy for c in used]
    if not d:
        return FollowUp(arm, "pending", [], None, 0, 0, 0, False, excluded)
    wins, ties, losses = sum(x > 0 for x in d), sum(x == 0 for x in d), sum(x < 0 for x in d)
    final = not excluded and _settled(cells, (REFERENCE, arm))
    return FollowUp(arm, "final" if final else "provisional", [_label(c) for c in used], fmean(d), wins, ties, losses,
                    fmean(d) > 0 and wins > losses, excluded)  # fmt: skip


def bootstrap_interval(
    diffs: Sequence[float], draws: int = BOOTSTRAP_DRAWS, seed: int = STAT_SEED
) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of ``diffs`` (shape (m,)), resampling its m entries."""
    values = np.asarray(diffs, dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(values), size=(draws, len(values)))
    low, high = np.quantile(values[picks].mean(axis=1), [0.025, 0.975])
    return float(low), float(high)


def sign_flip_p(
    diffs: Sequence[float], exact_max: int = EXACT_MAX_CELLS, draws: int = PERMUTATION_DRAWS, seed: int = STAT_SEED
) -> tuple[float, str]:
    """Two-sided sign-flip permutation p-value of mean(``diffs``) = 0 (shape (m,)): the share of sign vectors
    whose |sum| reaches the observed one; all 2^m when m <= ``exact_max``, else ``draws`` random vectors with
    p = (1 + hits) / (1 + draws). Returns (p, how)."""
    values = np.asarray(diffs, dtype=float)
    m = len(values)
    observed = abs(values.sum()) - 1e-12  # a flip equal to the observed sum counts, rounding aside
    if m <= exact_max:
        hits = 0
        bits = np.arange(m)
        for start in range(0, 2**m, 2**16):
            codes = np.arange(start, min(start + 2**16, 2**m))
            signs = 1 - 2 * ((codes[:, None] >> bits) & 1)
            hits += int((np.abs(signs @ values) >= observed).sum())
        return hits / 2**m, f"exact, all {2**m:,} sign flips"
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(draws, m))
    hits = int((np.abs(signs @ values) >= observed).sum())
    return (1 + hits) / (1 + draws), f"{draws:,} random sign flips (seed {seed}), m = {m} > {exact_max}"


def paired_stats(diffs: Sequence[float], against: str) -> Paired | None:
    """Wins/ties/losses, mean, bootstrap interval and sign-flip p of per-cell differences ``diffs`` (arm -
    ``against``, shape (m,)); None when m = 0."""
    if not diffs:
        return None
    low, high = bootstrap_interval(diffs)
    p, how = sign_flip_p(diffs)
    return Paired(against, len(diffs), sum(d > 0 for d in diffs), sum(d == 0 for d in diffs),
                  sum(d < 0 for d in diffs), fmean(diffs), low, high, p, how)  # fmt: skip


def random_median(scores: Mapping[str, Score]) -> tuple[float, int] | None:
    """The median test accuracy of the ``random:*`` arms of one cell (each at its own rate), and how many."""
    values = [score.test_accuracy for arm, score in scores.items() if arm.startswith(RANDOM_PREFIX)]
    return (median(values), len(values)) if values else None


def compare_on_test(cells: Cells, arm: str) -> TestReport:
    """``arm`` against default and the median random placement on test, over the rule's scope of cells."""
    scope = cells.in_scope()
    to_default = [(c, cells.scores[c][arm].test_accuracy - cells.scores[c][REFERENCE].test_accuracy)
                  for c in scope if arm in cells.scores[c] and REFERENCE in cells.scores[c]]  # fmt: skip
    to_random = [(c, cells.scores[c][arm].test_accuracy - found[0]) for c in scope
                 if arm in cells.scores[c] and (found := random_median(cells.scores[c])) is not None]  # fmt: skip
    randoms = sorted({found[1] for c in scope if (found := random_median(cells.scores[c])) is not None})
    label = f"median random ({'/'.join(map(str, randoms))} per cell)"
    paired = [p for p in (paired_stats([d for _, d in to_default], REFERENCE),
                          paired_stats([d for _, d in to_random], label)) if p is not None]  # fmt: skip

    def per_task(pairs: Sequence[tuple[Cell, float]]) -> dict[str, float]:
        tasks = dict.fromkeys(cell[0] for cell, _ in pairs)
        return {task: fmean(d for cell, d in pairs if cell[0] == task) for task in tasks}

    vs_default, vs_random = per_task(to_default), per_task(to_random)
    counted = [task for task, folder in cells.tasks.items() if folder.counted]
    minilm_wins = sum(vs_default.get(task, 0.0) > 0 for task in MINILM_TASKS)
    everywhere = all(vs_random.get(task, 0.0) > 0 for task in dict.fromkeys([*MINILM_TASKS, *counted]))
    more = [_label(c) for c, _ in to_default
            if cells.scores[c][arm].lora_params > cells.scores[c][REFERENCE].lora_params]  # fmt: skip
    return TestReport(arm, paired, vs_default, vs_random, minilm_wins, everywhere, more,
                      minilm_wins >= 2 and everywhere and not more)  # fmt: skip


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return fmean(values), stdev(values) if len(values) > 1 else 0.0


def _arm_order(arm: str) -> tuple[int, str]:
    family = "random" if arm.startswith(RANDOM_PREFIX) else arm
    return ARM_NAMES.index(family) if family in ARM_NAMES else len(ARM_NAMES), arm


def _row_order(name: str) -> tuple[int, str, str]:
    """ARM_NAMES' order, the random median rows (one per distinct label) in their place, ties by name: the same
    order in every process (the rows come from a set)."""
    return (*_arm_order(RANDOM_PREFIX if name.startswith("random (") else name), name)


def _task_order(cell: Cell) -> tuple[int, Cell]:
    known = (*MINILM_TASKS, *COMPLETE_ONLY_TASKS)
    return known.index(cell[0]) if cell[0] in known else len(known), cell


def task_tables(cells: Cells) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per task and budget, one row per arm (ARM_NAMES' order; the random arms as one median row): ``arm``,
    ``seeds``, ``test_mean``/``test_std`` (accuracy over seeds), ``lora_params`` (sorted distinct counts),
    ``lr`` (None for the median row)."""
    tables: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for task, budget in dict.fromkeys(cell[:2] for cell in sorted(cells.scores, key=_task_order)):
        mine = {cell: scores for cell, scores in cells.scores.items() if cell[:2] == (task, budget)}
        arms = sorted({arm for scores in mine.values() for arm in scores}, key=_arm_order)
        rows = []
        for arm in (arm for arm in arms if not arm.startswith(RANDOM_PREFIX)):
            found = [scores[arm] for scores in mine.values() if arm in scores]
            mean, std = _mean_std([score.test_accuracy for score in found])
            rows.append({"arm": arm, "seeds": len(found), "test_mean": mean, "test_std": std,
                         "lora_params": sorted({s.lora_params for s in found}), "lr": found[0].lr})  # fmt: skip
        medians = [found for scores in mine.values() if (found := random_median(scores)) is not None]
        if medians:
            mean, std = _mean_std([value for value, _ in medians])
            params = [s.lora_params for scores in mine.values() for a, s in scores.items() if a.startswith("random:")]
            k = "/".join(map(str, sorted({count for _, count in medians})))
            row = {"arm": f"random (median of {k})", "seeds": len(medians), "test_mean": mean, "test_std": std,
                   "lora_params": sorted({min(params), max(params)}), "lr": None}  # fmt: skip
            rows.insert(next((i for i, r in enumerate(rows) if r["arm"] in ("kappa", "eva", HEAD_ONLY)), len(rows)),
                        row)  # fmt: skip
        tables.setdefault(task, {})[budget] = rows
    return tables


def table_text(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    """``rows`` under ``headers`` as a Markdown table, or as ``format_table``'s plain text."""
    if not markdown:
        return format_table(headers, rows)
    lines = [headers, ["---"] * len(headers), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def _params(values: Sequence[int], is_range: bool) -> str:
    return ("-" if is_range else "/").join(f"{value:,}" for value in values) if values else "-"


def follow_up_report(cells: Cells) -> tuple[FollowUp, TestReport | None]:
    """Follow-up 1 on validation (``apply_follow_up``) and, unless it is pending, its arm on test."""
    follow_up = apply_follow_up(cells)
    return follow_up, None if follow_up.status == "pending" else compare_on_test(cells, follow_up.arm)


def render(
    cells: Cells,
    verdict: Verdict,
    report: TestReport | None,
    markdown: bool = False,
    follow_up: tuple[FollowUp, TestReport | None] | None = None,
) -> str:
    """The tables per task, the verdict, the paired statistics and the goal (README Markdown or plain text);
    ``follow_up``: ``follow_up_report(cells)``, computed here when not given."""
    lines: list[str] = []
    for task, budgets in task_tables(cells).items():
        folder = cells.tasks[task]
        state = "complete" if not folder.missing else f"incomplete, {folder.missing_text(example=False)}"
        lines += ["", f"**{task}** ({state}{'' if folder.counted else '; not counted by the rule'}): test accuracy "
                  "mean ± std over seeds (n), LoRA parameters and learning rate per budget", ""]  # fmt: skip
        names = sorted({row["arm"] for rows in budgets.values() for row in rows}, key=_row_order)
        headers = ["arm", *(f"{h} {b}" for b in budgets for h in ("LoRA params", "test acc", "lr"))]
        body = []
        for name in names:
            line = [name]
            for rows in budgets.values():
                row = next((row for row in rows if row["arm"] == name), None)
                line += (["-", "-", "-"] if row is None else
                         [_params(row["lora_params"], row["lr"] is None),
                          f"{row['test_mean']:.3f} ± {row['test_std']:.3f} ({row['seeds']})",
                          "-" if row["lr"] is None else f"{row['lr']:g}"])  # fmt: skip
            body.append(line)
        lines.append(table_text(headers, body, markdown))
    lines += ["", f"**Rule (validation accuracy): {verdict.status}.**", *_verdict_lines(verdict)]
    if report is not None:
        lines += [*_paired_lines(report, markdown), *_goal_lines(cells, report)]
    follow_up, on_test = follow_up_report(cells) if follow_up is None else follow_up
    if on_test is not None:
        lines += ["", f"**Follow-up 1, {follow_up.arm} (validation accuracy): {follow_up.status}.**",
                  *_follow_up_lines(follow_up), *_paired_lines(on_test, markdown),
                  *_per_task_lines(cells, on_test)]  # fmt: skip
    return "\n".join(lines).strip() + "\n"


def _paired_lines(report: TestReport, markdown: bool) -> list[str]:
    rows = [
        [p.against, p.cells, f"{p.wins}/{p.ties}/{p.losses}", f"{p.mean_difference:+.3f}",
         f"[{p.ci_low:+.3f}, {p.ci_high:+.3f}]", f"{p.p_value:.3g} ({p.p_method})"]
        for p in report.paired
    ]  # fmt: skip
    headers = ["against", "cells", "wins/ties/losses", "mean diff", "95 % bootstrap", "sign-flip p"]
    title = f"**{report.arm} on test** (paired over cells; differences {report.arm} minus the other):"
    return ["", title, "", table_text(headers, rows, markdown), ""]


def _follow_up_lines(follow_up: FollowUp) -> list[str]:
    helps = "helps" if follow_up.helps else "does not help"
    lines = [f"Over {len(follow_up.cells)} cells, validation accuracy of {follow_up.arm} minus default's: mean "
             f"{follow_up.mean_d:+.3f}, wins/ties/losses {follow_up.wins}/{follow_up.ties}/{follow_up.losses}. By "
             f"the registered rule it {helps}"
             + ("." if follow_up.status == "final" else " so far (not final).")]  # fmt: skip
    return lines + [f"- cell left out, {cell}: lacks {follow_up.arm} or default" for cell in follow_up.excluded_cells]


def _per_task(values: Mapping[str, float], tasks: Sequence[str]) -> str:
    return ", ".join(f"{task} {values[task]:+.3f}" if task in values else f"{task} no data" for task in tasks)


def _counted_tasks(cells: Cells) -> list[str]:
    return list(dict.fromkeys([*MINILM_TASKS, *(task for task, folder in cells.tasks.items() if folder.counted)]))


def _per_task_lines(cells: Cells, report: TestReport) -> list[str]:
    every = _counted_tasks(cells)
    return [f"- Per task, mean over its cells of {report.arm} minus default: {_per_task(report.vs_default, every)}; "
            f"minus the median random placement: {_per_task(report.vs_random, every)}."]  # fmt: skip


def _verdict_lines(verdict: Verdict) -> list[str]:
    lines = []
    if verdict.winner is not None:
        d = ", ".join(f"{arm} {value:+.3f}" for arm, value in sorted(verdict.mean_d.items(), key=lambda x: -x[1]))
        cells = len(verdict.cells)
        change = "change" if verdict.change_defaults else "stay"
        if verdict.status != "final":  # the rule is applied to the library only on a final verdict
            change = f"would {change} if this were final (the library keeps today's until then)"
        defaults = ", ".join(f"{name}={value}" for name, value in verdict.defaults.items())
        against = (f"it is {CURRENT}, today's default pick" if verdict.winner == CURRENT else
                   f"it beats {CURRENT} in {verdict.wins_over_current} of {cells} cells")  # fmt: skip
        lines.append(
            f"Over {cells} cells, mean validation accuracy minus default's: {d}. Winner: {verdict.winner}; {against}. "
            f"Defaults {change}: {defaults}."
        )
    lines += [f"- {note}" for note in verdict.notes]
    return lines + [f"- cell left out, {cell}: lacks {', '.join(a)}" for cell, a in verdict.excluded_cells.items()]


def _goal_lines(cells: Cells, report: TestReport) -> list[str]:
    every = _counted_tasks(cells)
    more = f"no ({', '.join(report.more_params_cells)})" if report.more_params_cells else "yes"
    return [
        f"- {report.arm} beats default on test (mean over a task's cells of {report.arm} minus default > 0) on "
        f"{report.minilm_wins} of the 3 MiniLM tasks ({_per_task(report.vs_default, MINILM_TASKS)}); the goal asks "
        "for at least 2.",
        f"- It beats the median random placement on every task: {'yes' if report.beats_random_everywhere else 'no'} "
        f"({_per_task(report.vs_random, every)}).",
        f"- It trains no more LoRA parameters than default in every cell: {more}.",
        f"- Goal {'met' if report.goal_met else 'not met'}.",
    ]


def markdown(cells: Cells, verdict: Verdict, report: TestReport | None) -> str:
    """The README block: ``render`` in Markdown."""
    return render(cells, verdict, report, markdown=True)


def decide(folders: Sequence[Path | str]) -> tuple[Cells, Verdict, TestReport | None]:
    """Load, apply the rule, and report the winner on test (None while the rule is pending)."""
    cells = load_cells(folders)
    verdict = apply_rule(cells)
    return cells, verdict, None if verdict.winner is None else compare_on_test(cells, verdict.winner)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI: print the verdict and tables (``--markdown``: README Markdown); ``--json``: write them too."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.equal_params.decide", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("folders", nargs="+", type=Path, help="equal_params output folders, one per task")
    parser.add_argument("--markdown", action="store_true", help="print the README block in Markdown")
    parser.add_argument("--json", type=Path, default=None, help="also write verdict, statistics, tables here")
    args = parser.parse_args(argv)
    cells, verdict, report = decide(args.folders)
    follow_up, on_test = follow_up_report(cells)
    payload = {
        "verdict": dataclasses.asdict(verdict),
        "test": None if report is None else dataclasses.asdict(report),
        "follow_up": dataclasses.asdict(follow_up),
        "follow_up_test": None if on_test is None else dataclasses.asdict(on_test),
        "tables": task_tables(cells),
        "tasks": {task: dataclasses.asdict(folder) for task, folder in cells.tasks.items()},
    }
    if args.json is not None:
        harness.write_result(args.json, payload)
    print(render(cells, verdict, report, markdown=args.markdown, follow_up=(follow_up, on_test)))
    return payload


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("equal_params").setLevel(logging.INFO)
    try:
        main()
    except BenchmarkError as error:
        raise SystemExit(f"decide: error: {error}") from None

"""How much room placement leaves at equal parameters: could *any* trained arm, chosen on validation, beat PEFT's
default placement on test?

    .venv/bin/python -m benchmarks.equal_params.headroom <folder> ... [--markdown]

Post hoc and descriptive: it chooses nothing and no default depends on it. Per task and budget, over the arms
that ran at every seed of that budget (each at its chosen rate, through ``decide.load_cells``; every random
placement, head-only and the follow-up arms included), it names

- the arm with the best mean *validation* accuracy over seeds (what a user who tried every arm and kept the best
  on validation would train) and its mean *test* accuracy minus ``default``'s: how much choosing among these
  placements on held-out data gains (arms tied on validation: all of them, and the mean of their gains);
- the arm with the best mean *test* accuracy (an oracle no method can reach) and its margin over ``default``.

If the first is not above zero and the second is small, the placements differ by less than what validation can
tell apart, and no selector (the kernel's or another) can be expected to beat ``default`` at that budget.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from .decide import REFERENCE, RULE_BUDGETS, Cells, load_cells, table_text

TIE = 1e-12  # mean accuracies this close are tied


@dataclass(frozen=True)
class Headroom:
    """One task and budget: ``arms`` compared over ``seeds`` seeds; gains are mean test accuracy minus
    ``default``'s (fractions)."""

    task: str
    budget: str
    arms: int
    seeds: int
    val_best: tuple[str, ...]  # the arms tied for the best mean validation accuracy (name order)
    val_best_gain: float  # the mean of their gains
    test_best: tuple[str, ...]  # the arms tied for the best mean test accuracy
    test_best_gain: float


def _best(means: dict[str, float]) -> tuple[str, ...]:
    top = max(means.values())
    return tuple(sorted(arm for arm, value in means.items() if value >= top - TIE))


def headroom(cells: Cells) -> list[Headroom]:
    """Per (task, budget) of the rule's scope (counted tasks, budgets P and P/4), tasks in ``cells``' order."""
    scope = cells.in_scope()
    rows = []
    for task in cells.tasks:
        for budget in RULE_BUDGETS:
            seeds = [cell for cell in scope if cell[:2] == (task, budget)]
            arms = set.intersection(*(set(cells.scores[cell]) for cell in seeds)) if seeds else set()
            if REFERENCE not in arms:
                continue
            means = {split: {arm: fmean(getattr(cells.scores[cell][arm], f"{split}_accuracy") for cell in seeds)
                             for arm in arms} for split in ("val", "test")}  # fmt: skip
            gain = {arm: value - means["test"][REFERENCE] for arm, value in means["test"].items()}
            val_best, test_best = _best(means["val"]), _best(means["test"])
            rows.append(Headroom(task, budget, len(arms), len(seeds), val_best, fmean(gain[a] for a in val_best),
                                 test_best, gain[test_best[0]]))  # fmt: skip
    return rows


def render(rows: Sequence[Headroom], markdown: bool = False) -> str:
    """One table and a summary line over the task-budgets."""
    headers = ["task", "budget", "arms", "best on validation", "its test - default", "best on test",
               "its test - default"]  # fmt: skip
    table = [[row.task, row.budget, str(row.arms), " = ".join(row.val_best), f"{row.val_best_gain:+.3f}",
              " = ".join(row.test_best), f"{row.test_best_gain:+.3f}"] for row in rows]  # fmt: skip
    if rows:
        mean_gain = fmean(row.val_best_gain for row in rows)
        summary = (f"Over {len(rows)} task-budgets, the arm best on validation gains {mean_gain:+.3f} on test over "
                   f"default on average (above zero in {sum(row.val_best_gain > 0 for row in rows)}); the best arm on "
                   f"test gains at most {max(row.test_best_gain for row in rows):+.3f}, and default is itself among "
                   f"the best on test in {sum(REFERENCE in row.test_best for row in rows)}.")  # fmt: skip
    else:
        summary = "No task-budget has default and other arms at every seed."
    separator = "\n\n" if markdown else "\n"
    return f"{table_text(headers, table, markdown)}{separator}{summary}\n"


def main(argv: Sequence[str] | None = None) -> list[Headroom]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.equal_params.headroom", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("folders", nargs="+", type=Path, help="equal_params output folders, one per task")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (as in README.md)")
    args = parser.parse_args(argv)
    rows = headroom(load_cells(args.folders))
    print(render(rows, markdown=args.markdown), end="")
    return rows


if __name__ == "__main__":
    main()

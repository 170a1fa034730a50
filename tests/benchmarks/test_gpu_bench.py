"""The GPU benchmark script's dry run: tiny shapes on the CPU through the same steps and result files, so that
the one prepared script a GPU session runs is known to work end to end (issue 16, item 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu" / "run_gpu_bench.sh"
STEPS = ("roberta_fp32", "llama7b_select")
OTHERS = ("profile_hooks", "device_tests")


def test_the_dry_run_writes_every_row_including_the_whole_select_and_the_7b_shape_plan(tmp_path):
    env = {**os.environ, "GPU_BENCH_SMOKE": "1", "GPU_BENCH_STEPS": ",".join(STEPS + OTHERS), "OUT": str(tmp_path),
           "GPU_BENCH_PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}  # fmt: skip
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for step in STEPS:
        assert f"=== {step}: ok" in done.stdout
        data = json.loads((tmp_path / f"{step}.json").read_text())
        rows = {row["key"]: row for row in data["rows"]}
        assert not [row for row in rows.values() if "error" in row], rows
        select = rows["select"]
        assert select["x_kernel_pass"] > 0 and select["search_s"] >= 0 and select["pick_params"] > 0
        assert select["plan_peak_mib"] > 0 and select["peak_mib"] >= 0 and select["plan_cap_mib"] > 0
    seven_b = json.loads((tmp_path / "llama7b_select.json").read_text())
    assert seven_b["args"]["kinds"] == "all-linear" and seven_b["args"]["param_budget"] == ["q", "v"]
    assert seven_b["candidates"] == 2 * 7  # every linear module of the 2-layer Llama: q k v o up down gate
    assert "29 passed" in done.stdout  # tests/test_device.py, on two CPU copies in smoke mode
    profile = json.loads((tmp_path / "profile_hooks.json").read_text())
    assert profile["wall_s"] > 0 and profile["top"] and 0 < sum(row["cpu_share"] for row in profile["top"]) <= 1
    assert "not asked (GPU_BENCH_STEPS)" in done.stdout  # the margin steps
    assert (tmp_path / "summary.txt").read_text().count(": ok,") == len(STEPS + OTHERS)

"""The examples run end to end (slow: real MiniLM on real reviews, offline)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_train_with_trainer_prints_eval_accuracy(tmp_path: Path) -> None:
    command = [
        sys.executable, str(EXAMPLES / "train_with_trainer.py"),
        "--train-size", "64", "--eval-size", "32", "--epochs", "1", "--num-samples", "8",
        "--output", str(tmp_path),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "816 subsets ranked" in run.stdout
    match = re.search(r"eval accuracy \(NTK subset #0\): ([0-9.]+)", run.stdout)
    assert match, run.stdout[-3000:]
    assert 0.0 <= float(match.group(1)) <= 1.0
    assert not list(tmp_path.glob("checkpoint-*"))  # save_strategy="no"

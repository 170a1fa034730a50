"""``python -m benchmarks.compare_picks --output DIR`` (from the repository root); ``--help`` says the rest."""

from __future__ import annotations

from ..harness import run_benchmark
from .choosing import BenchmarkError
from .main import main

if __name__ == "__main__":
    run_benchmark(main, "compare_picks", ("compare_picks", "peft_ntk_select"), BenchmarkError)

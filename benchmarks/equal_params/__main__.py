"""``python -m benchmarks.equal_params --task reviews --output DIR`` from the repository root; ``--help`` for more."""

from __future__ import annotations

import warnings

from ..compare_picks.choosing import BenchmarkError
from ..harness import run_benchmark
from .main import main

if __name__ == "__main__":
    # EVA's arms build their PeftModel in full before the init, on purpose (train_subset's get_peft_model)
    warnings.filterwarnings("ignore", message="lora with eva initialization used with low_cpu_mem_usage=False")
    run_benchmark(main, "equal_params", ("equal_params", "compare_picks", "peft_ntk_select"), BenchmarkError)

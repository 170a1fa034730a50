"""``python -m benchmarks.equal_params --task reviews --output DIR`` from the repository root; ``--help`` for more."""

from __future__ import annotations

import logging
import sys
import warnings

from ..compare_picks.choosing import BenchmarkError
from .main import main

if __name__ == "__main__":
    # EVA's arms build their PeftModel in full before the init, on purpose (train_subset's get_peft_model)
    warnings.filterwarnings("ignore", message="lora with eva initialization used with low_cpu_mem_usage=False")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("equal_params", "compare_picks", "peft_ntk_select"):
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        main()
    except BenchmarkError as error:
        sys.stderr.write(f"equal_params: error: {error}\n")
        raise SystemExit(1) from None

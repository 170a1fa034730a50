"""``python -m benchmarks.compare_picks --output DIR`` (from the repository root); ``--help`` says the rest."""

from __future__ import annotations

import logging
import sys

from .choosing import BenchmarkError
from .main import main

if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("compare_picks", "peft_ntk_select"):
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        main()
    except BenchmarkError as error:
        sys.stderr.write(f"compare_picks: error: {error}\n")
        raise SystemExit(1) from None

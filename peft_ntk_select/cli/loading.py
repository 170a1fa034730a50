"""Loading for the command line: a classifier from a path or hub name, and labelled text from a file.

Text rows are tokenized lazily, one row when the selector draws it, so large files cost nothing extra.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError
from .assets import load_reviews, minilm_path

DEMO = "demo"


def read_rows(data: str) -> Sequence[Mapping[str, Any]]:
    """Rows of a CSV (``.csv``), JSON Lines (``.jsonl``/``.json``) file, a ``datasets`` folder saved with
    ``save_to_disk``, or ``"demo"``: real movie reviews with columns ``text`` and ``label`` (fresh/rotten)."""
    if data == DEMO:
        return [{"text": text, "label": "fresh" if label else "rotten"} for text, label in load_reviews()]
    path = Path(data)
    if path.is_dir():
        try:
            import datasets
        except ImportError as err:
            raise InvalidInputError(f"{data} is a folder: reading a saved dataset needs datasets installed") from err
        return datasets.load_from_disk(str(path))
    if not path.is_file():
        raise InvalidInputError(f"data file {data!r} does not exist: pass a CSV, JSONL or datasets folder, or 'demo'")
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    if path.suffix in (".jsonl", ".json"):
        try:
            with path.open(encoding="utf-8") as handle:
                return [json.loads(line) for line in handle if line.strip()]
        except json.JSONDecodeError as err:
            raise InvalidInputError(f"{data} is not JSON Lines (one JSON object per line): {err}") from err
    raise InvalidInputError(f"unknown data format {path.suffix!r}: use .csv, .jsonl, a datasets folder, or 'demo'")


class TokenizedTexts(Sequence):
    """Map-style dataset over text rows: item i is the tokenizer's output for row i plus its ``labels`` id.

    Labels are mapped to ids in sorted order of their values (``label_names``).
    """

    def __init__(
        self,
        rows: Sequence[Mapping[str, Any]],
        tokenizer: Any,
        *,
        text_column: str,
        label_column: str | None,
        text_pair_column: str | None = None,
        max_length: int = 128,
    ) -> None:
        if len(rows) == 0:
            raise InvalidInputError("the data has no rows")
        columns = list(rows[0].keys())
        for column in (text_column, label_column, text_pair_column):
            if column is not None and column not in columns:
                raise InvalidInputError(f"column {column!r} not in the data (columns: {columns}): pass the right name")
        self.rows, self.tokenizer, self.max_length = rows, tokenizer, max_length
        self.text_column, self.label_column, self.text_pair_column = text_column, label_column, text_pair_column
        values = sorted({row[label_column] for row in rows}, key=str) if label_column else []
        self.label_names = [str(value) for value in values]
        self.label_ids = {value: i for i, value in enumerate(values)}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        row = self.rows[index]
        pair = (row[self.text_pair_column],) if self.text_pair_column else ()
        item = dict(self.tokenizer(row[self.text_column], *pair, truncation=True, max_length=self.max_length))
        if self.label_column:
            item["labels"] = self.label_ids[row[self.label_column]]
        return item


def load_classifier(model: str, num_labels: int, seed: int = 0) -> tuple[nn.Module, Any]:
    """(model, tokenizer): a sequence classifier with ``num_labels`` outputs from a local folder, a hub name
    (online users), or ``"demo"`` (the embedded MiniLM). A new head is drawn with ``seed``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = str(minilm_path()) if model == DEMO else model
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            classifier = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels)
    except (OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InvalidInputError(f"cannot load model {model!r}: {first_line}") from err
    if classifier.config.pad_token_id is None:
        classifier.config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return classifier.eval(), tokenizer

"""Loading for the command line: a classifier from a path or hub name, and labelled text from a file.

Text rows are tokenized lazily, one row when the selector draws it, so large files cost nothing extra.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError
from .assets import load_reviews, minilm_path

DEMO = "demo"

logger = logging.getLogger(__name__)


def read_rows(data: str) -> Sequence[Mapping[str, Any]]:
    """Rows of a CSV (``.csv``), JSON Lines (``.jsonl``/``.json``) file, a ``datasets`` folder saved with
    ``save_to_disk``, or ``"demo"``: real movie reviews with columns ``text`` and ``label`` (fresh/rotten).

    ``InvalidInputError`` for a file that is not UTF-8, not CSV, or not one JSON object per line (naming the line).
    """
    if data == DEMO:
        return [{"text": text, "label": "fresh" if label else "rotten"} for text, label in load_reviews()]
    path = Path(data)
    if path.is_dir():
        try:
            import datasets
        except ImportError as err:
            raise InvalidInputError(f"{data} is a folder: reading a saved dataset needs datasets installed") from err
        try:
            return datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as err:
            raise InvalidInputError(f"{data} is a folder but not a dataset saved with save_to_disk: {err}") from err
    if not path.is_file():
        raise InvalidInputError(f"data file {data!r} does not exist: pass a CSV, JSONL or datasets folder, or 'demo'")
    if path.suffix not in (".csv", ".jsonl", ".json"):
        raise InvalidInputError(f"unknown data format {path.suffix!r}: use .csv, .jsonl, a datasets folder, or 'demo'")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is skipped
            return list(csv.DictReader(handle)) if path.suffix == ".csv" else _json_lines(handle, data)
    except UnicodeDecodeError as err:
        raise InvalidInputError(
            f"{data} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}): save it as UTF-8"
        ) from err
    except csv.Error as err:
        raise InvalidInputError(f"{data} is not a valid CSV file: {err}") from err


def _json_lines(lines: Iterable[str], data: str) -> list[dict[str, Any]]:
    """One JSON object per non-blank line."""
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InvalidInputError(
                f"line {number} of {data} is not JSON ({err.msg}, column {err.colno}): write one JSON object per line"
            ) from err
        if not isinstance(row, dict):
            raise InvalidInputError(
                f"line {number} of {data} is {_a('JSON ' + _json_type(row))}, not an object: write one JSON object per "
                'line, e.g. {"text": "...", "label": 1}'
            )
        rows.append(row)
    return rows


def _json_type(value: object) -> str:
    names = {list: "array", dict: "object", str: "string", bool: "boolean", type(None): "null", int: "number",
             float: "number"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


LabelKey = int | float | str


def label_key(value: object, where: str) -> LabelKey | None:
    """The class a label value stands for: values equal as numbers are one class (1, "1", " 1 ", 1.0, True);
    other text is stripped. None for a missing label (None, NaN, empty or blank text); ``InvalidInputError``
    (naming ``where``) for a list, a dict or any other type."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return int(text)  # exact, however long
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return text
        return _number_key(number) if math.isfinite(number) else text
    if isinstance(value, numbers.Integral):  # bool, int, numpy integers
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return _number_key(number) if math.isfinite(number) else None
    raise InvalidInputError(
        f"{where}: the label is {_a(_json_type(value))} ({value!r:.40}), not a class: give one number or text per row"
    )


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _number_key(number: float) -> int | float:
    return int(number) if number.is_integer() else number


def _sort_key(key: LabelKey) -> tuple[int, Any]:
    """Numbers in numeric order, then text in text order."""
    return (1, key) if isinstance(key, str) else (0, key)


def column_names(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Column names: a dataset's, else every key of every row in order of first appearance."""
    names = getattr(rows, "column_names", None)
    if names is not None:
        return list(names)
    return list(dict.fromkeys(key for row in rows for key in row if key is not None))


def _column(rows: Sequence[Mapping[str, Any]], name: str) -> list[Any]:
    """Every row's value of column ``name`` (None where a row lacks it)."""
    if getattr(rows, "column_names", None) is not None:
        return list(rows[name])  # type: ignore[call-overload]
    return [row.get(name) for row in rows]


class TokenizedTexts(Sequence):
    """Map-style dataset over text rows: item i is the tokenizer's output for row i plus its ``labels`` id.

    Label values are mapped to classes by ``label_key`` (1, "1" and 1.0 are one class) and to ids in sorted
    order (numbers first, in numeric order, then text; ``label_names``). Rows without a label (null, empty) are
    left out, with a logged warning giving their count (``dropped``); item i is then the i-th row kept. Errors
    (``InvalidInputError``): no rows, a column not in the data, a text that is missing or not a string, a label
    that is a list or dict, or no row with a label. ``tokenizer`` may be None to check the rows only (set
    ``tokenizer`` before reading items).
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
        columns = column_names(rows)
        for column in (text_column, label_column, text_pair_column):
            if column is not None and column not in columns:
                raise InvalidInputError(f"column {column!r} not in the data (columns: {columns}): pass the right name")
        self.rows, self.tokenizer, self.max_length = rows, tokenizer, max_length
        self.text_column, self.label_column, self.text_pair_column = text_column, label_column, text_pair_column
        for column in (text_column, text_pair_column):
            if column is not None:
                _check_texts(_column(rows, column), column)
        labels = _column(rows, label_column) if label_column else [0] * len(rows)
        keys = [label_key(value, f"row {i + 1}, column {label_column!r}") for i, value in enumerate(labels)]
        self.kept = [i for i, key in enumerate(keys) if key is not None]
        self.dropped = len(rows) - len(self.kept)
        if not self.kept:
            raise InvalidInputError(
                f"no row has a label in column {label_column!r} (all {len(rows)} are null or empty): fill the labels, "
                "or pass the column that holds them"
            )
        if self.dropped:
            logger.warning("%d of %d rows have no label in column %r (null or empty): left out",
                           self.dropped, len(rows), label_column)  # fmt: skip
        values = sorted({keys[i] for i in self.kept}, key=_sort_key) if label_column else []
        self.label_names = [str(value) for value in values]
        self.label_ids = {value: i for i, value in enumerate(values)}
        self.labels = [self.label_ids[keys[i]] for i in self.kept] if label_column else None

    def __len__(self) -> int:
        return len(self.kept)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        row = self.rows[self.kept[index]]
        pair = (row[self.text_pair_column],) if self.text_pair_column else ()
        item = dict(self.tokenizer(row[self.text_column], *pair, truncation=True, max_length=self.max_length))
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item


def _check_texts(values: Sequence[Any], column: str) -> None:
    """``InvalidInputError`` naming the first row whose ``column`` is not a string."""
    for i, value in enumerate(values):
        if not isinstance(value, str):
            what = "missing (null)" if value is None else f"{_a(_json_type(value))} ({value!r:.40}), not text"
            raise InvalidInputError(f"row {i + 1}, column {column!r}: the text is {what}: give a string in every row")


def checkpoint_num_labels(model: str) -> int:
    """The number of outputs of the classification head that ``model``'s config declares (2 when it has none)."""
    from transformers import AutoConfig

    source = _source(model)
    try:
        return int(AutoConfig.from_pretrained(source).num_labels)
    except (OSError, ValueError) as err:
        raise _cannot_load(model, err) from err


def _source(model: str) -> str:
    """What transformers loads for ``model``: the embedded MiniLM for ``"demo"``, else ``model`` itself.
    ``InvalidInputError`` at once for a path that does not exist (transformers would take it for a hub name and,
    offline, wait on the network before failing)."""
    if model == DEMO:
        return str(minilm_path())
    path = Path(model).expanduser()
    path_like = model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model or (
        path.parent != Path(".") and path.parent.is_dir())  # fmt: skip
    if path_like and not path.exists():
        raise InvalidInputError(f"cannot load model {model!r}: no such folder: pass a model folder, a hub name "
                                "(with network access) or 'demo'")  # fmt: skip
    return model


def _cannot_load(model: str, err: BaseException) -> InvalidInputError:
    """The error for a model transformers could not load, with its first line."""
    return InvalidInputError(f"cannot load model {model!r}: {_first_line(err)}")


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def load_tokenizer(model: str) -> Any:
    """``model``'s tokenizer (a local folder, a hub name, or ``"demo"``), with the end-of-sequence token as
    padding when it has none. ``InvalidInputError`` when it cannot be loaded."""
    from transformers import AutoTokenizer

    source = _source(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise _cannot_load(model, err) from err
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_classifier(model: str, num_labels: int | None, seed: int = 0) -> tuple[nn.Module, Any]:
    """(model, tokenizer): a sequence classifier with ``num_labels`` outputs (None: as many as the checkpoint's
    config says, 2 by default) from a local folder, a hub name (online users), or ``"demo"`` (the embedded MiniLM).
    A new head is drawn with ``seed``. ``InvalidInputError`` when the model cannot be loaded, or when the
    checkpoint holds a trained head of another size than ``num_labels``."""
    from transformers import AutoModelForSequenceClassification

    source = _source(model)
    declared = checkpoint_num_labels(model)
    outputs = declared if num_labels is None else num_labels
    tokenizer = load_tokenizer(model)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            classifier = AutoModelForSequenceClassification.from_pretrained(source, num_labels=outputs)
    except RuntimeError as err:
        if "mismatched" not in str(err) or outputs == declared:
            raise
        raise InvalidInputError(
            f"model {model!r} has a trained classification head with {declared} outputs but the data has "
            f"{outputs} label values: use data with {declared} classes (or the right --label-column), or a "
            "checkpoint without a classification head"
        ) from err
    except (OSError, ValueError) as err:
        raise _cannot_load(model, err) from err
    if classifier.config.pad_token_id is None:
        classifier.config.pad_token_id = tokenizer.pad_token_id
    return classifier.eval(), tokenizer

"""Turn user data (dict batch, map-style dataset, DataLoader) into one padded batch of n samples.

Every accepted form ends as a dict of tensors with ``input_ids`` (n, T), ``attention_mask`` (n, T), and,
when present in the data, ``token_type_ids`` (n, T) and ``labels`` (n,) or (n, T). Rows are right-padded
and trimmed to the longest real sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from .errors import InvalidInputError

TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids")
LABEL_KEYS = ("labels", "label")

Example = dict[str, torch.Tensor]


def _as_tensor(value: Any, key: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InvalidInputError(
            f"field {key!r} holds {type(value).__name__}, not numbers: pass tokenized data "
            "(run the tokenizer first, e.g. dataset.map(lambda b: tokenizer(b['text'], truncation=True)))"
        ) from err


def _example(raw: Mapping[str, Any], position: int) -> Example:
    if "input_ids" not in raw:
        raise InvalidInputError(
            f"example {position} has no 'input_ids' (keys: {sorted(raw)}): pass tokenized data with "
            "an 'input_ids' field, e.g. tokenizer(texts, padding=True, return_tensors='pt')"
        )
    example = {key: _as_tensor(raw[key], key).reshape(-1) for key in TOKEN_KEYS if key in raw}
    for key in LABEL_KEYS:
        if key in raw and raw[key] is not None:
            example["labels"] = _as_tensor(raw[key], key)
            break
    if "attention_mask" not in example:
        example["attention_mask"] = torch.ones_like(example["input_ids"])
    keep = example["attention_mask"].bool()
    for key in (*TOKEN_KEYS, "labels"):
        if key in example and example[key].dim() == 1 and example[key].numel() == keep.numel():
            example[key] = example[key][keep]
    if example["input_ids"].numel() == 0:
        raise InvalidInputError(f"example {position} has no real token (its attention_mask is all zero)")
    return example


def _rows_of_batch(batch: Mapping[str, Any]) -> list[Example]:
    if "input_ids" not in batch:
        raise InvalidInputError(
            f"the batch has no 'input_ids' (keys: {sorted(batch)}): pass the tokenizer's output, "
            "e.g. tokenizer(texts, padding=True, return_tensors='pt')"
        )
    count = len(batch["input_ids"])
    fields = [key for key in (*TOKEN_KEYS, *LABEL_KEYS) if key in batch and batch[key] is not None]
    for key in fields:
        if len(batch[key]) != count:
            raise InvalidInputError(f"field {key!r} has {len(batch[key])} rows but 'input_ids' has {count}")
    return [_example({key: batch[key][i] for key in fields}, i) for i in range(count)]


def _draw(count: int, num_samples: int, seed: int) -> list[int]:
    if count <= num_samples:
        return list(range(count))
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(count, generator=generator)[:num_samples].tolist())


def _collect_loader(loader: Iterable[Any], num_samples: int) -> list[Example]:
    rows: list[Example] = []
    for batch in loader:
        if not isinstance(batch, Mapping):
            raise InvalidInputError(
                f"the DataLoader yields {type(batch).__name__}, not dicts: use a collate_fn that returns "
                "dicts with 'input_ids' (e.g. transformers.DataCollatorWithPadding)"
            )
        rows.extend(_rows_of_batch(batch))
        if len(rows) >= num_samples:
            break
    return rows[:num_samples]


def pad_examples(examples: Sequence[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad examples (each ``input_ids`` of shape (T_i,)) into one batch of shape (n, max T_i)."""
    length = max(int(example["input_ids"].numel()) for example in examples)
    batch: dict[str, torch.Tensor] = {}
    for key in TOKEN_KEYS:
        if key not in examples[0]:
            continue
        fill = pad_token_id if key == "input_ids" else 0
        rows = torch.full((len(examples), length), fill, dtype=examples[0][key].dtype)
        for i, example in enumerate(examples):
            rows[i, : example[key].numel()] = example[key]
        batch[key] = rows
    if all("labels" in example for example in examples):
        labels = [example["labels"] for example in examples]
        if labels[0].dim() == 0:
            batch["labels"] = torch.stack(labels)
        else:
            rows = torch.full((len(examples), length), -100, dtype=labels[0].dtype)
            for i, label in enumerate(labels):
                rows[i, : label.numel()] = label.reshape(-1)[:length]
            batch["labels"] = rows
    return batch


def prepare_samples(
    data: Any, *, num_samples: int, seed: int, pad_token_id: int | None
) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Draw ``num_samples`` examples from ``data`` and pad them into one batch.

    Args:
        data: a dict of tensors or lists (a tokenizer's output), a map-style dataset of such dicts
            (e.g. a tokenized ``datasets.Dataset``), or a DataLoader yielding dict batches.
        num_samples: how many samples to draw; all of them, in order, when the data has no more.
        seed: seed of the draw (map-style data). A DataLoader gives its first ``num_samples`` examples.
        pad_token_id: token used to pad ``input_ids`` (0 when None).

    Returns:
        ``(batch, sample_indices)``: batch tensors of shape (n, T); indices of the samples in ``data``.
    """
    if isinstance(data, torch.utils.data.DataLoader):
        rows = _collect_loader(data, num_samples)
        indices = list(range(len(rows)))
    elif isinstance(data, Mapping):
        all_rows = _rows_of_batch(data)
        indices = _draw(len(all_rows), num_samples, seed)
        rows = [all_rows[i] for i in indices]
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        indices = _draw(len(data), num_samples, seed)
        rows = []
        for i in indices:
            raw = data[i]
            if not isinstance(raw, Mapping):
                raise InvalidInputError(
                    f"data[{i}] is {type(raw).__name__}, not a dict: pass a tokenized dataset whose examples "
                    "are dicts with 'input_ids'"
                )
            rows.append(_example(raw, i))
    else:
        raise InvalidInputError(
            f"cannot read samples from {type(data).__name__}: pass a dict of tensors, a tokenized "
            "datasets.Dataset (or any map-style dataset of dicts), or a DataLoader of dict batches"
        )
    if len(rows) < 2:
        raise InvalidInputError(
            f"got {len(rows)} sample(s); a kernel needs at least 2: pass more examples (32 is the default)"
        )
    label_count = sum("labels" in row for row in rows)
    if 0 < label_count < len(rows):
        raise InvalidInputError("some examples have labels and some do not: give every example a label or none")
    return pad_examples(rows, 0 if pad_token_id is None else pad_token_id), indices

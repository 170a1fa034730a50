"""Checks of the padded sample batch against the model, before any kernel is computed.

``check_samples(model, batch)`` runs on the batch ``prepare_samples`` returns (``input_ids`` (n, T),
``attention_mask`` (n, T), maybe ``token_type_ids`` (n, T) and ``labels`` (n,) or (n, T)). It raises
``InvalidInputError`` where the model would crash with a generic error or compute something meaningless,
and logs a warning where the batch only looks wrong. The checks, in order:

1. weights on ``meta`` (``init_empty_weights``, ``device='meta'``) without accelerate hooks: error, there is
   nothing to differentiate. Offloaded models (accelerate hooks, ``_hf_hook``) keep ``meta`` weights on purpose.
2. ``input_ids`` not int64/int32 (floats, bools, bytes): error, the embedding refuses them.
3. token ids < 0 or >= the input embedding's size: error naming the largest id and the vocabulary size
   (tokenizer/model mismatch), or naming ``config.pad_token_id`` when only the padding is out of range.
4. sequences longer than the positions: error where the model has a learned absolute position embedding
   (BERT, RoBERTa, DistilBERT, GPT-2, OPT: the lookup crashes); the limit is read from that embedding
   (RoBERTa's positions start after its padding index, OPT's after an offset of 2). A warning where the
   config names a context length but positions are not looked up (rotary, ALiBi: Llama runs, but on
   positions it was never trained on).
5. ``token_type_ids`` outside ``[0, config.type_vocab_size)`` (or, for GPT-2, which embeds them with the
   word embeddings, outside the vocabulary): error. Models that ignore token types are not checked.
6. padding attended to: ``attention_mask`` missing (``prepare_samples`` then marks every token real) or all
   ones, while rows end (or start) in ``config.pad_token_id``: warning, since this is a guess from the ids.
   With ``pad_token_id`` distinct from ``eos_token_id`` any trailing pad is flagged; when they coincide
   (decoders) only when some rows end in it and others do not; leading runs only when some rows have them.
7. labels: none while ``needs_labels``: error. NaN or inf: error. Sequence classifiers
   (``*ForSequenceClassification``) need one class id per sample, (n,): several values per sample
   (multi-label, one-hot; ``prepare_samples`` pads them to (n, T)) are an error, as the selector would drop
   them or fail on them; with ``num_labels`` > 1, float labels are an error even when integral (the selector
   reads float labels as regression targets), and so are ids outside ``[0, num_labels)``; with
   ``num_labels == 1`` (regression) any finite value passes. Per-token heads (causal/masked LM, token
   classification) need integer (n, T) labels in ``[0, outputs)`` or -100 at real tokens: error otherwise.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping

import torch
from torch import nn

from .errors import InvalidInputError

logger = logging.getLogger(__name__)

ID_DTYPES = (torch.int64, torch.int32)  # what nn.Embedding accepts as indices
IGNORE_INDEX = -100
PER_TOKEN_HEADS = ("ForCausalLM", "LMHeadModel", "ForMaskedLM", "ForTokenClassification")
SEQUENCE_HEADS = ("ForSequenceClassification",)
POSITION_EMBEDDING_NAMES = ("position_embeddings", "wpe", "embed_positions")
CONTEXT_LENGTH_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len")

Batch = Mapping[str, torch.Tensor]


def check_samples(model: nn.Module, batch: Batch, *, needs_labels: bool = False) -> None:
    """Raise ``InvalidInputError`` for samples the model cannot run on, warn for samples that look wrong.

    Args:
        model: a transformers model (``model.config``), as passed to the selector.
        batch: the padded batch of ``prepare_samples``: ``input_ids`` (n, T) and ``attention_mask`` (n, T),
            maybe ``token_type_ids`` (n, T) and ``labels`` (n,) or (n, T).
        needs_labels: the selection uses labels (``head='probe'``, ``output='loss'`` on a classifier).
    """
    _check_weights_present(model)
    _check_id_dtype(batch)
    _check_id_range(model, batch)
    _check_length(model, batch)
    _check_token_types(model, batch)
    _check_padding_masked(model, batch)
    _check_labels(model, batch, needs_labels=needs_labels)


def _config_value(model: nn.Module, key: str) -> object:
    return getattr(getattr(model, "config", None), key, None)


def _vocabulary_size(model: nn.Module) -> int | None:
    """Rows of the input embedding (may exceed ``config.vocab_size`` after resizing), else the config's."""
    try:
        embedding = model.get_input_embeddings()  # type: ignore[operator]
    except (AttributeError, NotImplementedError):
        embedding = None
    if isinstance(embedding, nn.Embedding):
        return int(embedding.num_embeddings)
    size = _config_value(model, "vocab_size")
    return size if isinstance(size, int) else None


def _rows(mask: torch.Tensor, limit: int = 8) -> str:
    """The indices of the True rows of ``mask`` (n,), at most ``limit`` of them, for messages."""
    rows = mask.nonzero().flatten().tolist()
    return str(rows[:limit])[:-1] + (", ...]" if len(rows) > limit else "]")


def _check_weights_present(model: nn.Module) -> None:
    """Weights on ``meta`` with no accelerate hook to bring them in: the model was never loaded."""
    if any(hasattr(module, "_hf_hook") for module in model.modules()):
        return
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.device.type == "meta":
            raise InvalidInputError(
                f"the model's weights are on 'meta' (built with init_empty_weights or device='meta'; {name!r} "
                "among them): load real weights, e.g. AutoModelForSequenceClassification.from_pretrained(...) "
                "or model.to_empty(device='cpu') followed by model.load_state_dict(...)"
            )


def _check_id_dtype(batch: Batch) -> None:
    input_ids = batch["input_ids"]
    if input_ids.dtype not in ID_DTYPES:
        raise InvalidInputError(
            f"input_ids are {input_ids.dtype}, but token ids must be integers (torch.long): pass the tokenizer's "
            "output as it is, or cast them with input_ids.long()"
        )


def _check_id_range(model: nn.Module, batch: Batch) -> None:
    """Ids the input embedding has no row for crash the lookup (IndexError, or a device assert on CUDA)."""
    size = _vocabulary_size(model)
    input_ids = batch["input_ids"]
    if size is None or input_ids.numel() == 0:
        return
    bad = (input_ids < 0) | (input_ids >= size)
    if not bool(bad.any()):
        return
    pad = _config_value(model, "pad_token_id")
    mask = batch.get("attention_mask")
    only_padding = mask is not None and isinstance(pad, int) and not bool(mask.bool()[bad].any())
    if only_padding and bool((input_ids[bad] == pad).all()):
        raise InvalidInputError(
            f"the samples are padded with model.config.pad_token_id={pad}, which is not a token id of the model's "
            f"vocabulary of {size}: set model.config.pad_token_id to a valid id (e.g. tokenizer.pad_token_id)"
        )
    worst = int(input_ids.min()) if bool((input_ids < 0).any()) else int(input_ids.max())
    raise InvalidInputError(
        f"input_ids hold token id {worst} (rows {_rows(bad.any(-1))}), but {type(model).__name__} has a vocabulary "
        f"of {size} (ids 0..{size - 1}): the tokenizer does not match the model. Tokenize with the model's own "
        "tokenizer (AutoTokenizer.from_pretrained on the same checkpoint), or, after adding tokens to the "
        "tokenizer, call model.resize_token_embeddings(len(tokenizer))"
    )


def _absolute_positions(model: nn.Module) -> int | None:
    """How many positions the model's learned absolute position embedding holds (None: it has none)."""
    limits = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Embedding) or name.rsplit(".", 1)[-1] not in POSITION_EMBEDDING_NAMES:
            continue
        offset = getattr(module, "offset", None)  # OPT, BART: positions start at 2
        if not isinstance(offset, int):  # RoBERTa: positions start after the padding index
            offset = 0 if module.padding_idx is None else module.padding_idx + 1
        limits.append(int(module.num_embeddings) - offset)
    return min(limits) if limits else None


def _check_length(model: nn.Module, batch: Batch) -> None:
    length = int(batch["input_ids"].shape[-1])
    limit = _absolute_positions(model)
    fix = "truncate the samples, e.g. tokenizer(texts, truncation=True, max_length={})"
    if limit is not None:
        if length > limit:
            raise InvalidInputError(
                f"the longest sample has {length} tokens, but {type(model).__name__} has absolute position "
                f"embeddings for {limit} positions only: " + fix.format(limit)
            )
        return
    context = next((value for key in CONTEXT_LENGTH_KEYS if isinstance(value := _config_value(model, key), int)), None)
    if context is not None and length > context:
        logger.warning(
            "the longest sample has %d tokens, more than the %d positions %s was trained on: it runs, but the "
            "kernels describe positions the model never saw; %s",
            length, context, type(model).__name__, fix.format(context),
        )  # fmt: skip


def _check_token_types(model: nn.Module, batch: Batch) -> None:
    token_types = batch.get("token_type_ids")
    if token_types is None or token_types.numel() == 0:
        return
    if token_types.dtype not in ID_DTYPES:
        raise InvalidInputError(
            f"token_type_ids are {token_types.dtype}, not integers: pass the tokenizer's output as it is, or cast "
            "them with token_type_ids.long()"
        )
    types = _config_value(model, "type_vocab_size")
    if isinstance(types, int):
        what = f"type_vocab_size={types} (token types 0..{types - 1})"
    elif "token_type_ids" in inspect.signature(model.forward).parameters and (types := _vocabulary_size(model)):
        what = f"token types embedded with its word embeddings, {types} of them"  # GPT-2
    else:
        return  # the model ignores token types
    bad = (token_types < 0) | (token_types >= types)
    if bool(bad.any()):
        worst = int(token_types.min()) if bool((token_types < 0).any()) else int(token_types.max())
        raise InvalidInputError(
            f"token_type_ids hold {worst} (rows {_rows(bad.any(-1))}), but {type(model).__name__} has {what}: "
            "the tokenizer does not match the model (e.g. a BERT tokenizer for a RoBERTa model); tokenize with the "
            "model's own tokenizer, or drop 'token_type_ids' from the data"
        )


def _pad_runs(input_ids: torch.Tensor, pad: int, *, end: bool) -> torch.Tensor:
    """Which rows (n,) of ``input_ids`` (n, T) end (``end``) or start in ``pad``."""
    return input_ids[:, -1 if end else 0] == pad


def _check_padding_masked(model: nn.Module, batch: Batch) -> None:
    """Rows padded but not masked: the model attends to the padding and the output is read there."""
    mask = batch.get("attention_mask")
    pad = _config_value(model, "pad_token_id")
    input_ids = batch["input_ids"]
    if (mask is not None and not bool(mask.bool().all())) or not isinstance(pad, int) or input_ids.numel() == 0:
        return
    eos = _config_value(model, "eos_token_id")
    eos_ids = set(eos) if isinstance(eos, (list, tuple)) else {eos}
    trailing = _pad_runs(input_ids, pad, end=True)
    leading = _pad_runs(input_ids, pad, end=False)
    if pad in eos_ids:  # decoders that pad with eos: a row may end in eos for real
        trailing = trailing if not bool(trailing.all()) else torch.zeros_like(trailing)
    padded = trailing | (leading if not bool(leading.all()) else torch.zeros_like(leading))
    if bool(padded.any()):
        logger.warning(
            "rows %s of input_ids start or end in padding (pad_token_id=%d) but the attention_mask is missing or "
            "all ones, so the model attends to the padding and its outputs are read there: pass the tokenizer's "
            "attention_mask with the input_ids (tokenizer(texts, padding=True, return_tensors='pt') returns it)",
            _rows(padded), pad,
        )  # fmt: skip


def _has_head(model: nn.Module, suffixes: tuple[str, ...]) -> bool:
    return type(model).__name__.endswith(suffixes)


def _check_labels(model: nn.Module, batch: Batch, *, needs_labels: bool) -> None:
    labels = batch.get("labels")
    if labels is None:
        if needs_labels:
            raise InvalidInputError(
                "this selection needs labels (head='probe', or output_mode='loss' on a classifier) but the data has "
                "none: add a 'labels' (or 'label') field with one class id per example, e.g. a 'label' column of "
                "the dataset or batch['labels'] = torch.tensor(class_ids)"
            )
        return
    if labels.is_floating_point() or labels.is_complex():
        bad = ~torch.isfinite(labels)
        if bool(bad.any()):
            rows = bad if bad.dim() == 1 else bad.flatten(1).any(-1)
            raise InvalidInputError(f"labels hold NaN or inf (rows {_rows(rows)}): fix or drop those examples")
    if _has_head(model, SEQUENCE_HEADS):
        _check_class_ids(model, labels)
    elif _has_head(model, PER_TOKEN_HEADS) and labels.dim() == 2:
        _check_token_labels(model, labels, batch.get("attention_mask"))


def _check_class_ids(model: nn.Module, labels: torch.Tensor) -> None:
    """Sequence classifiers: one class id per sample in [0, num_labels); a regression head takes any value."""
    name = type(model).__name__
    if labels.dim() != 1:
        raise InvalidInputError(
            f"labels have several values per example (shape {tuple(labels.shape)} after padding: multi-label or "
            f"one-hot?), but {name} is ranked with one class id per example, labels of shape (n,): pass class ids "
            "(labels.argmax(-1) for one-hot labels), or leave the labels out"
        )
    num_labels = _config_value(model, "num_labels")
    if not isinstance(num_labels, int) or num_labels <= 1:
        return  # regression head (num_labels=1): float targets
    if labels.is_floating_point():
        raise InvalidInputError(
            f"labels are {labels.dtype}, but {name} has num_labels={num_labels} classes and float labels are read as "
            "regression targets: cast class ids with labels.long(), or load the model with num_labels=1 for "
            "regression"
        )
    bad = (labels < 0) | (labels >= num_labels)
    if bool(bad.any()):
        worst = int(labels.min()) if bool((labels < 0).any()) else int(labels.max())
        raise InvalidInputError(
            f"label {worst} (rows {_rows(bad)}) is not a class of {name}, which has num_labels={num_labels} "
            f"(class ids 0..{num_labels - 1}): fix the labels, or load the model with the right number of classes "
            "(from_pretrained(..., num_labels=...))"
        )


def _check_token_labels(model: nn.Module, labels: torch.Tensor, mask: torch.Tensor | None) -> None:
    """Per-token heads: integer labels (n, T), -100 (ignored) or an id in [0, outputs) at every real token."""
    name = type(model).__name__
    if labels.is_floating_point():
        raise InvalidInputError(
            f"labels are {labels.dtype}, but {name} needs integer token ids (or -100 to ignore a token): "
            "cast them with labels.long()"
        )
    if _has_head(model, ("ForTokenClassification",)):
        outputs, what = _config_value(model, "num_labels"), "num_labels"
    else:
        output_embedding = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        outputs = getattr(output_embedding, "out_features", None) or _vocabulary_size(model)
        what = "a vocabulary"
    if not isinstance(outputs, int):
        return
    real = torch.ones_like(labels, dtype=torch.bool) if mask is None or mask.shape != labels.shape else mask.bool()
    bad = real & (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= outputs))
    if bool(bad.any()):
        values = labels[bad]
        worst = int(values.min()) if bool((values < 0).any()) else int(values.max())
        raise InvalidInputError(
            f"labels hold {worst} (rows {_rows(bad.any(-1))}), but {name} has {what} of {outputs} (ids "
            f"0..{outputs - 1}, and -100 for tokens to ignore): fix the labels, or tokenize with the model's own "
            "tokenizer"
        )

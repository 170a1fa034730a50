"""The per-sample output f(x) whose gradients define the kernel.

``trace``: the logits (c of them; for token-level models, those at the last real token), the kernel
being sum_a <df_a(x), df_a(x')>; ``margin``: logit_1 - logit_0 of a binary classifier; ``loss``: the
sample's mean cross-entropy (token-level for causal LMs, padding and label -100 ignored; squared error
for a single-logit regression head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidConfigError, InvalidInputError

OUTPUT_MODES = ("trace", "margin", "loss")


def is_token_level(model: nn.Module) -> bool:
    """True for models whose logits are per token (causal LMs), where ``loss`` is the default output."""
    name = type(model).__name__
    return name.endswith("ForCausalLM") or name.endswith("LMHeadModel")


def default_output(model: nn.Module) -> str:
    """``loss`` for causal LMs, ``trace`` for classification heads."""
    return "loss" if is_token_level(model) else "trace"


def validate_output(mode: str, model: nn.Module, batch: dict[str, torch.Tensor]) -> None:
    """Raise a typed error when ``mode`` is unknown or does not fit the model or the batch."""
    if mode not in OUTPUT_MODES:
        raise InvalidConfigError(f"unknown output mode {mode!r}: choose one of {OUTPUT_MODES}")
    if mode == "margin" and is_token_level(model):
        raise InvalidConfigError("output='margin' needs a binary classifier, not a causal LM: use 'loss' or 'trace'")
    if mode == "loss" and not is_token_level(model) and "labels" not in batch:
        raise InvalidInputError(
            "output='loss' on a classifier needs labels: add a 'labels' (or 'label') field to the data, "
            "or use output='trace'"
        )


def _accurate(x: torch.Tensor) -> torch.Tensor:
    """Half-precision values in float32; float32/float64 as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _last_token(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    last = mask.long().sum(-1) - 1  # right padding
    index = last.reshape(-1, 1, 1).expand(-1, 1, logits.shape[-1])
    return logits.gather(1, index).squeeze(1)


def _token_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    mask = batch["attention_mask"]
    labels = batch.get("labels")
    if labels is None or labels.dim() != 2:
        labels = batch["input_ids"]
    labels = labels.long().masked_fill(mask == 0, -100)  # int32 ids (numpy on Windows) as cross_entropy targets
    shifted = labels[:, 1:]
    token_loss = F.cross_entropy(
        _accurate(logits[:, :-1]).transpose(1, 2), shifted, ignore_index=-100, reduction="none"
    )
    counted = (shifted != -100).sum(-1).clamp(min=1)
    return token_loss.sum(-1) / counted


def sample_outputs(logits: torch.Tensor, batch: dict[str, torch.Tensor], mode: str) -> torch.Tensor:
    """Per-sample outputs (b, c) from logits (b, c) or token logits (b, T, V).

    ``batch`` holds ``attention_mask`` (b, T), ``input_ids`` and, for ``loss`` on classifiers, ``labels`` (b,).
    """
    token_level = logits.dim() == 3
    if mode == "trace":
        return _accurate(_last_token(logits, batch["attention_mask"]) if token_level else logits)
    if mode == "margin":
        if token_level or logits.shape[-1] != 2:
            raise InvalidConfigError(
                f"output='margin' needs a binary classifier (2 logits), got logits of shape "
                f"{tuple(logits.shape)}: use output='trace' or 'loss'"
            )
        return _accurate(logits[:, 1] - logits[:, 0]).unsqueeze(1)
    if token_level:
        return _token_loss(logits, batch).unsqueeze(1)
    labels = batch["labels"]
    logits = _accurate(logits)
    if logits.shape[-1] == 1:
        return 0.5 * (logits[:, 0] - labels.to(logits.dtype)).pow(2).unsqueeze(1)
    return F.cross_entropy(logits, labels.long(), reduction="none").unsqueeze(1)

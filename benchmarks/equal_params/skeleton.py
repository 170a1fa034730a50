"""The model's shape without its weights: candidates, and the exact LoRA parameters of a config, counted by PEFT.

A skeleton is the classifier built from its config on the ``meta`` device (no memory, no weights read), so
``get_peft_model`` can be applied as often as needed to count what a ``LoraConfig`` would train.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from peft_ntk_select.candidates import Candidate, discover_candidates
from peft_ntk_select.cli.loading import DEMO

from ..compare_picks.choosing import short_names

PEFT_PREFIX = "base_model.model."


class Skeleton:
    """Weightless instances of the classifier at ``model_source`` with ``num_labels`` outputs."""

    def __init__(self, model_source: str, num_labels: int) -> None:
        from transformers import AutoConfig

        from peft_ntk_select.cli.assets import minilm_path

        source = str(minilm_path()) if model_source == DEMO else model_source
        self.config = AutoConfig.from_pretrained(source, num_labels=num_labels)
        self.model = self.build()

    def build(self) -> nn.Module:
        """A fresh weightless classifier (each ``get_peft_model`` needs its own)."""
        from transformers import AutoModelForSequenceClassification

        with torch.device("meta"):
            return AutoModelForSequenceClassification.from_config(self.config)

    def candidates(self, kinds: Iterable[str] | str | None, rank: int) -> list[Candidate]:
        """``discover_candidates`` of the model (full names match the real model's)."""
        return discover_candidates(self.model, kinds=kinds, rank=rank)

    def peft(self, config: LoraConfig) -> nn.Module:
        """A weightless PeftModel of ``config`` (a copy: ``config`` is untouched)."""
        return get_peft_model(self.build(), copy.deepcopy(config))


def count_lora_params(model: nn.Module) -> int:
    """Trainable parameters whose name holds ``lora_`` (A and B of every adapted module)."""
    return sum(param.numel() for name, param in model.named_parameters() if "lora_" in name and param.requires_grad)


def module_ranks(model: nn.Module, adapter: str = "default") -> dict[str, int]:
    """Full name in the base model -> rank, for every LoRA layer of a PeftModel (after EVA: the ranks it chose)."""
    from peft.tuners.lora import LoraLayer

    return {name.removeprefix(PEFT_PREFIX): int(module.r[adapter]) for name, module in model.named_modules()
            if isinstance(module, LoraLayer) and adapter in module.r}  # fmt: skip


def describe(ranks: Mapping[str, int], candidates: Sequence[Candidate], r: int) -> str:
    """``L0.q;L3.v@4``: modules in candidate order as ``L{layer}.{kind}``, with ``@rank`` where it is not
    ``r``; modules outside ``candidates`` keep their full name."""
    short = short_names(candidates)
    order = {c.name: i for i, c in enumerate(candidates)}
    names = sorted(ranks, key=lambda name: (order.get(name, len(order)), name))
    return ";".join(short.get(name, name) + ("" if ranks[name] == r else f"@{ranks[name]}") for name in names)


def lora_summary(
    skeleton: Skeleton, config: LoraConfig | None, candidates: Sequence[Candidate], r: int
) -> dict[str, Any]:
    """``lora_params`` and ``modules`` (``describe``) of ``config`` on the skeleton; head-only (None): 0 and ''."""
    if config is None:
        return {"lora_params": 0, "modules": ""}
    peft_model = skeleton.peft(config)
    return {"lora_params": count_lora_params(peft_model), "modules": describe(module_ranks(peft_model), candidates, r)}

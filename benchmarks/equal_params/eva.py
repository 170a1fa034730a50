"""PEFT's EVA init for the ``eva`` arms: the SVD of each adapted module's inputs on the training examples.

EVA depends on the base weights and the training examples only (not on the seed, the head or the learning
rate), so its state is computed once per budget, saved in the output folder (``eva_<budget>.pt``, its time in
``eva.json``) and loaded into every later run's PeftModel.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .arms import budget_slug

logger = logging.getLogger("equal_params")


def eva_batches(train: Sequence[Mapping[str, Any]], tokenizer: Any, batch_size: int) -> torch.utils.data.DataLoader:
    """The training examples in order, padded, as dict batches WITHOUT labels: PEFT's default input mask
    (``use_label_mask``) is meant for token labels and would misread a classifier's one label per example."""
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    inputs = [{key: value for key, value in example.items() if key != "labels"} for example in train]
    return torch.utils.data.DataLoader(inputs, batch_size=batch_size, collate_fn=lambda rows: dict(collate(rows)))


class EvaInit:
    """Applies EVA to a fresh PeftModel built with ``init_lora_weights="eva"``, caching its state in ``folder``."""

    def __init__(self, folder: Path, train: Sequence[Mapping[str, Any]], tokenizer: Any, batch_size: int) -> None:
        self.folder, self.train, self.tokenizer, self.batch_size = folder, train, tokenizer, batch_size

    def times(self) -> dict[str, float]:
        """Seconds EVA's SVD took per budget (``eva.json``)."""
        path = self.folder / "eva.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def state(self, peft_model: nn.Module, budget: str) -> dict[str, torch.Tensor]:
        """EVA's state for ``budget`` (module name -> its A rows), computed on ``peft_model`` when not cached."""
        from peft import get_eva_state_dict

        path = self.folder / f"eva_{budget_slug(budget)}.pt"
        if path.is_file():
            return torch.load(path)
        start = time.perf_counter()
        state = get_eva_state_dict(peft_model, eva_batches(self.train, self.tokenizer, self.batch_size),
                                   show_progress_bar=False)  # fmt: skip
        seconds = time.perf_counter() - start
        torch.save(state, path)
        times = {**self.times(), budget: seconds}
        (self.folder / "eva.json").write_text(json.dumps(times, indent=1))
        logger.info("EVA at %s: SVD of the adapted modules' inputs in %.1f s", budget, seconds)
        return state

    def __call__(self, peft_model: nn.Module, budget: str) -> None:
        """EVA's A (ranks redistributed, total rank kept; PEFT rescales alpha with each new rank)."""
        from peft import initialize_lora_eva_weights

        state = self.state(peft_model, budget)
        initialize_lora_eva_weights(peft_model, eva_state_dict=dict(state), show_progress_bar=False)

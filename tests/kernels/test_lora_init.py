"""The LoRA A the kernels are taken at follows PEFT's own init, with PEFT's ranks and scales."""

from __future__ import annotations

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model

from peft_ntk_select.candidates import Candidate
from peft_ntk_select.kernels.lora_init import draw_adapter_init, module_rank, module_scale

IN, OUT, R = 400, 300, 16


def peft_lora_a(init) -> torch.Tensor:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(IN, OUT))
    peft_model = get_peft_model(model, LoraConfig(r=R, lora_alpha=R, target_modules=["0"], init_lora_weights=init))
    return peft_model.base_model.model[0].lora_A["default"].weight.detach()


@pytest.mark.parametrize("init", [True, "gaussian"])
def test_drawn_a_has_the_distribution_of_peft_init(init):
    candidate = Candidate("0", 0, "q", IN, OUT, R * (IN + OUT))
    ours = draw_adapter_init([candidate], LoraConfig(r=R, init_lora_weights=init), seed=0)["0"]
    theirs = peft_lora_a(init)
    assert ours.shape == theirs.shape == (R, IN)
    assert ours.std().item() == pytest.approx(theirs.std().item(), rel=0.03)
    assert ours.abs().max().item() <= 1.3 * theirs.abs().max().item()
    if init is True:
        assert ours.abs().max().item() <= 1 / math.sqrt(IN)


def test_rank_and_alpha_patterns_are_applied_per_module():
    config = LoraConfig(r=8, lora_alpha=16, rank_pattern={"query": 4}, alpha_pattern={"query": 2})
    assert module_rank(config, "bert.encoder.layer.0.attention.self.query") == 4
    assert module_scale(config, "bert.encoder.layer.0.attention.self.query") == 2 / 4
    assert module_rank(config, "bert.encoder.layer.0.attention.self.value") == 8
    assert module_scale(config, "bert.encoder.layer.0.attention.self.value") == 16 / 8


def test_rslora_scale():
    assert module_scale(LoraConfig(r=16, lora_alpha=8, use_rslora=True), "any") == 8 / 4

"""Additivity, checked against PEFT itself: the ratio from summed S_l equals the ratio of the NTK of a real
PEFT model with LoRA on exactly that subset (all its trainable parameters, plain autograd)."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from peft_ntk_select import NTKSelector
from peft_ntk_select.search.spectral import extreme_eigenvalues
from tests.helpers import make_batch, make_model

SIGMA = 1e-3


def peft_kernel(model, config, result, batch) -> torch.Tensor:
    """NTK of every trainable parameter of get_peft_model(model, config), per sample, trace over logits."""
    peft_model = get_peft_model(copy.deepcopy(model), config)
    result.apply_init(peft_model)
    peft_model.eval()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    rows = []
    for i in range(batch["input_ids"].shape[0]):
        keep = batch["attention_mask"][i].bool()
        logits = peft_model(input_ids=batch["input_ids"][i][keep][None]).logits[0]
        grads = [torch.autograd.grad(logits[a], params, retain_graph=True, allow_unused=True) for a in range(2)]
        rows.append(torch.stack([torch.cat([g.flatten() for g in per_a if g is not None]) for per_a in grads]))
    features = torch.stack(rows)
    return torch.einsum("iap,jap->ij", features, features)


@pytest.mark.parametrize("task_type", ["SEQ_CLS", None], ids=["head-in-base", "no-base"])
@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
def test_ratio_of_summed_contributions_equals_ratio_of_direct_peft_kernel(family, task_type):
    model = make_model(family)
    batch = make_batch(n=4)
    config = LoraConfig(r=2, lora_alpha=4, task_type=task_type)
    selector = NTKSelector(
        model, config, budget=2, sigma=SIGMA, engine="hooks", kinds=("q", "v", "qkv"), show_progress=False
    )
    result = selector.select(batch)
    _, base_max = extreme_eigenvalues(result.base_kernel)
    assert len(result.ranking) == len(result.candidates) * (len(result.candidates) - 1) // 2
    for entry in result.ranking:
        direct = peft_kernel(model, result.config_for(entry.modules), result, batch)
        _, direct_max = extreme_eigenvalues(direct)
        direct_ratio = (direct_max + SIGMA) / (base_max + SIGMA)
        assert float(direct_ratio) == pytest.approx(entry.ratio, rel=1e-12)
        summed = result.base_kernel + sum(result.contributions[result.candidates.index(c)] for c in result.candidates
                                          if c.name in entry.modules)  # fmt: skip
        assert torch.allclose(direct, summed, rtol=1e-9, atol=1e-12 * float(summed.abs().max()))

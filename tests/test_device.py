"""On a CUDA device: every engine's kernels equal the CPU's in float64, and the model is left as it was (device,
mode, weights). Skipped without CUDA; ``benchmarks/gpu/run_gpu_bench.sh`` runs it on the GPU it is lent.
``NTK_TEST_DEVICE=cpu`` runs the same checks against a second copy on the CPU (a check of the tests)."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from peft import LoraConfig

from peft_ntk_select import NTKSelector, compute_kernels, discover_candidates

from .helpers import make_batch, make_model, model_snapshot

DEVICE = os.environ.get("NTK_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device")
CONFIG = LoraConfig(r=2, lora_alpha=4, task_type="SEQ_CLS")


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual.cpu(), expected.cpu(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kernel", ["lora", "expected", "adam"])
@pytest.mark.parametrize("engine", ["func", "hooks", "reference"])
@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
def test_kernels_on_the_device_equal_the_cpus_in_float64_and_leave_the_model(family, engine, kernel):
    on_cpu = make_model(family)
    on_device = copy.deepcopy(on_cpu).to(DEVICE).train()
    batch = make_batch()
    candidates = discover_candidates(on_cpu, kinds="all-linear")
    base, parts, _ = compute_kernels(on_cpu, batch, candidates, CONFIG, engine=engine, kernel=kernel)
    before = model_snapshot(on_device)
    device_base, device_parts, _ = compute_kernels(on_device, batch, candidates, CONFIG, engine=engine, kernel=kernel)
    assert model_snapshot(on_device) == before
    close(device_base, base)
    close(device_parts, parts)


def test_select_with_device_runs_there_and_puts_the_model_back():
    model = make_model("bert").train()
    before = model_snapshot(model)
    batch = make_batch()
    there = NTKSelector(model, CONFIG, budget=2, device=DEVICE, show_progress=False).select(batch)
    assert model_snapshot(model) == before
    here = NTKSelector(model, CONFIG, budget=2, show_progress=False).select(batch)
    assert [entry.modules for entry in there.ranking] == [entry.modules for entry in here.ranking]
    close(there.contributions, here.contributions)
    assert there.memory_plan["max_memory"] > 0


def test_a_model_on_the_device_is_selected_in_place_and_left_unchanged():
    model = make_model("llama").to(DEVICE).train()
    before = model_snapshot(model)
    result = NTKSelector(model, CONFIG, budget=1, show_progress=False).select(make_batch())
    assert model_snapshot(model) == before
    assert result.ranking and all(param.device.type == DEVICE for param in model.parameters())
    assert result.engine == ("hooks" if DEVICE == "cuda" else "func")  # engine="auto"

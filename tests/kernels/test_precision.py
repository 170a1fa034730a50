"""Models as users run them: half precision (overflow -> typed error, dtype= upcast) and gradient checkpointing."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig

from peft_ntk_select import NTKSelector
from peft_ntk_select.errors import InvalidConfigError, KernelComputationError
from tests.helpers import make_batch, make_model, model_snapshot

CONFIG = LoraConfig(r=2, lora_alpha=2, task_type="SEQ_CLS")


@pytest.mark.parametrize("engine", ["func", "hooks"])
@pytest.mark.parametrize("kernel", ["lora", "expected"])
def test_an_overflow_raises_a_typed_error_naming_the_kernels_and_the_fix(engine, kernel):
    model = make_model("llama").to(torch.bfloat16)
    with torch.no_grad():
        model.score.weight.fill_(1e38)  # finite in bfloat16; the logits and their gradients below are not
    before = model_snapshot(model)
    selector = NTKSelector(model, CONFIG, budget=1, engine=engine, kernel=kernel, show_progress=False)
    with pytest.raises(KernelComputationError, match=r"non-finite kernel values for .*bfloat16.*dtype=torch.float32"):
        selector.select(make_batch(n=4))
    assert model_snapshot(model) == before


def test_dtype_float32_runs_a_bfloat16_model_in_float32_and_puts_its_own_tensors_back():
    model = make_model("llama").to(torch.bfloat16)
    before = model_snapshot(model)
    storage = {name: parameter.data_ptr() for name, parameter in model.named_parameters()}
    upcast = NTKSelector(model, CONFIG, budget=1, dtype=torch.float32, show_progress=False).select(make_batch(n=4))
    assert model_snapshot(model) == before
    assert all(parameter.data_ptr() == storage[name] for name, parameter in model.named_parameters())  # not copies
    reference = copy.deepcopy(model).float()
    direct = NTKSelector(reference, CONFIG, budget=1, show_progress=False).select(make_batch(n=4))
    assert torch.allclose(upcast.contributions, direct.contributions, rtol=1e-6, atol=0)
    assert torch.allclose(upcast.base_kernel, direct.base_kernel, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.int32, "float32"])
def test_dtype_must_be_a_floating_point_torch_dtype(dtype):
    with pytest.raises(InvalidConfigError, match="floating-point torch dtype"):
        NTKSelector(make_model("bert"), CONFIG, dtype=dtype)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_gradient_checkpointing_models_work_with_hooks_and_get_a_clear_error_from_func(family):
    model = make_model(family)
    model.gradient_checkpointing_enable()
    model.train()
    before = model_snapshot(model)
    batch = make_batch(n=4)
    kernels = {
        engine: NTKSelector(model, CONFIG, budget=1, engine=engine, show_progress=False).select(batch).contributions
        for engine in ("reference", "hooks")
    }
    assert torch.allclose(kernels["hooks"], kernels["reference"], rtol=1e-8, atol=1e-300)
    with pytest.raises(KernelComputationError, match="engine='hooks'"):
        NTKSelector(model, CONFIG, budget=1, engine="func", show_progress=False).select(batch)
    auto = NTKSelector(model, CONFIG, budget=1, show_progress=False).select(batch)  # the default engine: auto
    assert auto.engine == "hooks" and torch.equal(auto.contributions, kernels["hooks"])
    assert model_snapshot(model) == before and model.is_activation_checkpointing

"""Models dispatched or offloaded by accelerate give the same kernels and picks as the plain model (issue 8).

On this CPU-only machine every device is the CPU, but the code paths are accelerate's: ``cpu_offload`` keeps
the weights on ``meta`` and swaps them in module by module, ``dispatch_model`` places each block by a
``device_map`` and moves activations between them.
"""

from __future__ import annotations

import copy

import pytest
import torch
from accelerate import cpu_offload, dispatch_model
from peft import LoraConfig

from peft_ntk_select import NTKSelector
from peft_ntk_select.candidates import discover_candidates
from peft_ntk_select.errors import InvalidConfigError, KernelComputationError
from peft_ntk_select.kernels import compute_kernels
from peft_ntk_select.kernels.forward import is_dispatched
from tests.helpers import make_batch, make_model, model_snapshot

CONFIG = LoraConfig(r=2, lora_alpha=4, task_type="SEQ_CLS")
SPLIT = {  # two "devices" per model: embeddings and first layer, then the rest
    "bert": {"bert.embeddings": "cpu", "bert.encoder.layer.0": "cpu", "bert.encoder.layer.1": "cpu",
             "bert.pooler": "cpu", "dropout": "cpu", "classifier": "cpu"},
    "llama": {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "cpu", "model.norm": "cpu",
              "model.rotary_emb": "cpu", "score": "cpu"},
    "gpt2": {"transformer.wte": "cpu", "transformer.wpe": "cpu", "transformer.drop": "cpu", "transformer.h.0": "cpu",
             "transformer.h.1": "cpu", "transformer.ln_f": "cpu", "score": "cpu"},
}  # fmt: skip


def kernels(model, engine):
    candidates = discover_candidates(model, rank=2)
    base, parts, _ = compute_kernels(model, make_batch(), candidates, CONFIG, engine=engine)
    return base, parts


def offloaded(model):
    return cpu_offload(copy.deepcopy(model), execution_device="cpu")


def dispatched(model, family):
    moved = dispatch_model(copy.deepcopy(model), device_map=SPLIT[family], force_hooks=True)  # hooks even on one device
    assert is_dispatched(moved)
    return moved


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
@pytest.mark.parametrize("place", ["cpu_offload", "dispatch_model"])
@pytest.mark.parametrize("engine", ["hooks", "reference"])
def test_dispatched_kernels_equal_the_plain_models(family, place, engine):
    model = make_model(family)
    plain_base, plain_parts = kernels(model, "hooks")
    moved = offloaded(model) if place == "cpu_offload" else dispatched(model, family)
    if place == "cpu_offload":
        assert {p.device.type for p in moved.parameters()} == {"meta"}  # weights really are offloaded
    base, parts = kernels(moved, engine)
    torch.testing.assert_close(base, plain_base, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(parts, plain_parts, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_selection_on_a_dispatched_model_matches_and_leaves_it_untouched(family):
    model = make_model(family)
    data = make_batch(n=6)
    expected = NTKSelector(model, CONFIG, budget=2, engine="hooks", num_samples=6, show_progress=False).select(data)
    moved = dispatched(model, family)
    before = model_snapshot(moved)
    result = NTKSelector(moved, CONFIG, budget=2, engine="hooks", num_samples=6, show_progress=False).select(data)
    assert model_snapshot(moved) == before
    assert [entry.modules for entry in result.ranking] == [entry.modules for entry in expected.ranking]
    torch.testing.assert_close(result.contributions, expected.contributions, rtol=1e-10, atol=1e-14)


def accelerate_hooks(model):
    return {name: type(m._hf_hook).__name__ for name, m in model.named_modules() if hasattr(m, "_hf_hook")}


def test_offloaded_model_keeps_its_hooks_and_meta_weights():
    moved = offloaded(make_model("bert"))
    hooks = accelerate_hooks(moved)
    NTKSelector(moved, CONFIG, budget=2, engine="hooks", num_samples=5, show_progress=False).select(make_batch())
    assert accelerate_hooks(moved) == hooks
    assert {p.device.type for p in moved.parameters()} == {"meta"}
    assert all(not p.requires_grad or p.grad is None for p in moved.parameters())


def test_func_engine_names_the_fix_for_a_dispatched_model_and_auto_picks_hooks(caplog):
    model = make_model("bert")
    with pytest.raises(KernelComputationError, match="engine='hooks'"):
        kernels(offloaded(model), "func")
    with caplog.at_level("INFO", logger="peft_ntk_select"):
        selector = NTKSelector(offloaded(model), CONFIG, budget=2, num_samples=5, show_progress=False)
        result = selector.select(make_batch())
    assert result.engine == "hooks" and "engine='auto' uses 'hooks': the model is dispatched" in caplog.text
    plain = NTKSelector(model, CONFIG, budget=2, num_samples=5, show_progress=False).select(make_batch())
    assert plain.engine == "func"
    torch.testing.assert_close(result.contributions, plain.contributions, rtol=1e-10, atol=1e-14)


def test_what_needs_offloaded_weights_says_so_and_leaves_the_model_alone():
    """The kernels work on an offloaded model; the probe head and the linearity check read or perturb the
    weights themselves, so they refuse one whose weights sit on meta, with the fix."""
    from peft_ntk_select import linearity_curve

    moved = offloaded(make_model("bert"))
    hooks = accelerate_hooks(moved)
    with pytest.raises(InvalidConfigError, match="head='probe' needs the model's weights in memory"):
        NTKSelector(moved, CONFIG, budget=1, head="probe", show_progress=False).select(make_batch())
    with pytest.raises(InvalidConfigError, match="the linearity check needs the model's weights in memory"):
        linearity_curve(moved, make_batch(), radii=[0.0, 0.1], num_models=1, show_progress=False)
    assert accelerate_hooks(moved) == hooks and {p.device.type for p in moved.parameters()} == {"meta"}
    kept = dispatched(make_model("bert"), "bert")  # weights on devices: both work
    NTKSelector(kept, CONFIG, budget=1, head="probe", engine="hooks", show_progress=False).select(make_batch())
    linearity_curve(kept, make_batch(), radii=[0.0, 0.1], num_models=1, show_progress=False)

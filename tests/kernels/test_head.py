"""head="probe" (LP-FT): the output layer is found, fitted by linear probing, used for the kernels, then removed."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig

from peft_ntk_select import NTKSelector
from peft_ntk_select.errors import InvalidConfigError, InvalidInputError
from peft_ntk_select.kernels.forward import logits_of, model_inputs
from peft_ntk_select.kernels.head import _features, fit_head, output_layer, redraw_head, swapped_parameters
from tests.helpers import make_batch, make_model, model_snapshot

CONFIG = LoraConfig(r=2, lora_alpha=2, task_type="SEQ_CLS")


@pytest.mark.parametrize(
    ("family", "layer"),
    [("bert", "classifier"), ("roberta", "classifier.out_proj"), ("distilbert", "classifier"), ("llama", "score"),
     ("gpt2", "score")],
)  # fmt: skip
def test_output_layer_is_the_last_linear_of_the_head(family, layer):
    assert output_layer(make_model(family), CONFIG) == layer


@pytest.mark.parametrize("family", ["bert", "roberta", "llama", "gpt2"])
def test_probe_features_times_the_output_layer_give_the_logits(family):
    model, batch = make_model(family), make_batch(n=6)
    layer = model.get_submodule(output_layer(model, CONFIG))
    features = _features(model, batch, layer)
    with torch.no_grad():
        logits = logits_of(model(**model_inputs(batch)))
        recomputed = features @ layer.weight.T + (0 if layer.bias is None else layer.bias)
    assert features.shape == (6, layer.in_features)
    assert torch.allclose(recomputed, logits, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_fit_head_separates_the_samples_it_is_fitted_on_and_changes_the_head_norm(family):
    model, batch = make_model(family, num_labels=3), make_batch(n=8, labels=3)
    fit = fit_head(model, batch, CONFIG, batch["labels"])
    assert fit.train_accuracy == 1.0  # 8 samples, 16 features: separable
    assert fit.norm_after != pytest.approx(fit.norm_before)
    assert fit.weight.shape == model.get_submodule(fit.layer).weight.shape


def test_fit_head_minimises_the_penalised_cross_entropy():
    model, batch = make_model("bert"), make_batch(n=8)
    fit = fit_head(model, batch, CONFIG, batch["labels"])
    features = _features(model, batch, model.classifier)
    weight, bias = fit.weight.clone().requires_grad_(), fit.bias.clone().requires_grad_()
    loss = torch.nn.functional.cross_entropy(features @ weight.T + bias, batch["labels"]) + 0.5e-2 * weight.pow(2).sum()
    loss.backward()
    assert float(weight.grad.norm()) < 1e-6 and float(bias.grad.norm()) < 1e-6


def test_swapped_parameters_hold_the_fit_inside_and_restore_the_originals_even_after_an_error():
    model, batch = make_model("bert"), make_batch(n=8)
    before = model_snapshot(model)
    fit = fit_head(model, batch, CONFIG, batch["labels"])
    assert model_snapshot(model) == before
    with pytest.raises(RuntimeError, match="boom"), swapped_parameters(model, fit.values()):
        assert torch.equal(model.classifier.weight, fit.weight)
        raise RuntimeError("boom")
    assert model_snapshot(model) == before


@pytest.mark.parametrize("engine", ["func", "hooks"])
def test_select_with_a_probed_head_equals_select_on_a_model_holding_that_head(engine):
    model, batch = make_model("roberta"), make_batch(n=6)
    before = model_snapshot(model)
    probed = NTKSelector(model, CONFIG, budget=1, engine=engine, head="probe", show_progress=False).select(batch)
    assert model_snapshot(model) == before
    assert probed.head == "probe" and probed.head_fit["layer"] == "classifier.out_proj"
    fit = fit_head(model, batch, CONFIG, batch["labels"])
    holder = copy.deepcopy(model)
    with torch.no_grad():
        holder.classifier.out_proj.weight.copy_(fit.weight)
        holder.classifier.out_proj.bias.copy_(fit.bias)
    plain = NTKSelector(holder, CONFIG, budget=1, engine=engine, show_progress=False).select(batch)
    assert torch.allclose(probed.base_kernel, plain.base_kernel, rtol=1e-12, atol=0)
    assert torch.allclose(probed.contributions, plain.contributions, rtol=1e-12, atol=1e-300)
    initial = NTKSelector(model, CONFIG, budget=1, engine=engine, show_progress=False).select(batch)
    assert not torch.allclose(initial.contributions, probed.contributions)


def test_probed_result_round_trips_through_json():
    model, batch = make_model("bert"), make_batch(n=6)
    result = NTKSelector(model, CONFIG, budget=1, head="probe", show_progress=False).select(batch)
    again = type(result).from_dict(result.to_dict())
    assert (again.head, again.head_fit) == ("probe", result.head_fit)


def test_probe_needs_labels():
    selector = NTKSelector(make_model("bert"), CONFIG, budget=1, head="probe", show_progress=False)
    with pytest.raises(InvalidInputError, match="this selection needs labels"):
        selector.select(make_batch(labels=None))


def test_probe_needs_a_classification_head():
    model = make_model("llama_lm")
    selector = NTKSelector(model, LoraConfig(r=2, task_type="CAUSAL_LM"), budget=1, head="probe", show_progress=False)
    with pytest.raises(InvalidConfigError, match="needs a classification head"):
        selector.select(make_batch())


def test_unknown_head_is_refused():
    with pytest.raises(InvalidConfigError, match="unknown head 'linear'"):
        NTKSelector(make_model("bert"), CONFIG, head="linear")


def test_redraw_head_draws_every_head_linear_like_transformers_with_the_seed():
    model = make_model("roberta")
    before = model_snapshot(model)
    values = redraw_head(model, CONFIG, seed=3)
    assert model_snapshot(model) == before
    assert set(values) == {"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                           "classifier.out_proj.bias"}  # fmt: skip
    for name, value in values.items():
        assert value.shape == model.get_parameter(name).shape and value.dtype == torch.float64
    assert not values["classifier.out_proj.bias"].any()
    assert float(values["classifier.dense.weight"].std()) == pytest.approx(model.config.initializer_range, rel=0.2)
    assert torch.equal(redraw_head(model, CONFIG, seed=3)["classifier.dense.weight"], values["classifier.dense.weight"])
    assert not torch.equal(
        redraw_head(model, CONFIG, seed=4)["classifier.dense.weight"], values["classifier.dense.weight"]
    )


def test_select_with_a_redrawn_head_equals_select_on_a_model_holding_that_head():
    model, batch = make_model("llama"), make_batch(n=6)
    selector = NTKSelector(model, CONFIG, budget=1, show_progress=False)
    before = model_snapshot(model)
    redrawn = selector._select(batch, 0, 0, "lora", head_seed=7)
    assert model_snapshot(model) == before
    holder = copy.deepcopy(model)
    with torch.no_grad():
        for name, value in redraw_head(model, CONFIG, seed=7).items():
            holder.get_parameter(name).copy_(value)
    plain = NTKSelector(holder, CONFIG, budget=1, show_progress=False).select(batch)
    assert torch.allclose(redrawn.base_kernel, plain.base_kernel, rtol=1e-12, atol=0)
    assert torch.allclose(redrawn.contributions, plain.contributions, rtol=1e-12, atol=1e-300)

"""Algorithm 1, the linearity check: the curve it measures, what it perturbs, and the model it leaves alone."""

from __future__ import annotations

import itertools
import json
import re
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import peft_ntk_select.diagnostics.linearity as linearity
from peft_ntk_select import InvalidConfigError, InvalidInputError, LinearityCurve, discover_candidates, linearity_curve
from tests.helpers import VOCAB, make_batch, make_model, model_snapshot

QUIET = {"show_progress": False}


class LinearModel(nn.Module):
    """f_θ(x) = θ x token by token: logits (n, T, 3) = inputs_embeds (n, T, 4) @ θᵀ; ``unused`` never runs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 4)
        self.theta = nn.Linear(4, 3, bias=False)
        self.unused = nn.Linear(4, 4)
        self.double().eval()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.theta(inputs_embeds)


def direct_largest_ratio(model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """max over pairs of ||f(x') - f(x)|| / ||x' - x||, run the usual way (input_ids), one pair at a time."""
    mask = batch["attention_mask"]
    with torch.no_grad():
        x = model.get_input_embeddings()(batch["input_ids"]) * mask[..., None]
        logits = model(input_ids=batch["input_ids"], attention_mask=mask).logits
    if logits.dim() == 3:  # token-level: only the real positions are outputs
        logits = logits * mask[..., None]
    best = 0.0
    for i, j in itertools.combinations(range(len(mask)), 2):
        ratio = (logits[j] - logits[i]).norm() / (x[j] - x[i]).norm()
        best = max(best, float(ratio))
    return best


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2", "gpt2_lm"])
def test_at_radius_zero_every_model_gives_the_direct_pairwise_maximum(family):
    model, batch = make_model(family), make_batch(labels=None)
    curve = linearity_curve(model, batch, [0.0], num_models=3, **QUIET)
    expected = direct_largest_ratio(model, batch)
    assert curve.per_model.shape == (1, 3)
    torch.testing.assert_close(curve.per_model, torch.full((1, 3), expected, dtype=torch.float64), rtol=1e-9, atol=0)
    assert curve.l_avg[0] == pytest.approx(expected, rel=1e-9) and curve.l_upper[0] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
def test_tiny_models_of_each_family_give_a_finite_curve(family):
    curve = linearity_curve(make_model(family), make_batch(), [0, 0.5, 2], num_models=2, **QUIET)
    assert curve.radii == (0.0, 0.5, 2.0) and curve.per_model.shape == (3, 2) and curve.num_samples == 5
    assert torch.isfinite(curve.per_model).all() and (curve.per_model > 0).all()
    assert all(upper >= avg for upper, avg in zip(curve.l_upper, curve.l_avg, strict=True))
    assert curve.per_model[1:].ne(curve.per_model[0, 0]).all()  # r > 0 does move the weights


@settings(max_examples=25, deadline=None)
@given(radii=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=3), seed=st.integers(0, 10_000))
def test_linear_model_never_exceeds_the_spectral_norm_plus_radius(radii, seed):
    model = LinearModel()
    curve = linearity_curve(model, make_batch(labels=None), radii, num_models=3, seed=seed, perturb=["theta"], **QUIET)
    spectral_norm = float(torch.linalg.matrix_norm(model.theta.weight.detach(), ord=2))
    for radius, upper in zip(curve.radii, curve.l_upper, strict=True):
        assert upper <= spectral_norm + radius + 1e-12


def test_perturbing_a_module_the_output_never_uses_leaves_the_curve_flat():
    batch = make_batch(labels=None)
    curve = linearity_curve(LinearModel(), batch, [0, 1, 5], num_models=2, perturb=["unused"], **QUIET)
    assert curve.parameters == ("unused.weight",)
    assert curve.per_model.eq(curve.per_model[0, 0]).all()


def test_candidates_perturb_exactly_the_candidate_weights(monkeypatch):
    model = make_model("bert")
    candidates = discover_candidates(model, kinds=("q", "v"), layers=[1])
    theta0 = {name: param.detach().clone() for name, param in model.named_parameters()}
    seen: list[set[str]] = []

    def spy(module, state, *args, **kwargs):
        seen.append({name for name, value in state.items() if name in theta0 and not torch.equal(value, theta0[name])})
        return torch.func.functional_call(module, state, *args, **kwargs)

    monkeypatch.setattr(linearity, "functional_call", spy)
    curve = linearity_curve(model, make_batch(), [0, 1], num_models=2, perturb="candidates", candidates=candidates,
                            **QUIET)  # fmt: skip
    weights = {f"{candidate.name}.weight" for candidate in candidates}
    assert seen == [set(), weights, weights]
    assert set(curve.parameters) == weights and curve.perturb == "candidates"


def test_candidates_default_to_every_discovered_candidate():
    model = make_model("gpt2")
    curve = linearity_curve(model, make_batch(), [1], num_models=1, perturb="candidates", **QUIET)
    assert curve.parameters == tuple(f"{candidate.name}.weight" for candidate in discover_candidates(model))


def test_all_leaves_out_the_input_table_unless_the_output_head_shares_it():
    assert "embed.weight" not in linearity.perturbed_parameters(LinearModel(), "all")
    bert = make_model("bert")
    assert "bert.embeddings.word_embeddings.weight" not in linearity.perturbed_parameters(bert, "all")
    assert "bert.embeddings.position_embeddings.weight" in linearity.perturbed_parameters(bert, "all")
    assert "transformer.wte.weight" in linearity.perturbed_parameters(make_model("gpt2_lm"), "all")


@pytest.mark.parametrize("perturb", ["all", "candidates"])
def test_users_model_is_unchanged(perturb):
    model = make_model("bert")
    model.train()
    model.bert.encoder.layer[0].eval()
    model.classifier.register_forward_hook(lambda *args: None)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    before = model_snapshot(model)
    linearity_curve(model, make_batch(), [0, 2], num_models=2, perturb=perturb, **QUIET)
    assert model_snapshot(model) == before


def test_seed_fixes_the_curve_and_each_direction_is_shared_across_radii():
    model, batch = make_model("bert", hidden_dropout_prob=0.5), make_batch()
    model.train()
    curve = linearity_curve(model, batch, [0, 1, 3], num_models=3, seed=7, **QUIET)
    again = linearity_curve(model, batch, [3], num_models=3, seed=7, **QUIET)
    other = linearity_curve(model, batch, [3], num_models=3, seed=8, **QUIET)
    assert torch.equal(curve.per_model[2:], again.per_model)
    assert not torch.equal(curve.per_model[2:], other.per_model)


def test_to_dict_is_json_and_plot_writes_a_png(tmp_path):
    curve = linearity_curve(make_model("bert"), make_batch(), [0, 1], num_models=2, **QUIET)
    data = json.loads(json.dumps(curve.to_dict()))
    assert data["radii"] == [0.0, 1.0] and len(data["per_model"]) == 2 and data["perturb"] == "all"
    assert data["l_upper"] == list(curve.l_upper) and data["weight_norm"] == curve.weight_norm > 0
    curve.plot(tmp_path / "linearity.png")
    assert (tmp_path / "linearity.png").stat().st_size > 0


def test_plot_without_matplotlib_says_how_to_install(monkeypatch):
    curve = LinearityCurve((0.0,), (1.0,), (1.0,), torch.ones(1, 1, dtype=torch.float64), 2, "all")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'peft-ntk-select\[plot\]'"):
        curve.plot()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"radii": [0, -1]}, InvalidConfigError, "negative or not finite"),
        ({"radii": [float("nan")]}, InvalidConfigError, "negative or not finite"),
        ({"radii": []}, InvalidConfigError, "radii is empty"),
        ({"radii": 1.0}, InvalidConfigError, "must be a list of numbers"),
        ({"num_models": 0}, InvalidConfigError, "num_models=0 must be an integer >= 1"),
        ({"num_samples": 1}, InvalidConfigError, "num_samples=1 must be an integer >= 2"),
        ({"perturb": "some"}, InvalidConfigError, "unknown perturb 'some'"),
        ({"perturb": ["bert.no_such_module"]}, InvalidConfigError, "model.named_modules()"),
        ({"candidates": ["bert.encoder.layer.0.attention.self.query"]}, InvalidConfigError, "perturb='candidates'"),
        ({"data": {"input_ids": [[3, 4, 5]]}}, InvalidInputError, "at least 2"),
        ({"data": {"input_ids": [[3, 4, 5], [3, 4, 5]]}}, InvalidInputError, "pass distinct examples"),
    ],
)
def test_bad_input_raises_a_typed_error_that_says_what_to_change(kwargs, error, message):
    kwargs = {"data": make_batch(), **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        linearity_curve(make_model("bert"), **QUIET, **kwargs)


class NoEmbeddingsInput(LinearModel):
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.theta(self.embed(input_ids))


class NoEmbeddingModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)


@pytest.mark.parametrize(("model", "message"), [(NoEmbeddingModule, "get_input_embeddings"),
                                                 (NoEmbeddingsInput, "takes no inputs_embeds")])  # fmt: skip
def test_a_model_that_cannot_take_input_embeddings_is_refused(model, message):
    with pytest.raises(InvalidConfigError, match=message):
        linearity_curve(model(), make_batch(labels=None), [0], **QUIET)

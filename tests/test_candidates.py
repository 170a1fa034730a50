"""Candidate discovery across families, prefixes and filters."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaModel

from peft_ntk_select import NoCandidatesError, discover_candidates
from peft_ntk_select.errors import InvalidConfigError
from tests.helpers import make_model


@pytest.mark.parametrize(
    ("family", "names"),
    [
        ("bert", ["bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.attention.self.key",
                  "bert.encoder.layer.0.attention.self.value"]),
        ("roberta", ["roberta.encoder.layer.0.attention.self.query", "roberta.encoder.layer.0.attention.self.key",
                     "roberta.encoder.layer.0.attention.self.value"]),
        ("distilbert", ["distilbert.transformer.layer.0.attention.q_lin",
                        "distilbert.transformer.layer.0.attention.k_lin",
                        "distilbert.transformer.layer.0.attention.v_lin"]),
        ("llama", ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                   "model.layers.0.self_attn.v_proj"]),
        ("opt", ["model.decoder.layers.0.self_attn.k_proj", "model.decoder.layers.0.self_attn.v_proj",
                 "model.decoder.layers.0.self_attn.q_proj"]),
    ],
)  # fmt: skip
def test_each_family_has_q_k_v_candidates_per_layer(family, names):
    candidates = discover_candidates(make_model(family), rank=4)
    assert [c.name for c in candidates[:3]] == names
    assert len(candidates) == 6
    assert [c.layer for c in candidates] == [0, 0, 0, 1, 1, 1]
    assert sorted(c.kind for c in candidates[:3]) == ["k", "q", "v"]


def test_grouped_query_kv_candidates_are_smaller_than_q():
    by_kind = {c.kind: c for c in discover_candidates(make_model("llama"), rank=4) if c.layer == 0}
    assert (by_kind["q"].in_features, by_kind["q"].out_features) == (16, 16)
    assert (by_kind["k"].out_features, by_kind["v"].out_features) == (8, 8)
    assert by_kind["k"].num_params == 4 * (16 + 8) < by_kind["q"].num_params == 4 * (16 + 16)


def test_bare_model_and_foreign_prefix_are_discovered():
    bare = LlamaModel(LlamaConfig(vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=16))  # fmt: skip
    wrapper = torch.nn.Module()
    wrapper.backbone = bare
    assert [c.name for c in discover_candidates(bare)][:1] == ["layers.0.self_attn.q_proj"]
    assert [c.name for c in discover_candidates(wrapper)][:1] == ["backbone.layers.0.self_attn.q_proj"]


def test_kinds_and_layers_narrow_the_candidates():
    candidates = discover_candidates(make_model("bert"), kinds=("q", "v"), layers=[1])
    assert [(c.layer, c.kind) for c in candidates] == [(1, "q"), (1, "v")]


def test_explicit_modules_replace_discovery():
    names = ["bert.encoder.layer.1.output.dense", "bert.encoder.layer.0.attention.self.query"]
    candidates = discover_candidates(make_model("bert"), rank=2, modules=names)
    assert [c.name for c in candidates] == names
    assert candidates[0].kind == "down" and candidates[0].num_params == 2 * (32 + 16)


def test_rank_can_depend_on_the_module():
    candidates = discover_candidates(make_model("bert"), rank=lambda name: 8 if "layer.1" in name else 2)
    assert [c.num_params for c in candidates] == [2 * 32] * 3 + [8 * 32] * 3


def test_no_match_names_the_filters_and_the_fix():
    with pytest.raises(NoCandidatesError, match="widen kinds/layers/the config.s targets or pass modules="):
        discover_candidates(make_model("bert"), layers=[7])
    with pytest.raises(NoCandidatesError, match="the model's layers are 0 to 1"):  # tiny BERT: 2 layers
        discover_candidates(make_model("bert"), layers=[7])
    with pytest.raises(NoCandidatesError) as info:  # layer 1 exists: the kinds are what is missing
        discover_candidates(make_model("bert"), layers=[1], kinds=["gate"])
    assert "the model's layers" not in str(info.value)


def test_unknown_module_names_are_refused():
    with pytest.raises(NoCandidatesError, match="not in the model"):
        discover_candidates(make_model("bert"), modules=["bert.nothing"])
    with pytest.raises(NoCandidatesError, match="not nn.Linear or Conv1D"):
        discover_candidates(make_model("bert"), modules=["bert.encoder.layer.0.attention.output.LayerNorm"])


def test_unknown_kind_is_refused():
    with pytest.raises(InvalidConfigError, match="unknown kinds"):
        discover_candidates(make_model("bert"), kinds=("query",))


ALL_LINEAR_LAYER_0 = {  # kind: the module of layer 0 PEFT's "all-linear" adapts, per family
    "bert": {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "o": "attention.output.dense", "up": "intermediate.dense", "down": "output.dense"},
    "roberta": {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                "o": "attention.output.dense", "up": "intermediate.dense", "down": "output.dense"},
    "distilbert": {"q": "attention.q_lin", "k": "attention.k_lin", "v": "attention.v_lin",
                   "o": "attention.out_lin", "up": "ffn.lin1", "down": "ffn.lin2"},
    "llama": {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
              "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"},
    "gpt2": {"qkv": "attn.c_attn", "o": "attn.c_proj", "up": "mlp.c_fc", "down": "mlp.c_proj"},
    "opt": {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.out_proj",
            "up": "fc1", "down": "fc2"},
}  # fmt: skip


@pytest.mark.parametrize("family", sorted(ALL_LINEAR_LAYER_0))
def test_all_linear_names_every_linear_module_of_each_layer_by_kind(family):
    model = make_model(family)
    candidates = discover_candidates(model, rank=2, kinds="all-linear")
    layer_0 = {c.kind: c.name for c in candidates if c.layer == 0}
    assert {kind: name.split(".0.", 1)[1] for kind, name in layer_0.items()} == ALL_LINEAR_LAYER_0[family]
    assert len(candidates) == 2 * len(layer_0)  # both layers, nothing else (no head, pooler or embedding)
    blocks = {name for name, module in model.named_modules() if type(module).__name__ in ("Linear", "Conv1D")
              and any(part in name for part in (".layer.", ".layers.", ".h."))}  # fmt: skip
    assert {c.name for c in candidates} == blocks  # every linear module inside the blocks is a candidate


@pytest.mark.parametrize("family", sorted(ALL_LINEAR_LAYER_0))
def test_default_candidates_stay_the_attention_kinds(family):
    kinds = {c.kind for c in discover_candidates(make_model(family), rank=2)}
    assert kinds == ({"qkv"} if family == "gpt2" else {"q", "k", "v"})


def test_all_linear_can_be_combined_and_filtered_by_layer():
    model = make_model("llama")
    mlp = discover_candidates(model, rank=2, kinds=("up", "down", "gate"), layers=[1])
    assert [c.name for c in mlp] == ["model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj",
                                     "model.layers.1.mlp.down_proj"]  # fmt: skip
    assert len(discover_candidates(model, rank=2, kinds=["all-linear"])) == 14


@pytest.mark.parametrize("kinds", ["qv", "q"])
def test_kinds_as_one_string_is_refused(kinds):
    with pytest.raises(InvalidConfigError, match="one string"):
        discover_candidates(make_model("bert"), rank=2, kinds=kinds)

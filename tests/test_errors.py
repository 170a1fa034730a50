"""Bad input gets a typed error that says what to change."""

from __future__ import annotations

import copy

import pytest
from peft import LoraConfig, get_peft_model

from peft_ntk_select import (
    InvalidConfigError,
    InvalidInputError,
    KernelComputationError,
    NoCandidatesError,
    NTKSelector,
    SearchSpaceTooLargeError,
)
from tests.helpers import make_batch, make_model

CONFIG = LoraConfig(r=2, lora_alpha=4, task_type="SEQ_CLS")


def selector(config=CONFIG, model=None, **kw):
    return NTKSelector(model or make_model("bert"), config, show_progress=False, **kw)


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"layers": [9]}, NoCandidatesError, "widen kinds/layers"),
        ({"budget": 0}, InvalidConfigError, "budget=0 must be an integer between 1 and the number of candidates"),
        ({"budget": 7}, InvalidConfigError, "lower it, or widen the candidates"),
        ({"budget": 1.5}, InvalidConfigError, "must be an integer"),
        ({"sigma": 0}, InvalidConfigError, r"sigma=0 must be a finite number > 0"),
        ({"sigma": -1e-4}, InvalidConfigError, r"must be a finite number > 0"),
        ({"num_samples": 1}, InvalidConfigError, r"num_samples=1 must be an integer >= 2"),
        ({"engine": "jax"}, InvalidConfigError, r"unknown engine 'jax': choose one of \["),
        ({"output_mode": "logits"}, InvalidConfigError, "unknown output mode 'logits'"),
        ({"chunk_size": 0}, InvalidConfigError, "chunk_size=0 must be an integer >= 1"),
        ({"budget": 3, "max_subsets": 10, "search": "exhaustive"}, SearchSpaceTooLargeError,
         "use search=.exact., a smaller budget"),
        ({"search": "simulated-annealing"}, InvalidConfigError, "unknown search"),
        ({"kernel": "sgd"}, InvalidConfigError, "unknown kernel 'sgd'"),
        ({"param_budget": 100, "layers_per_pick": 1}, InvalidConfigError, "give only one"),
    ],
)  # fmt: skip
def test_bad_selector_arguments_are_refused(kw, error, message):
    with pytest.raises(error, match=message):
        selector(**kw)


def test_peft_model_is_refused():
    peft_model = get_peft_model(make_model("bert"), LoraConfig(r=2, target_modules=["query"]))
    with pytest.raises(InvalidConfigError, match="before get_peft_model"):
        selector(model=peft_model)


def test_peft_model_base_model_with_adapters_is_refused():
    peft_model = get_peft_model(make_model("bert"), LoraConfig(r=2, target_modules=["query"]))
    with pytest.raises(InvalidConfigError, match="already carries a PEFT adapter"):
        selector(model=peft_model.base_model.model)


def test_one_sample_is_refused():
    batch = {k: v[:1] for k, v in make_batch().items()}
    with pytest.raises(InvalidInputError, match="at least 2"):
        selector(budget=1).select(batch)


def test_batch_without_input_ids_is_refused():
    with pytest.raises(InvalidInputError, match="no 'input_ids'"):
        selector(budget=1).select({"attention_mask": make_batch()["attention_mask"]})


def test_loss_output_without_labels_is_refused():
    with pytest.raises(InvalidInputError, match="needs labels"):
        selector(budget=1, output_mode="loss").select(make_batch(labels=None))


def test_model_without_logits_is_refused():
    bare = make_model("bert").bert
    with pytest.raises(KernelComputationError, match="without logits"):
        NTKSelector(bare, LoraConfig(r=2), budget=1, show_progress=False).select(make_batch(labels=None))


def test_non_lora_config_is_refused():
    with pytest.raises(InvalidConfigError, match="pass a peft.LoraConfig"):
        selector(config={"r": 8})


@pytest.mark.parametrize(
    "init", [False, "pissa", "pissa_niter_4", "olora", "eva", "loftq", "corda", "lora_ga", "orthogonal", "mica"]
)
def test_inits_that_break_additivity_are_refused(init):
    config = copy.deepcopy(CONFIG)
    config.init_lora_weights = init  # set after construction: some inits need extra configs to construct
    with pytest.raises(InvalidConfigError, match="select with the default init"):
        selector(config=config)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("use_dora", True, "use_dora=True"),
        ("lora_bias", True, "lora_bias=True"),
        ("bias", "lora_only", "bias='lora_only' trains bias vectors"),
        ("bias", "all", "bias='all' trains bias vectors"),
    ],
)
def test_unmodelled_lora_variants_are_refused(field, value, message):
    config = copy.deepcopy(CONFIG)
    setattr(config, field, value)
    with pytest.raises(InvalidConfigError, match=message):
        selector(config=config)


def test_modules_to_save_with_non_linear_parameters_is_refused():
    config = LoraConfig(r=2, modules_to_save=["bert.embeddings"])
    with pytest.raises(InvalidConfigError, match="outside Linear layers"):
        selector(config=config, budget=1).select(make_batch())


def test_modules_in_modules_to_save_are_not_candidates():
    config = LoraConfig(r=2, modules_to_save=["attention.self.query"])
    assert {c.kind for c in selector(config=config, budget=1).candidates} == {"k", "v"}


def test_explicit_module_inside_modules_to_save_is_refused():
    config = LoraConfig(r=2, modules_to_save=["attention.self.query"])
    with pytest.raises(InvalidConfigError, match="left out by lora_config"):
        selector(config=config, budget=1, modules=["bert.encoder.layer.0.attention.self.query"])


def test_the_package_exports_every_lazy_name_and_nothing_else():
    import peft_ntk_select

    assert sorted(peft_ntk_select.__all__) == sorted(peft_ntk_select._EXPORTS)
    for name in peft_ntk_select.__all__:
        assert getattr(peft_ntk_select, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        peft_ntk_select.nope  # noqa: B018

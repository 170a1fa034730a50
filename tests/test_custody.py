"""The model-untouched promise under concurrency and odd models (issue 15): one computation at a time per model,
devices that would lose the weights refused up front, shared modules refused, unsupported families refused,
and every forward pass on the model's device in eval mode."""

from __future__ import annotations

import copy
import logging
import threading

import pytest
import torch
from peft import LoraConfig
from transformers import (
    BartConfig,
    BartForSequenceClassification,
    T5Config,
    T5ForSequenceClassification,
    ViTConfig,
    ViTForImageClassification,
)

from peft_ntk_select import (
    InvalidConfigError,
    InvalidInputError,
    KernelComputationError,
    NTKSelector,
    compute_kernels,
    discover_candidates,
    linearity_curve,
)
from peft_ntk_select.kernels.expected import output_count

from .helpers import make_batch, make_model, model_snapshot

CONFIG = LoraConfig(r=2, lora_alpha=2, task_type="SEQ_CLS")


def selector(model, **kw):
    return NTKSelector(model, kw.pop("config", CONFIG), show_progress=False, **{"budget": 1, **kw})


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_two_threads_on_one_model_run_one_after_the_other_and_leave_it_unchanged(family):
    # Before the lock, two selections swapped each other's temporary weights in as the originals: weights left
    # as plain tensors without requires_grad, a float32 run leaving the model in float32, train mode lost.
    model = make_model(family).train()
    before = model_snapshot(model)
    batch = make_batch(6, 7)
    alone = {dtype: selector(model, dtype=dtype).select(batch) for dtype in (None, torch.float32)}
    for _ in range(20):
        results, errors = {}, []

        def run(dtype, results=results, errors=errors):
            try:
                results[dtype] = selector(model, dtype=dtype).select(batch)
            except Exception as err:  # noqa: BLE001 - any exception is the failure this test looks for
                errors.append(err)

        threads = [threading.Thread(target=run, args=(dtype,)) for dtype in (None, torch.float32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert model_snapshot(model) == before
        for dtype, result in results.items():
            assert torch.equal(result.contributions, alone[dtype].contributions)


def test_the_lock_is_reentrant_for_nested_entry_points_in_one_thread():
    model = make_model("bert")
    reports = selector(model).stability(make_batch(6, 7), seeds=(0, 1), sample_draws=(0, 1), kernels=("lora",))
    assert len(reports) == 2


@pytest.mark.parametrize("device", ["meta", "nonsense", "cuda:99" if torch.cuda.is_available() else "cuda"])
def test_unusable_devices_are_refused_at_construction(device):
    model = make_model("bert")
    before = model_snapshot(model)
    with pytest.raises(InvalidConfigError, match="device="):
        selector(model, device=device)
    assert model_snapshot(model) == before


def shared_layer_model():
    model = make_model("bert")
    layers = model.bert.encoder.layer
    layers[1].attention.self.query = layers[0].attention.self.query
    return model


@pytest.mark.parametrize("engine", ["func", "hooks", "reference"])
def test_a_module_registered_under_two_names_is_refused_and_left_as_it_was(engine):
    model = shared_layer_model()
    before = model_snapshot(model)
    with pytest.raises(InvalidConfigError, match="one module under several names.*layer.0.attention.self.query"):
        selector(model, engine=engine).select(make_batch())
    assert model_snapshot(model) == before
    assert isinstance(model.bert.encoder.layer[1].attention.self.query.weight, torch.nn.Parameter)


def test_compute_kernels_and_the_linearity_check_refuse_a_shared_module_too():
    model = shared_layer_model()
    before = model_snapshot(model)
    candidates = discover_candidates(model)
    with pytest.raises(InvalidConfigError, match="several names"):
        compute_kernels(model, make_batch(), candidates, CONFIG)
    with pytest.raises(InvalidConfigError, match="several names"):
        linearity_curve(model, make_batch(), radii=(0.0, 0.1), num_models=1, show_progress=False)
    assert model_snapshot(model) == before


def test_tied_weights_are_not_a_shared_module():
    model = make_model("gpt2_lm")
    assert model.lm_head.weight is model.transformer.wte.weight
    before = model_snapshot(model)
    selector(model, config=LoraConfig(r=2, lora_alpha=2)).select(make_batch())
    assert model_snapshot(model) == before


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"seed": 2**70}, "seed=.* below 2\\*\\*63"),
        ({"init_seed": 2**63}, "init_seed=.* below 2\\*\\*63"),
        ({"layers": ["a"]}, "layer indices"),
        ({"layers": [0.7]}, "layer indices"),
        ({"kinds": [1]}, "strings"),
        ({"kinds": "qv"}, "kinds='qv' is one string"),
        ({"kinds": ["qv"]}, "unknown kinds \\['qv'\\]"),
        ({"budget": 2, "param_budget": 100}, "budget and param_budget each define the search space"),
    ],
)
def test_settings_the_torch_calls_would_misread_are_refused(kw, message):
    with pytest.raises(InvalidConfigError, match=message):
        selector(make_model("bert"), **kw)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"r": 0}, "r=0: a LoRA rank is an integer >= 1"),
        ({"r": 2.5}, "r=2.5"),
        ({"rank_pattern": {"query": 0}}, "rank_pattern\\['query'\\]=0"),
        ({"lora_alpha": 0}, "lora_alpha=0: LoRA's alpha is a finite number > 0"),
        ({"lora_alpha": float("nan")}, "lora_alpha=nan"),
        ({"alpha_pattern": {"query": "a"}}, "alpha_pattern\\['query'\\]='a'"),
    ],
)
def test_ranks_and_alphas_of_the_config_are_validated(fields, message):
    config = LoraConfig(**{"r": 2, "lora_alpha": 2, **fields})
    with pytest.raises(InvalidConfigError, match=message):
        selector(make_model("bert"), config=config)


def t5():
    return T5ForSequenceClassification(
        T5Config(vocab_size=24, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, pad_token_id=1)
    )


def bart():
    return BartForSequenceClassification(
        BartConfig(vocab_size=24, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                   decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=40)
    )  # fmt: skip


def vit():
    return ViTForImageClassification(
        ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=8,
                  patch_size=4)
    )  # fmt: skip


@pytest.mark.parametrize(
    ("build", "message"),
    [(t5, "encoder-decoder model.*supports text encoders and decoders"), (bart, "encoder-decoder"),
     (vit, "takes 'pixel_values', not token ids.*vision and audio models are not supported")],
)  # fmt: skip
def test_unsupported_families_are_refused_with_the_supported_ones_named(build, message):
    with pytest.raises(InvalidConfigError, match=message):
        selector(build())


def test_auto_engine_runs_hooks_for_a_model_with_a_full_backward_hook():
    model = make_model("bert")
    model.bert.encoder.layer[0].register_full_backward_hook(lambda module, grad_in, grad_out: None)
    before = model_snapshot(model)
    result = selector(model).select(make_batch())
    assert result.engine == "hooks"
    with pytest.raises(KernelComputationError, match="bert.encoder.layer.0 has a full backward hook"):
        selector(model, engine="func").select(make_batch())
    assert model_snapshot(model) == before
    plain = selector(make_model("bert"), engine="func").select(make_batch())
    torch.testing.assert_close(result.contributions, plain.contributions, rtol=1e-10, atol=1e-14)


class _Stop(Exception):
    pass


def test_output_count_runs_on_the_models_device_in_eval_mode(monkeypatch):
    # A fake device: the library is told the model sits on 'meta', so its forward pass must receive the batch
    # moved there (before the fix it got the CPU batch as given), in eval mode, with the mode restored after.
    import peft_ntk_select.kernels.expected as expected

    model = make_model("bert", num_labels=3).train()
    seen = []

    def record(module, args, kwargs):
        seen.append((kwargs["input_ids"].device.type, module.training))
        raise _Stop

    model.register_forward_pre_hook(record, with_kwargs=True)
    monkeypatch.setattr(expected, "model_dtype_device", lambda model: (torch.float64, torch.device("meta")))
    with pytest.raises(_Stop):
        output_count(model, make_batch(), "trace")
    assert seen == [("meta", False)]
    assert all(module.training for module in model.modules())


def test_sigma_that_swamps_every_kernel_and_tied_subsets_are_warned_about(caplog):
    model = make_model("bert")
    with caplog.at_level(logging.WARNING, logger="peft_ntk_select"):
        selector(model, sigma=1e12).select(make_batch())
    assert "sigma=1e+12 swamps every kernel" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="peft_ntk_select"):
        selector(model, sigma=1e-4).select(make_batch())
    assert "swamps" not in caplog.text and "tie" not in caplog.text


class TestTheConfigIsTheContract:
    """``target_modules``, ``exclude_modules`` and ``layers_to_transform`` of the user's config make the candidate
    pool, and ``get_peft_model`` on a copy of the model adapts exactly the pick."""

    FAMILIES = {
        "bert": ("query", "value", "bert.encoder.layer.0.attention.self.value", "attention"),
        "llama": ("q_proj", "v_proj", "model.layers.0.self_attn.v_proj", "self_attn"),
        "gpt2": ("c_attn", "c_proj", "transformer.h.0.attn.c_proj", "attn"),
    }

    @staticmethod
    def adapted(model, config):
        peft_model = __import__("peft").get_peft_model(copy.deepcopy(model), config)
        root = peft_model.get_base_model()
        return {name for name, module in root.named_modules() if hasattr(module, "lora_A")}

    @pytest.mark.parametrize("family", FAMILIES)
    def test_target_modules_exclude_modules_and_layers_to_transform_restrict_the_pool(self, family):
        first, second, excluded, _ = self.FAMILIES[family]
        model = make_model(family)
        config = LoraConfig(r=2, lora_alpha=2, task_type="SEQ_CLS", target_modules=[first, second],
                            exclude_modules=[excluded], layers_to_transform=[0])  # fmt: skip
        pool = selector(model, config=config).candidates
        names = {c.name for c in pool}
        assert names and all(".0." in name and name != excluded for name in names)
        assert all(name.endswith((first, second)) for name in names)
        assert names == self.adapted(model, config)  # the pool is what PEFT itself would adapt
        before = model_snapshot(model)
        result = selector(model, config=config, budget=None, param_budget=10**6, search="exhaustive").select(
            make_batch()
        )
        assert model_snapshot(model) == before
        for entry in result.ranking[:3]:
            picked = result.config_for(entry.modules)
            assert picked.exclude_modules == config.exclude_modules
            assert self.adapted(model, picked) == set(entry.modules)
        assert self.adapted(model, result.lora_config) == set(result.ranking[0].modules)

    @pytest.mark.parametrize("family", FAMILIES)
    def test_a_regex_or_all_linear_target_makes_the_pool(self, family):
        *_, attention = self.FAMILIES[family]
        model = make_model(family)
        regex = LoraConfig(r=2, lora_alpha=2, task_type="SEQ_CLS", target_modules=rf".*\.1\..*{attention}.*")
        names = {c.name for c in selector(model, config=regex).candidates}
        assert names and all(".1." in name and attention in name for name in names)
        everything = LoraConfig(r=2, lora_alpha=2, task_type="SEQ_CLS", target_modules="all-linear")
        assert {c.kind for c in selector(model, config=everything).candidates} >= {"o", "up", "down"}

    def test_explicit_modules_the_config_leaves_out_are_refused(self):
        config = LoraConfig(r=2, lora_alpha=2, exclude_modules=["value"])
        with pytest.raises(InvalidConfigError, match="left out by lora_config"):
            selector(make_model("bert"), config=config, modules=["bert.encoder.layer.0.attention.self.value"])

    def test_a_config_that_leaves_no_candidate_names_its_fields(self):
        config = LoraConfig(r=2, lora_alpha=2, target_modules=["query"], layers_to_transform=[7])
        with pytest.raises(Exception, match="layers_to_transform=\\[7\\]"):
            selector(make_model("bert"), config=config)


def test_score_and_config_for_refuse_a_module_named_twice():
    result = selector(make_model("bert")).select(make_batch())
    query = result.candidates[0].name
    for method in (result.score, result.config_for):
        with pytest.raises(InvalidConfigError, match="name a module twice"):
            method([query, query])


def test_a_model_built_on_meta_is_refused_by_the_selector_before_anything_runs():
    with torch.device("meta"):
        model = make_model("bert")
    with pytest.raises(InvalidInputError, match="weights are on 'meta'"):
        selector(model).select(make_batch())
    assert all(param.device.type == "meta" for param in model.parameters())


def test_auto_engine_is_hooks_on_a_cuda_device_and_func_on_the_cpu(monkeypatch, caplog):
    import peft_ntk_select.kernels.compute as compute

    model = make_model("bert")
    assert compute.resolve_engine("auto", model) == "func"
    monkeypatch.setattr(compute, "model_dtype_device", lambda model: (torch.float64, torch.device("cuda", 0)))
    with caplog.at_level(logging.INFO, logger="peft_ntk_select"):
        assert compute.resolve_engine("auto", model) == "hooks"
    assert "CUDA device, where hooks measured faster" in caplog.text
    assert compute.resolve_engine("func", model) == "func"  # an explicit engine is kept

"""The fast engines match the per-sample autograd reference on K and every S_l, for every family and output."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from peft_ntk_select import InvalidConfigError, compute_kernels, discover_candidates
from peft_ntk_select.kernels import gram
from tests.helpers import CAUSAL_LMS, CLASSIFIERS, make_batch, make_model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def kernels(family, engine, output, *, config=None, batch=None, chunk_size=2):
    model = make_model(family)
    config = config or LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM" if family in CAUSAL_LMS else "SEQ_CLS")
    candidates = discover_candidates(model, rank=config.r)
    batch = batch or make_batch(labels=None if family in CAUSAL_LMS else 2)
    return compute_kernels(model, batch, candidates, config, engine=engine, output_mode=output, chunk_size=chunk_size)


CASES = [(f, o) for f in CLASSIFIERS for o in ("trace", "margin", "loss")]
CASES += [(f, o) for f in CAUSAL_LMS for o in ("loss", "trace")]


@pytest.mark.parametrize("engine", ["func", "hooks"])
@pytest.mark.parametrize(("family", "output"), CASES)
def test_engine_matches_reference_on_every_kernel(family, output, engine):
    base_ref, contrib_ref, init_ref = kernels(family, "reference", output)
    base, contrib, init = kernels(family, engine, output)
    assert contrib_ref.abs().max() > 0
    assert all(torch.equal(init[name], init_ref[name]) for name in init_ref)
    for s, s_ref in zip(contrib, contrib_ref, strict=True):
        assert rel_err(s, s_ref) <= 1e-8
    if family in CAUSAL_LMS:
        assert torch.equal(base, torch.zeros_like(base))
    else:
        assert base_ref.abs().max() > 0
        assert rel_err(base, base_ref) <= 1e-8


@pytest.mark.parametrize("engine", ["func", "hooks", "reference"])
def test_kernels_are_symmetric_psd_float64(engine):
    base, contrib, _ = kernels("llama", engine, "trace")
    for matrix in (base, *contrib):
        assert matrix.dtype == torch.float64
        assert torch.allclose(matrix, matrix.T, rtol=0, atol=1e-12 * matrix.abs().max())
        assert torch.linalg.eigvalsh(matrix).min() >= -1e-10 * matrix.abs().max()


def test_kernels_do_not_depend_on_chunk_size():
    _, one, _ = kernels("bert", "func", "trace", chunk_size=1)
    _, five, _ = kernels("bert", "func", "trace", chunk_size=5)
    assert rel_err(one, five) <= 1e-12


def test_padding_does_not_change_a_sample_kernel():
    batch = make_batch(n=3)
    padded = {k: torch.cat([v, v[:, :3]], dim=1) if v.dim() == 2 else v for k, v in batch.items()}
    padded["attention_mask"][:, batch["input_ids"].shape[1] :] = 0
    padded["input_ids"][:, batch["input_ids"].shape[1] :] = 1
    for engine in ("func", "hooks"):
        base, contrib, _ = kernels("bert", engine, "trace", batch=batch)
        base_p, contrib_p, _ = kernels("bert", engine, "trace", batch=padded)
        assert rel_err(contrib_p, contrib) <= 1e-10
        assert rel_err(base_p, base) <= 1e-10


def test_gpt2_fused_c_attn_is_one_qkv_candidate_per_layer():
    candidates = discover_candidates(make_model("gpt2"), rank=4)
    assert [(c.layer, c.kind, c.in_features, c.out_features, c.fan_in_fan_out) for c in candidates] == [
        (0, "qkv", 16, 48, True),
        (1, "qkv", 16, 48, True),
    ]


def test_base_kernel_is_zero_without_trained_head():
    config = LoraConfig(r=4, lora_alpha=8)  # no task_type: PEFT would not train the classifier
    base, contrib, _ = kernels("bert", "hooks", "trace", config=config)
    assert torch.equal(base, torch.zeros_like(base))
    assert contrib.abs().max() > 0


def test_modules_to_save_enter_the_base_kernel():
    with_head, _, _ = kernels("bert", "hooks", "trace", config=LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS"))
    explicit, _, _ = kernels(
        "bert", "hooks", "trace", config=LoraConfig(r=4, lora_alpha=8, modules_to_save=["classifier"])
    )
    assert torch.allclose(explicit, with_head, rtol=1e-12, atol=0)


def test_contribution_scales_with_lora_scale_squared():
    _, base_scale, _ = kernels("bert", "hooks", "trace", config=LoraConfig(r=4, lora_alpha=4, task_type="SEQ_CLS"))
    _, double, _ = kernels("bert", "hooks", "trace", config=LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS"))
    assert torch.allclose(double, 4 * base_scale, rtol=1e-12, atol=0)


def test_rslora_scale_is_alpha_over_sqrt_r():
    plain = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS")
    rs = LoraConfig(r=4, lora_alpha=8, use_rslora=True, task_type="SEQ_CLS")
    _, s_plain, _ = kernels("bert", "hooks", "trace", config=plain)
    _, s_rs, _ = kernels("bert", "hooks", "trace", config=rs)
    assert torch.allclose(s_rs, s_plain * (8 / 2) ** 2 / (8 / 4) ** 2, rtol=1e-12, atol=0)


def test_gram_sums_inner_products_over_outputs():
    features = torch.randn(3, 2, 5, dtype=torch.float64)
    expected = sum(features[:, a] @ features[:, a].T for a in range(2))
    assert torch.allclose(gram(features), expected)


@pytest.mark.parametrize("engine", ["func", "hooks", "reference"])
def test_bfloat16_model_gives_float64_kernels_close_to_float32(engine):
    config = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS")
    batch = make_batch()
    results = []
    for dtype in (torch.float32, torch.bfloat16):
        model = make_model("llama").to(dtype)
        candidates = discover_candidates(model, rank=4)
        results.append(compute_kernels(model, batch, candidates, config, engine=engine))
    (base32, contrib32, _), (base16, contrib16, _) = results
    assert base16.dtype == contrib16.dtype == torch.float64
    assert torch.isfinite(contrib16).all()
    assert rel_err(contrib16, contrib32) <= 5e-2 and rel_err(base16, base32) <= 5e-2


def test_decoder_classifier_without_pad_token_is_refused_when_samples_are_padded():
    model = make_model("gpt2", pad_token_id=None)
    candidates = discover_candidates(model, rank=4)
    config = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS")
    with pytest.raises(InvalidConfigError, match="set model.config.pad_token_id"):
        compute_kernels(model, make_batch(), candidates, config)
    unpadded = {k: v[:1].repeat(2, *[1] * (v.dim() - 1)) for k, v in make_batch().items()}
    base, _, _ = compute_kernels(model, unpadded, candidates, config)
    assert base.abs().max() > 0


def test_dropout_is_off_when_the_model_is_in_training_mode():
    config = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS")
    model = make_model("bert", hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
    candidates = discover_candidates(model, rank=4)
    _, in_eval, _ = compute_kernels(model, make_batch(), candidates, config, engine="hooks")
    _, in_train, _ = compute_kernels(model.train(), make_batch(), candidates, config, engine="hooks")
    assert torch.equal(in_train, in_eval)

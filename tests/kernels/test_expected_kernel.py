"""kernel='expected' is E over LoRA's A of the LoRA kernel: s^2 r Var(A_ij) times the full-weight kernel, exactly."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from peft import LoraConfig

from peft_ntk_select import InvalidConfigError, compute_kernels, discover_candidates
from peft_ntk_select.kernels import KERNELS
from peft_ntk_select.kernels.expected import (
    choose_formulation,
    feature_count,
    formulation_costs,
    pack_passes,
    token_gram,
)
from peft_ntk_select.kernels.outputs import sample_outputs
from tests.helpers import CAUSAL_LMS, make_batch, make_model, model_snapshot

TOKENS = 1  # a memory budget of one byte: no per-sample weight gradient fits, every candidate uses tokens


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run several times faster on one thread than on contended cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def config_for(family: str, init: bool | str = True, **kw) -> LoraConfig:
    task = "CAUSAL_LM" if family in CAUSAL_LMS else "SEQ_CLS"
    return LoraConfig(r=4, lora_alpha=8, init_lora_weights=init, task_type=task, **kw)


PATTERNS = {"rank_pattern": {"k_proj": 2}, "alpha_pattern": {"v_proj": 3}, "use_rslora": True}


def expected_run(family, output, config, *, batch=None, **kw):
    model = make_model(family)
    candidates = discover_candidates(model, rank=config.r)
    batch = batch or make_batch(labels=None if family in CAUSAL_LMS else 2)
    return compute_kernels(model, batch, candidates, config, output_mode=output, **{"kernel": "expected", **kw})


def _unpadded(batch: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    keep = batch["attention_mask"][i].bool()
    return {k: (v[i][keep] if v.dim() == 2 else v[i]).unsqueeze(0) for k, v in batch.items()}


def full_weight_kernel(model, batch, name: str, output: str) -> torch.Tensor:
    """The NTK of module ``name``'s weight alone: per-sample autograd.grad of every output, sample unpadded."""
    weight = model.get_submodule(name).weight
    rows = []
    for i in range(batch["input_ids"].shape[0]):
        sample = _unpadded(batch, i)
        inputs = {k: v for k, v in sample.items() if k != "labels"}
        f = sample_outputs(model(**inputs).logits, sample, output)[0]
        rows.append(torch.stack([torch.autograd.grad(f_a, weight, retain_graph=True)[0].flatten() for f_a in f]))
    g = torch.stack(rows)
    return torch.einsum("icp,jcp->ij", g, g)


def hand_factor(module: torch.nn.Module, name: str, init: bool | str, patterns: bool) -> float:
    """s^2 r Var(A_ij), spelled out: Conv1D stores its weight as (in, out), nn.Linear as (out, in)."""
    in_features = module.nx if type(module).__name__ == "Conv1D" else module.in_features
    r = 2 if patterns and name.endswith("k_proj") else 4
    alpha = 3 if patterns and name.endswith("v_proj") else 8
    s = alpha / math.sqrt(r) if patterns else alpha / r
    variance = 1 / r**2 if init == "gaussian" else 1 / (3 * in_features)
    return s * s * r * variance


REFERENCE_CASES = [
    ("bert", "trace", True, False),
    ("bert", "loss", "gaussian", False),
    ("llama", "trace", "gaussian", True),
    ("llama", "margin", True, True),
    ("gpt2", "trace", True, False),
    ("llama_lm", "loss", True, True),
    ("gpt2_lm", "loss", "gaussian", False),
]


@pytest.mark.parametrize("budget", [None, TOKENS], ids=["weight", "tokens"])
@pytest.mark.parametrize(("family", "output", "init", "patterns"), REFERENCE_CASES)
def test_expected_kernel_is_scaled_full_weight_ntk_on_padded_batch(family, output, init, patterns, budget):
    config = config_for(family, init, **(PATTERNS if patterns else {}))
    batch = make_batch(labels=None if family in CAUSAL_LMS else 2)
    assert not batch["attention_mask"].bool().all()
    _, contrib, _ = expected_run(family, output, config, batch=batch, **({"memory_budget": budget} if budget else {}))
    model = make_model(family)
    candidates = discover_candidates(model, rank=4)
    for c, s in zip(candidates, contrib, strict=True):
        module = model.get_submodule(c.name)
        reference = hand_factor(module, c.name, init, patterns) * full_weight_kernel(model, batch, c.name, output)
        assert reference.abs().max() > 0
        assert rel_err(s, reference) <= 1e-10, c.name


MC_CASES = [
    ("gpt2", "trace", True, False),  # fused c_attn Conv1D: Var(A) = 1/(3 * 16), not 1/(3 * 48)
    ("llama", "trace", "gaussian", True),  # GQA: k/v (16 -> 8) beside q (16 -> 16)
    ("llama_lm", "loss", True, True),
]


@pytest.mark.parametrize(("family", "output", "init", "patterns"), MC_CASES)
def test_expected_kernel_is_mean_of_sampled_lora_kernels(family, output, init, patterns):
    config = config_for(family, init, **(PATTERNS if patterns else {}))
    model = make_model(family)
    candidates = discover_candidates(model, rank=4)
    batch = make_batch(labels=None if family in CAUSAL_LMS else 2)
    expected = compute_kernels(model, batch, candidates, config, output_mode=output, kernel="expected")[1]
    seeds = 400
    draws = torch.stack(
        [
            compute_kernels(
                model, batch, candidates, config, output_mode=output, engine="hooks", seed=seed, chunk_size=5
            )[1]
            for seed in range(seeds)
        ]
    )
    mean, stderr = draws.mean(0), draws.std(0) / math.sqrt(seeds)
    assert ((mean - expected).abs() <= 4 * stderr + 1e-12 * expected.abs().max()).all()
    # the relative Frobenius error is what the Monte-Carlo noise predicts, and shrinks with more seeds
    noise = float(stderr.norm() / expected.norm())
    assert rel_err(mean, expected) <= 3 * noise
    assert rel_err(draws[:100].mean(0), expected) > rel_err(mean, expected)


@pytest.mark.parametrize(("family", "output"), [("llama", "trace"), ("gpt2", "trace"), ("gpt2_lm", "loss")])
def test_every_engine_and_formulation_give_the_same_expected_kernels(family, output):
    config = config_for(family)
    base_ref, contrib_ref, _ = expected_run(family, output, config, engine="reference")
    for engine in ("func", "hooks", "reference"):
        for budget in (TOKENS, 1 << 30):
            base, contrib, _ = expected_run(family, output, config, engine=engine, memory_budget=budget)
            assert rel_err(contrib, contrib_ref) <= 1e-10, (engine, budget)
            if family not in CAUSAL_LMS:
                assert rel_err(base, base_ref) <= 1e-10


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
@pytest.mark.parametrize("budget", [None, TOKENS], ids=["weight", "tokens"])
def test_padding_tokens_do_not_change_expected_kernels(family, budget):
    batch = make_batch(n=3)
    padded = {k: torch.cat([v, v[:, :3]], dim=1) if v.dim() == 2 else v for k, v in batch.items()}
    padded["attention_mask"][:, batch["input_ids"].shape[1] :] = 0
    padded["input_ids"][:, batch["input_ids"].shape[1] :] = 1
    kw = {"memory_budget": budget} if budget else {}
    for engine in ("func", "hooks"):
        base, contrib, _ = expected_run(family, "trace", config_for(family), batch=batch, engine=engine, **kw)
        base_p, contrib_p, _ = expected_run(family, "trace", config_for(family), batch=padded, engine=engine, **kw)
        assert rel_err(contrib_p, contrib) <= 1e-10
        assert rel_err(base_p, base) <= 1e-10


def test_base_kernel_and_adapter_init_are_those_of_the_lora_kernel():
    model = make_model("llama")
    candidates = discover_candidates(model, rank=4)
    config = config_for("llama")
    base, _, init = compute_kernels(model, make_batch(), candidates, config, seed=3)
    base_e, contrib_e, init_e = compute_kernels(model, make_batch(), candidates, config, seed=3, kernel="expected")
    assert rel_err(base_e, base) <= 1e-12
    assert init_e.keys() == init.keys() and all(torch.equal(init_e[k], init[k]) for k in init)
    _, other_seed, _ = compute_kernels(model, make_batch(), candidates, config, seed=4, kernel="expected")
    assert torch.equal(other_seed, contrib_e)


def test_expected_kernels_are_symmetric_psd_float64():
    _, contrib, _ = expected_run("gpt2", "trace", config_for("gpt2"), memory_budget=TOKENS)
    for matrix in contrib:
        assert matrix.dtype == torch.float64
        assert torch.equal(matrix, matrix.T)
        assert torch.linalg.eigvalsh(matrix).min() >= -1e-10 * matrix.abs().max()


@pytest.mark.parametrize("budget", [None, TOKENS], ids=["weight", "tokens"])
def test_expected_kernel_leaves_the_model_unchanged(budget):
    model = make_model("gpt2").train()
    before = model_snapshot(model)
    kw = {"memory_budget": budget} if budget else {}
    for engine in ("func", "hooks", "reference"):
        compute_kernels(model, make_batch(), discover_candidates(model), config_for("gpt2"), engine=engine,
                        kernel="expected", **kw)  # fmt: skip
    assert model_snapshot(model) == before


def test_unknown_kernel_is_refused_with_the_choices():
    assert KERNELS == ("lora", "expected", "adam")
    with pytest.raises(InvalidConfigError, match=r"unknown kernel 'mean'.*'lora', 'expected', 'adam'"):
        expected_run("bert", "trace", config_for("bert"), kernel="mean")


@pytest.mark.parametrize("budget", [0, -5, 1.5, True])
def test_memory_budget_must_be_a_positive_byte_count(budget):
    with pytest.raises(InvalidConfigError, match="memory_budget"):
        expected_run("bert", "trace", config_for("bert"), memory_budget=budget)


def test_choice_of_formulation_is_logged_and_a_mixed_plan_gives_the_same_kernels(caplog):
    # q (16 -> 16) has 5 * 2 * 256 float64 gradients = 20480 bytes, k and v (16 -> 8) half: only they fit 15000
    config = config_for("llama")
    _, whole, _ = expected_run("llama", "trace", config)
    with caplog.at_level(logging.DEBUG, logger="peft_ntk_select.kernels.expected"):
        _, mixed, _ = expected_run("llama", "trace", config, memory_budget=15000)
    chosen = {r.args[0].rsplit(".", 1)[-1]: r.args[6] for r in caplog.records if "formulation" in r.msg}
    assert chosen == {"q_proj": "tokens", "k_proj": "weight", "v_proj": "weight"}
    assert any("engine passes" in r.getMessage() and r.args[1] > 1 for r in caplog.records)
    assert rel_err(mixed, whole) <= 1e-12


def test_formulation_rule_takes_the_cheaper_one_that_fits():
    itemsize, budget = 4, 1 << 30
    for in_f, out_f, n, length, outputs in [(768, 768, 32, 128, 2), (4096, 4096, 32, 128, 32000), (64, 32, 8, 512, 2),
                                            (2048, 256, 64, 16, 1), (16, 16, 5, 7, 2)]:  # fmt: skip
        shape = {"n": n, "length": length, "outputs": outputs}
        costs = formulation_costs(in_f, out_f, **shape)
        fits = feature_count("weight", in_f, out_f, **shape) * itemsize <= budget
        cheaper = min(costs, key=lambda k: (costs[k], k != "weight"))
        chosen = choose_formulation(in_f, out_f, **shape, itemsize=itemsize, memory_budget=budget)
        assert chosen == (cheaper if fits else "tokens")
    # roberta-base attention at 32 samples of 128 tokens: per-sample gradients are cheaper; a causal LM's
    # trace over a 32000-token vocabulary is not
    assert choose_formulation(768, 768, n=32, length=128, outputs=2, itemsize=4, memory_budget=budget) == "weight"
    assert choose_formulation(768, 768, n=32, length=128, outputs=2, itemsize=4, memory_budget=10**8) == "tokens"
    assert choose_formulation(4096, 4096, n=32, length=128, outputs=32000, itemsize=4, memory_budget=budget) == "tokens"


def test_pack_passes_keeps_order_and_budget():
    assert pack_passes([3, 3, 3, 9, 1], 6) == [[0, 1], [2], [3], [4]]
    assert pack_passes([2, 2], 6, reserved=3) == [[0], [1]]
    assert pack_passes([], 6, reserved=3) == [[]]


def test_token_gram_matches_the_double_sum_over_tokens_in_any_block_size():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, 3, generator=generator, dtype=torch.float64)
    d = torch.randn(4, 2, 5, 6, generator=generator, dtype=torch.float64)
    explicit = torch.einsum("iats,jaus,itp,jup->ij", d, d, x, x)
    for budget in (1, 2 * 4 * 25 * 8 * 2, 1 << 30):
        assert torch.allclose(token_gram(x, d, memory_budget=budget), explicit, rtol=1e-12, atol=0)


@pytest.mark.parametrize("budget", [None, TOKENS], ids=["weight", "tokens"])
def test_bfloat16_model_gives_float64_expected_kernels_close_to_float32(budget):
    config, batch = config_for("llama"), make_batch()
    kw = {"memory_budget": budget} if budget else {}
    results = []
    for dtype in (torch.float32, torch.bfloat16):
        model = make_model("llama").to(dtype)
        results.append(compute_kernels(model, batch, discover_candidates(model), config, kernel="expected", **kw)[1])
    assert results[1].dtype == torch.float64 and torch.isfinite(results[1]).all()
    assert rel_err(results[1], results[0]) <= 5e-2

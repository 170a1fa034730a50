"""Bounded memory: the chunk plan under max_memory keeps the kernels exact and lands in the result."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from peft_ntk_select import NTKSelector, SelectionResult
from peft_ntk_select.candidates import discover_candidates, rank_options
from peft_ntk_select.errors import InvalidConfigError
from peft_ntk_select.kernels import compute_kernels
from peft_ntk_select.kernels import memory as memory_module
from peft_ntk_select.kernels.memory import measure_sample, parse_memory, plan_memory
from tests.helpers import make_batch, make_model, model_snapshot

CONFIG = LoraConfig(r=2, lora_alpha=4, task_type="SEQ_CLS")


def select(model, **kw):
    return NTKSelector(model, CONFIG, budget=2, num_samples=6, show_progress=False, **kw).select(make_batch(n=6))


@pytest.mark.parametrize(("text", "expected"), [("8GB", 8 * 10**9), ("512MiB", 512 * 2**20), ("1.5e9", 1_500_000_000),
                                                (" 2 gib ", 2 * 2**30), (4096, 4096), ("100kb", 100_000)])  # fmt: skip
def test_sizes_parse(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["", "8XB", "-1GB", "0", 0, -5, True, 1.5, None, "GB", "1.2.3GB"])
def test_bad_sizes_name_the_fix(bad):
    with pytest.raises(InvalidConfigError, match="max_memory="):
        parse_memory(bad)


@pytest.mark.parametrize(("family", "engine"), [("bert", "func"), ("llama", "hooks"), ("gpt2", "func"),
                                                ("roberta", "reference")])  # fmt: skip
def test_a_tight_cap_cuts_chunks_and_passes_and_keeps_the_kernels(family, engine):
    model = make_model(family)
    free = select(model, engine=engine)
    assert free.memory_plan["chunk_size"] == 6 and len(free.memory_plan["passes"]) == 1
    plan = free.memory_plan
    need = 2 * plan["feature_bytes"] + 7 * 36 * 8 + memory_module.TRANSIENT * plan["activation_bytes"]
    before = model_snapshot(model)
    tight = select(model, engine=engine, max_memory=int(1.2 * need))
    assert model_snapshot(model) == before
    plan = tight.memory_plan
    assert plan["chunk_size"] == 1 and plan["estimated_peak"] <= plan["max_memory"]
    assert sorted(i for group in tight.memory_plan["passes"] for i in group) == list(range(len(free.candidates)))
    torch.testing.assert_close(tight.contributions, free.contributions, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(tight.base_kernel, free.base_kernel, rtol=1e-12, atol=1e-15)
    assert [e.modules for e in tight.ranking] == [e.modules for e in free.ranking]


def test_expected_kernel_under_a_cap_is_unchanged():
    model = make_model("bert")
    free = select(model, kernel="expected", engine="hooks")
    tight = select(model, kernel="expected", engine="hooks", max_memory=150_000)
    assert tight.memory_plan["chunk_size"] < free.memory_plan["chunk_size"]
    torch.testing.assert_close(tight.contributions, free.contributions, rtol=1e-12, atol=1e-15)


def test_a_cap_below_one_sample_raises_before_computing_anything():
    model = make_model("bert")
    before = model_snapshot(model)
    with pytest.raises(InvalidConfigError, match="max_memory=1000 bytes cannot hold .* raise max_memory"):
        select(model, max_memory=1000)
    assert model_snapshot(model) == before


def test_the_default_cap_is_a_fraction_of_the_free_memory(monkeypatch):
    monkeypatch.setattr(memory_module, "free_memory", lambda device: 10**9)
    result = select(make_model("bert"))
    assert result.memory_plan["max_memory"] == int(memory_module.DEFAULT_FRACTION["cpu"] * 10**9)


def test_the_plan_round_trips_and_is_logged(tmp_path, caplog):
    with caplog.at_level("INFO", logger="peft_ntk_select"):
        result = select(make_model("llama"), max_memory="64MB")
    assert "memory plan: cap 61 MiB" in caplog.text
    assert SelectionResult.load(result.save(tmp_path)).memory_plan == result.memory_plan


def test_saved_activations_grow_with_the_sample_length():
    model = make_model("bert")
    candidates = discover_candidates(model, rank=2)
    short, long = make_batch(n=2, length=6), make_batch(n=2, length=24)
    sizes = [measure_sample(model, {k: v[:1] for k, v in b.items()}, {}, "trace") for b in (short, long)]
    assert sizes == [(0, 2), (0, 2)]  # nothing requires grad without probes: autograd saves nothing; 2 logits
    plans = [plan_memory(model, b, candidates, CONFIG, "trace", max_memory=10**9, chunk_size=8) for b in (short, long)]
    assert 1.5 * plans[0].activation_bytes < plans[1].activation_bytes  # 4x the tokens (and a fixed part)


def test_planned_passes_equal_one_pass_in_compute_kernels():
    model = make_model("bert")
    batch = make_batch()
    candidates = discover_candidates(model, rank=2)
    one = compute_kernels(model, batch, candidates, CONFIG, engine="hooks")
    split = compute_kernels(model, batch, candidates, CONFIG, engine="hooks", candidate_passes=[[0], [1, 2], [3, 4, 5]])
    torch.testing.assert_close(split[0], one[0], rtol=0, atol=0)
    torch.testing.assert_close(split[1], one[1], rtol=0, atol=0)


def test_features_over_their_share_are_split_into_passes(monkeypatch):
    """With activations out of the way (measured as 0), the features alone decide the passes."""
    monkeypatch.setattr(memory_module, "measure_sample", lambda *args: (0, 2))
    model = make_model("bert")
    batch = make_batch(n=6)
    candidates = discover_candidates(model, rank=2)
    per_candidate = 6 * 2 * 16 * 2 * 8  # n c out r bytes (float64 model)
    share = 2.5 * per_candidate  # features of one pass may take FEATURE_SHARE / 2 of the cap
    cap = int(2 * share / memory_module.FEATURE_SHARE)
    plan = plan_memory(model, batch, candidates, CONFIG, "trace", max_memory=cap, chunk_size=8)
    assert [len(group) for group in plan.passes] == [1, 2, 2, 1]  # the head's features ride with the first pass
    assert plan.chunk_size == 6


def test_rank_options_of_a_module_share_one_probe_in_one_pass(monkeypatch):
    """Rank allocation: a module's options are sized once (its probe at the largest rank) and never split."""
    monkeypatch.setattr(memory_module, "measure_sample", lambda *args: (0, 2))
    model = make_model("bert")
    batch = make_batch(n=6)
    candidates = rank_options(discover_candidates(model, rank=2), (1, 2))  # 6 modules x 2 options
    per_module = 6 * 2 * 16 * 2 * 8  # n c out R bytes: the probe at the largest rank R = 2
    share = 2.5 * per_module
    cap = int(2 * share / memory_module.FEATURE_SHARE)
    plan = plan_memory(model, batch, candidates, CONFIG, "trace", max_memory=cap, chunk_size=8)
    assert [len(group) for group in plan.passes] == [2, 4, 4, 2]  # as for 6 plain candidates, each option pair kept
    passes_of = {}
    for number, group in enumerate(plan.passes):
        for index in group:
            passes_of.setdefault(candidates[index].name, set()).add(number)
    assert all(len(numbers) == 1 for numbers in passes_of.values())  # a module's options stay in one pass
    assert plan.feature_bytes < 3 * per_module  # two modules' probes (and the head), not their four options
    one = compute_kernels(model, batch, candidates, CONFIG, engine="hooks")
    split = compute_kernels(model, batch, candidates, CONFIG, engine="hooks", candidate_passes=plan.passes)
    torch.testing.assert_close(split[1], one[1], rtol=0, atol=0)

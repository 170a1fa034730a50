"""Rank allocation (``ranks=``): one rank or none per module within a parameter budget, and configs PEFT builds
exactly (the picked modules at the picked ranks, no more LoRA parameters than the budget)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from peft import LoraConfig, get_peft_model

from peft_ntk_select import InvalidConfigError, NTKSelector, SelectionResult
from tests.helpers import make_batch, make_model, model_snapshot

RANKS = (2, 4, 8)
PLACEMENT = {"bert": ("q", "v"), "llama": ("q", "v"), "gpt2": ("qkv",)}  # GPT-2's attention is the fused c_attn


def allocate(family: str = "bert", **kw):
    model = make_model(family)
    config = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS")
    options = {"kinds": "all-linear", "param_budget": PLACEMENT[family], "ranks": RANKS, "show_progress": False}
    selector = NTKSelector(model, config, **{**options, **kw})
    return model, selector, selector.select(make_batch())


def lora_ranks(peft_model) -> dict[str, int]:
    """{module name: rank of its lora_A} of every adapted module, and no other."""
    root = peft_model.get_base_model()
    return {name: module.lora_A["default"].weight.shape[0] for name, module in root.named_modules()
            if hasattr(module, "lora_A")}  # fmt: skip


def lora_parameters(peft_model) -> int:
    return sum(p.numel() for name, p in peft_model.named_parameters() if "lora_" in name)


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
def test_peft_builds_exactly_the_picked_modules_at_the_picked_ranks_within_the_budget(family):
    model = make_model(family)
    before = model_snapshot(model)
    _, selector, result = allocate(family)
    budget = selector.ranking_settings.param_budget
    assert model_snapshot(model) == before
    assert model_snapshot(model, identity=False) == model_snapshot(make_model(family), identity=False)  # allocate's
    assert sorted({c.rank for c in result.candidates}) == list(RANKS)
    assert "one candidate per module" in result.space
    picked = get_peft_model(copy.deepcopy(model), result.lora_config)
    assert lora_ranks(picked) == result.ranking[0].ranks
    for entry in result.ranking[:6]:
        assert set(entry.ranks) == set(entry.modules) and set(entry.ranks.values()) <= set(RANKS)
        peft_model = get_peft_model(copy.deepcopy(model), result.config_for(entry.modules, entry.ranks))
        assert lora_ranks(peft_model) == entry.ranks
        assert lora_parameters(peft_model) == entry.num_params <= budget


def test_the_selector_leaves_the_model_as_it_was():
    model = make_model("bert")
    before = model_snapshot(model)
    NTKSelector(model, LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS"), kinds="all-linear",
                param_budget=("q", "v"), ranks=RANKS, show_progress=False).select(make_batch())  # fmt: skip
    assert model_snapshot(model) == before


def test_training_can_start_from_the_kernels_init_at_every_rank():
    """apply_init copies each module's A at its picked rank: the first rows of the draw at the largest rank."""
    model, _, result = allocate()
    peft_model = get_peft_model(copy.deepcopy(model), result.lora_config)
    result.apply_init(peft_model)
    root = peft_model.get_base_model()
    for name, rank in result.ranking[0].ranks.items():
        weight = root.get_submodule(name).lora_A["default"].weight
        assert result.adapter_init[name].shape[0] == max(RANKS)
        assert torch.equal(weight, result.adapter_init[name][:rank].to(weight.dtype))


def test_exact_search_over_rank_options_finds_the_exhaustive_top():
    _, _, exhaustive = allocate(search="exhaustive", max_subsets=10**6)
    _, _, exact = allocate(search="exact", top=5)
    assert exact.certificate.optimal
    assert [e.modules for e in exact.ranking] == [e.modules for e in exhaustive.ranking[:5]]
    assert [e.ranks for e in exact.ranking] == [e.ranks for e in exhaustive.ranking[:5]]
    for entry in exhaustive.ranking:
        assert len(set(entry.modules)) == len(entry.modules)  # at most one rank per module


def test_ranks_survive_save_and_load_and_score_asks_for_them(tmp_path):
    _, _, result = allocate()
    again = SelectionResult.load(result.save(tmp_path))
    assert again.ranking == result.ranking
    assert again.lora_config.rank_pattern == result.lora_config.rank_pattern
    assert json.loads((tmp_path / "adapter_config.json").read_text())["rank_pattern"] == result.lora_config.rank_pattern
    top = result.ranking[0]
    assert result.score(top.modules, top.ranks).ratio == pytest.approx(top.ratio, rel=1e-12)
    with pytest.raises(InvalidConfigError, match="pass ranks="):
        result.score(top.modules)


def test_without_rank_allocation_every_entry_states_the_config_rank():
    model = make_model("bert")
    config = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS", rank_pattern={"value": 2})
    result = NTKSelector(model, config, budget=2, show_progress=False).select(make_batch())
    for entry in result.ranking:
        assert entry.ranks == {m: 2 if m.endswith("value") else 4 for m in entry.modules}
    assert result.lora_config.rank_pattern == {"value": 2}  # the user's pattern, untouched


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"param_budget": None}, "pass param_budget= too"),
        ({"ranks": (0, 4)}, "integers >= 1"),
        ({"ranks": (4, 4)}, "lists a rank twice"),
        ({"ranks": "4,8"}, "must be a list of LoRA ranks"),
        ({"ranks": ()}, "nonempty"),
    ],
)
def test_bad_rank_allocation_is_refused_with_the_fix(kw, message):
    model = make_model("bert")
    options = {"kinds": "all-linear", "param_budget": ("q", "v"), "ranks": RANKS, **kw}
    with pytest.raises(InvalidConfigError, match=message):
        NTKSelector(model, LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS"), **options)


def test_ranks_beside_a_rank_pattern_is_refused():
    config = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS", rank_pattern={"query": 2})
    with pytest.raises(InvalidConfigError, match="has a rank_pattern"):
        NTKSelector(make_model("bert"), config, param_budget=("q", "v"), ranks=RANKS)


def test_stability_compares_rank_allocations_by_module_and_rank():
    model = make_model("bert")
    selector = NTKSelector(model, LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS"), kinds="all-linear",
                           param_budget=("q", "v"), ranks=RANKS, show_progress=False)  # fmt: skip
    (report,) = selector.stability(make_batch(), seeds=(0, 1), sample_draws=(), kernels=("lora",))
    assert len(report.taus) == 1 and -1.0 <= report.taus[0] <= 1.0
    assert all("@" in module for pick in report.picks for module in pick)  # name@rank
    assert set(report.frequency) <= {c.name for c in selector.candidates}

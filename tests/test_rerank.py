"""Re-ranking a result from its stored kernels, building one from kernels, and the one-line helper."""

from __future__ import annotations

import copy
import inspect

import pytest
from peft import LoraConfig, get_peft_model

import peft_ntk_select.kernels.compute as compute_module
from benchmarks.compare_picks.main import build_parser as compare_picks_parser
from peft_ntk_select import (
    Budget,
    NTKSelector,
    RankingSettings,
    SelectionResult,
    compute_kernels,
    find_ntk_target_modules,
    rank_subsets,
)
from peft_ntk_select.cli.commands import build_parser
from peft_ntk_select.errors import InvalidConfigError
from peft_ntk_select.search import DEFAULT_OBJECTIVE, OBJECTIVES
from tests.helpers import make_batch, make_model

CONFIG = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS")
SPACES = [
    {"budget": 2},
    {"param_budget": 300},
    {"layers_per_pick": 1, "kind_sets": [("q", "v"), ("k",)]},
    {"space": Budget(2, exact=False)},
]


def _select(**kw):
    model = make_model("bert")
    return NTKSelector(model, CONFIG, show_progress=False, **kw).select(make_batch(n=6))


@pytest.fixture(scope="module")
def stored():
    return _select(budget=2)


def _no_engine(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an engine ran")

    monkeypatch.setattr(compute_module, "ENGINES", {name: refuse for name in compute_module.ENGINES})


@pytest.mark.parametrize("space", SPACES, ids=["budget", "param_budget", "structured", "space"])
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_rerank_equals_a_fresh_select_and_runs_no_engine(stored, monkeypatch, objective, space):
    fresh = _select(objective=objective, **space)
    _no_engine(monkeypatch)
    again = stored.rerank(objective=objective, **space)
    assert again.ranking == fresh.ranking
    assert again.certificate == fresh.certificate
    assert again.space == fresh.space and again.objective == objective
    assert again.lora_config.target_modules == fresh.lora_config.target_modules
    assert again.contributions is stored.contributions  # the stored kernels, not new ones


def test_rerank_with_a_search_and_top_equals_a_fresh_select(stored, monkeypatch):
    fresh = _select(budget=3, search="beam", top=4, objective="min_kappa")
    _no_engine(monkeypatch)
    again = stored.rerank(budget=3, search="beam", top=4, objective="min_kappa")
    assert again.ranking == fresh.ranking and len(again.ranking) == 4
    assert again.certificate == fresh.certificate


def test_rerank_keeps_the_result_it_was_called_on(stored):
    before = list(stored.ranking)
    stored.rerank(objective="min_ratio")
    assert stored.ranking == before and stored.objective == DEFAULT_OBJECTIVE


def test_rerank_refuses_what_is_not_a_ranking_setting(stored):
    with pytest.raises(InvalidConfigError, match="RankingSettings"):
        stored.rerank(num_samples=8)


def test_rerank_after_save_and_load_equals_rerank_before(stored, tmp_path):
    loaded = SelectionResult.load(stored.save(tmp_path))
    assert loaded.rerank(objective="min_ratio").ranking == stored.rerank(objective="min_ratio").ranking


def test_from_kernels_builds_the_result_select_builds():
    model, batch = make_model("bert"), make_batch(n=6)
    selected = NTKSelector(model, CONFIG, budget=2, engine="hooks", show_progress=False).select(batch)
    candidates = selected.candidates
    base_kernel, contributions, adapter_init = compute_kernels(model, batch, candidates, CONFIG, engine="hooks")
    built = SelectionResult.from_kernels(
        candidates, base_kernel, contributions, CONFIG, settings=RankingSettings(budget=2),
        targets=selected.targets, adapter_init=adapter_init,
    )  # fmt: skip
    assert built.ranking == selected.ranking
    assert built.lora_config.target_modules == selected.lora_config.target_modules


def test_every_entry_point_has_the_same_default_objective():
    defaults = {
        "NTKSelector": inspect.signature(NTKSelector).parameters["objective"].default,
        "rank_subsets": inspect.signature(rank_subsets).parameters["objective"].default,
        "RankingSettings (SelectionResult.from_kernels' default settings)": RankingSettings().objective,
        "CLI": build_parser().parse_args(["select"]).objective,
        "compare_picks": compare_picks_parser().parse_args([]).objective,
    }
    assert set(defaults.values()) == {DEFAULT_OBJECTIVE}, defaults


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2", "llama_lm"])
def test_find_ntk_target_modules_returns_names_peft_adapts_exactly(family):
    model = make_model(family)
    names = find_ntk_target_modules(model, make_batch(n=5), budget=2, show_progress=False)
    assert len(names) == 2 and all(name in dict(model.named_modules()) for name in names)
    fan_in_fan_out = family.startswith("gpt2")
    peft_model = get_peft_model(
        copy.deepcopy(model), LoraConfig(r=2, target_modules=names, fan_in_fan_out=fan_in_fan_out)
    )
    adapted = {name for name, module in peft_model.get_base_model().named_modules() if hasattr(module, "lora_A")}
    assert adapted == set(names)


def test_find_ntk_target_modules_is_the_selectors_pick():
    model, batch = make_model("bert"), make_batch(n=5)
    result = NTKSelector(model, LoraConfig(r=8, lora_alpha=8, task_type="SEQ_CLS"), budget=2,
                         show_progress=False).select(batch)  # fmt: skip
    assert find_ntk_target_modules(model, batch, budget=2, show_progress=False) == list(result.ranking[0].modules)

"""Selection objectives: each value equals a direct computation, rankings follow the stated direction."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import LoraConfig

from peft_ntk_select import NTKSelector
from peft_ntk_select.errors import InvalidConfigError, SearchSpaceTooLargeError
from peft_ntk_select.search import (
    OBJECTIVES,
    Budget,
    ParamBudget,
    get_objective,
    objective_values,
    rank_subsets,
    regression_targets,
)
from tests.helpers import make_batch, make_model
from tests.search.strategies import base_kernels, psd_matrices

SIGMA = 0.05
OBJECTIVE_SETTINGS = settings(max_examples=25, deadline=None)


def direct_value(name: str, base: torch.Tensor, parts: torch.Tensor, subset, targets: torch.Tensor) -> float:
    """The objective of one subset, computed the plain way (solves and eigvalsh, no shared code)."""
    n = base.shape[0]
    part = parts[list(subset)].sum(0)
    kernel = base + part
    eye = torch.eye(n, dtype=torch.float64)
    eigenvalues = torch.linalg.eigvalsh(kernel)
    if name in ("min_ratio", "max_ratio"):
        return float((eigenvalues[-1] + SIGMA) / (torch.linalg.eigvalsh(base)[-1] + SIGMA))
    if name == "max_lambda_max":
        return float(torch.linalg.eigvalsh(part)[-1])
    if name == "min_risk":
        residual = SIGMA * torch.linalg.solve(kernel + SIGMA * eye, targets)
        return float(residual.pow(2).sum() / n)
    if name == "max_alignment":
        if not kernel.any():
            return 0.0
        return float(torch.trace(targets.T @ kernel @ targets) / (kernel.norm() * targets.pow(2).sum()))
    if name == "min_kappa":
        return float((eigenvalues[-1] + SIGMA) / (eigenvalues[0] + SIGMA))
    if name == "max_effective_rank":
        values = torch.linalg.eigvalsh(part).clamp(min=0)
        if not values.any():
            return 0.0
        share = values / values.sum()
        return math.exp(-sum(float(p * math.log(p)) for p in share if p > 0))
    if name == "min_loo_error":
        errors = []
        for i in range(n):
            rest = [j for j in range(n) if j != i]
            coefficients = torch.linalg.solve(kernel[rest][:, rest] + SIGMA * torch.eye(n - 1, dtype=torch.float64),
                                              targets[rest])  # fmt: skip
            errors.append(float((kernel[i, rest] @ coefficients - targets[i]).pow(2).sum()))
        return sum(errors) / n
    raise AssertionError(name)


@st.composite
def problems(draw: st.DrawFn):
    """K (zero or PSD), S (L, n, n) PSD, class targets, and a budget: n in 3..6, L in 2..6."""
    n = draw(st.integers(3, 6))
    base = draw(base_kernels(n))
    parts = torch.stack([draw(psd_matrices(n)) for _ in range(draw(st.integers(2, 6)))])
    labels = torch.tensor(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    budget = draw(st.integers(1, parts.shape[0]))
    return base, parts, regression_targets(labels, 2, signed=False), budget


@OBJECTIVE_SETTINGS
@given(problems(), st.sampled_from(sorted(OBJECTIVES)))
def test_each_objective_value_equals_a_direct_computation(problem, name):
    base, parts, targets, budget = problem
    subsets = list(itertools.combinations(range(parts.shape[0]), budget))
    values = objective_values(parts, base, subsets, OBJECTIVES[name], sigma=SIGMA, targets=targets)
    scale = 1.0 + float(base.abs().max() + parts.abs().max()) / SIGMA
    for subset, value in zip(subsets, values.tolist(), strict=True):
        expected = direct_value(name, base, parts, subset, targets)
        assert value == pytest.approx(expected, rel=1e-7 * scale, abs=1e-9 * scale)


@OBJECTIVE_SETTINGS
@given(problems(), st.sampled_from(sorted(OBJECTIVES)))
def test_ranking_by_an_objective_is_the_brute_force_order_in_its_direction(problem, name):
    base, parts, targets, budget = problem
    objective = OBJECTIVES[name]
    found = rank_subsets(
        parts, base, sigma=SIGMA, budget=budget, targets=targets, objective=name, top=5, search="exact"
    )
    subsets = list(itertools.combinations(range(parts.shape[0]), budget))
    values = objective_values(parts, base, subsets, objective, sigma=SIGMA, targets=targets).tolist()
    expected = sorted(zip(subsets, values, strict=True), key=lambda item: (-item[1] if objective.maximize else item[1],
                                                                              item[0]))[:5]  # fmt: skip
    assert [entry.indices for entry in found] == [subset for subset, _ in expected]
    assert [entry.score for entry in found] == [value for _, value in expected]
    assert found.certificate.objective == name and found.certificate.optimal


@OBJECTIVE_SETTINGS
@given(problems(), st.sampled_from(sorted(OBJECTIVES)), st.sampled_from(["greedy", "beam"]))
def test_greedy_and_beam_never_beat_the_exhaustive_best(problem, name, search):
    base, parts, targets, budget = problem
    objective = OBJECTIVES[name]
    best = rank_subsets(parts, base, sigma=SIGMA, budget=budget, targets=targets, objective=name, top=1)[0]
    found = rank_subsets(parts, base, sigma=SIGMA, budget=budget, targets=targets, objective=name, search=search)
    assert all(len(entry.indices) == budget for entry in found)
    assert float(objective.key(torch.tensor(found[0].score))) >= float(objective.key(torch.tensor(best.score)))
    certificate = found.certificate
    assert certificate.search == search
    if objective.bound is None:  # no bounds: greedy and beam never claim optimality
        assert not certificate.optimal and certificate.gap is None
    else:  # the bound at the root covers the optimum; proven when the best found meets it
        room = certificate.gap * (1 + 1e-9) + 1e-12 * abs(best.score)
        assert abs(best.score - found[0].score) <= room
        if certificate.optimal:
            assert found[0].score == pytest.approx(best.score, rel=1e-9)


def test_larger_contributions_rank_as_each_direction_says():
    """S_1 = 2 S_0 on a K with one flat direction: more kernel means a larger ratio and lambda_max, a smaller
    kappa and risk."""
    base = torch.diag(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    small = torch.diag(torch.tensor([0.1, 0.3, 0.2], dtype=torch.float64))
    parts = torch.stack([small, 2 * small])
    targets = regression_targets(torch.tensor([0, 1, 1]), 2, signed=False)
    first = {name: rank_subsets(parts, base, sigma=SIGMA, budget=1, targets=targets, objective=name)[0].indices
             for name in ("min_ratio", "max_ratio", "max_lambda_max", "min_kappa", "min_risk")}  # fmt: skip
    assert first == {"min_ratio": (0,), "max_ratio": (1,), "max_lambda_max": (1,), "min_kappa": (1,),
                     "min_risk": (1,)}  # fmt: skip


def test_effective_rank_prefers_complementary_contributions():
    e0, e1 = torch.eye(2, dtype=torch.float64)
    same, other = torch.outer(e0, e0), torch.outer(e1, e1)
    parts = torch.stack([same, same, other])
    ranking = rank_subsets(parts, torch.zeros(2, 2, dtype=torch.float64), sigma=SIGMA, budget=2,
                           objective="max_effective_rank")  # fmt: skip
    assert ranking[0].indices in ((0, 2), (1, 2)) and ranking[0].score == pytest.approx(2.0)
    assert ranking[-1].indices == (0, 1) and ranking[-1].score == pytest.approx(1.0)


def test_label_objectives_need_labels_and_unknown_objectives_are_refused():
    with pytest.raises(InvalidConfigError, match="uses the sample labels"):
        get_objective("min_risk", has_targets=False)
    with pytest.raises(InvalidConfigError, match="unknown objective 'best'"):
        get_objective("best", has_targets=True)


def test_objectives_without_branch_and_bound_refuse_huge_exact_searches_and_point_to_beam():
    parts = torch.eye(3, dtype=torch.float64).expand(30, 3, 3).clone()
    with pytest.raises(SearchSpaceTooLargeError, match="no branch and bound.*beam"):
        rank_subsets(parts, torch.zeros(3, 3, dtype=torch.float64), sigma=SIGMA, budget=6, objective="min_kappa",
                     max_subsets=1000, search="exact")  # fmt: skip


def test_objective_beam_respects_a_parameter_budget():
    generator = torch.Generator().manual_seed(0)
    factors = torch.randn(6, 4, 2, generator=generator, dtype=torch.float64)
    space = ParamBudget(5, [1, 2, 3, 1, 2, 3])
    found = rank_subsets(factors @ factors.mT, torch.zeros(4, 4, dtype=torch.float64), sigma=SIGMA, space=space,
                         objective="max_lambda_max", search="beam", beam_width=3)  # fmt: skip
    assert found.ranking and all(space.admits(entry.indices, 6) for entry in found)


CONFIG = LoraConfig(r=2, lora_alpha=2, task_type="SEQ_CLS")


def test_selector_ranks_by_the_objective_and_records_it_with_the_base():
    result = NTKSelector(make_model("bert"), CONFIG, budget=2, objective="max_ratio", base="none",
                         show_progress=False).select(make_batch(n=6))  # fmt: skip
    assert (result.objective, result.base) == ("max_ratio", "none")
    assert not result.base_kernel.any()
    scores = [entry.score for entry in result.ranking]
    assert scores == sorted(scores, reverse=True) and len(scores) == 15
    assert result.score(result.ranking[3].modules) == result.ranking[3]
    again = type(result).from_dict(result.to_dict())
    assert (again.objective, again.base) == ("max_ratio", "none")


@pytest.mark.parametrize(("options", "message"), [({"objective": "best"}, "unknown objective"),
                                                  ({"base": "zero"}, "unknown base")])  # fmt: skip
def test_selector_refuses_unknown_objectives_and_bases(options, message):
    with pytest.raises(InvalidConfigError, match=message):
        NTKSelector(make_model("bert"), CONFIG, **options)


def test_label_objective_without_labels_says_what_to_do():
    selector = NTKSelector(make_model("bert"), CONFIG, budget=1, objective="max_alignment", show_progress=False)
    with pytest.raises(InvalidConfigError, match="uses the sample labels"):
        selector.select(make_batch(labels=None))


def test_budget_space_is_exhaustive_for_objectives_by_default():
    parts = torch.stack([torch.eye(2, dtype=torch.float64) * (i + 1) for i in range(4)])
    found = rank_subsets(parts, torch.zeros(2, 2, dtype=torch.float64), sigma=SIGMA, space=Budget(2),
                         objective="max_lambda_max")  # fmt: skip
    assert found.certificate.search == "exhaustive" and len(found) == 6 and found[0].indices == (2, 3)


@pytest.mark.parametrize(("objective", "search"), [("min_ratio", "exact"), ("max_ratio", "exact"),
                                                   ("max_lambda_max", "exact"), ("min_kappa", "beam"),
                                                   ("max_alignment", "beam")])  # fmt: skip
def test_auto_search_of_a_large_space_is_branch_and_bound_where_it_exists_else_beam(objective, search):
    model = make_model("bert")
    selector = NTKSelector(model, CONFIG, budget=2, objective=objective, max_subsets=5, show_progress=False)
    result = selector.select(make_batch())
    assert result.certificate.search == search and result.certificate.objective == objective
    assert len(result.ranking) == 10
    if search == "exact":  # proven: the exhaustive top 10 of the same kernels
        full = rank_subsets(result.contributions, result.base_kernel, sigma=result.sigma, budget=2, top=10,
                            search="exhaustive", objective=objective, targets=result.targets)  # fmt: skip
        assert result.certificate.optimal
        assert [entry.modules for entry in result.ranking] == [
            tuple(result.candidates[i].name for i in entry.indices) for entry in full.ranking
        ]


@pytest.mark.parametrize(("objective", "search"), [("min_ratio", "exact"), ("max_ratio", "exact"),
                                                   ("max_lambda_max", "exact"), ("min_kappa", "beam"),
                                                   ("min_loo_error", "beam")])  # fmt: skip
def test_rank_subsets_auto_is_exhaustive_up_to_max_subsets_then_bounded_or_beam_keeping_ten(objective, search):
    generator = torch.Generator().manual_seed(2)
    factors = torch.randn(8, 4, 2, generator=generator, dtype=torch.float64)
    base, parts = torch.eye(4, dtype=torch.float64), factors @ factors.mT
    targets = regression_targets(torch.tensor([0, 1, 1, 0]), 2, signed=False)
    common = {"sigma": SIGMA, "budget": 2, "objective": objective, "targets": targets}
    small = rank_subsets(parts, base, max_subsets=28, **common)
    assert (small.certificate.search, len(small)) == ("exhaustive", 28)
    large = rank_subsets(parts, base, max_subsets=27, **common)
    assert (large.certificate.search, len(large)) == (search, 10)
    assert rank_subsets(parts, base, max_subsets=27, top=3, **common).ranking == large.ranking[:3]

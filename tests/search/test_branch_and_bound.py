"""Branch and bound, greedy and beam search against brute force over every kind of space, and their certificates."""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from peft_ntk_select.errors import InvalidConfigError, SearchSpaceTooLargeError
from peft_ntk_select.search import (
    Budget,
    InvalidSpaceError,
    ParamBudget,
    SearchResult,
    Structured,
    rank_subsets,
    score_subsets,
)
from tests.search.strategies import candidate_kernels, search_spaces, sign_kernel_problems

SEARCH_SETTINGS = settings(max_examples=30, deadline=None)
# Until the maximised objectives' section, the searches rank by min_ratio, the objective with lower bounds.
rank_min_ratio = functools.partial(rank_subsets, objective="min_ratio")
RTOL = 1e-10  # ratios from torch and numpy eigensolvers agree to rounding; near-ties may swap within it


@st.composite
def problems(draw: st.DrawFn, max_candidates: int = 14) -> tuple:
    """(K, S, sigma, space, top): K zero, PSD or 1e3 x PSD; L <= 14 candidates; a space of <= 300 subsets."""
    base, contributions, sigma = draw(candidate_kernels(max_candidates))
    space = draw(search_spaces(contributions.shape[0], max_size=300))
    return base, contributions, sigma, space, draw(st.integers(1, 12))


def brute_force(base: torch.Tensor, contributions: torch.Tensor, sigma: float, space) -> list[tuple[float, tuple]]:
    """Every admissible subset with its ratio from numpy, sorted by (ratio, indices)."""
    subsets = list(space.subsets(contributions.shape[0]))
    parts, kernel_base = contributions.numpy(), base.numpy()
    kernels = np.stack([kernel_base + sum(parts[i] for i in subset) for subset in subsets])
    top = np.linalg.eigvalsh(kernels)[:, -1]
    base_top = np.linalg.eigvalsh(kernel_base)[-1]
    ratios = (top + sigma) / (base_top + sigma)
    return sorted(zip(ratios.tolist(), subsets, strict=True))


def assert_is_brute_force_top(ranking, expected: list[tuple[float, tuple]], top: int) -> None:
    """Same length, same ratio at every rank, and every entry an admissible subset with its own ratio."""
    ratio_of = {subset: ratio for ratio, subset in expected}
    assert len(ranking) == min(top, len(expected))
    for entry, (ratio, _) in zip(ranking, expected, strict=False):
        assert entry.ratio == pytest.approx(ratio, rel=RTOL)
        assert entry.ratio == pytest.approx(ratio_of[entry.indices], rel=RTOL)
    assert len({entry.indices for entry in ranking}) == len(ranking)


# exact: branch and bound equals brute force


@SEARCH_SETTINGS
@given(problems())
def test_exact_finds_the_brute_force_optimum_in_every_kind_of_space(problem):
    base, contributions, sigma, space, _ = problem
    expected = brute_force(base, contributions, sigma, space)
    result = rank_min_ratio(contributions, base, sigma=sigma, space=space, search="exact", top=1)
    assert result.ranking[0].ratio == pytest.approx(expected[0][0], rel=RTOL)
    assert result.certificate.best_ratio == result.ranking[0].ratio


@SEARCH_SETTINGS
@given(problems())
def test_exact_finds_the_brute_force_top_in_every_kind_of_space(problem):
    base, contributions, sigma, space, top = problem
    expected = brute_force(base, contributions, sigma, space)
    result = rank_min_ratio(contributions, base, sigma=sigma, space=space, search="exact", top=top)
    assert_is_brute_force_top(result.ranking, expected, top)


@SEARCH_SETTINGS
@given(problems())
def test_exact_top_is_the_exhaustive_top_entry_for_entry(problem):
    base, contributions, sigma, space, top = problem
    exact = rank_min_ratio(contributions, base, sigma=sigma, space=space, search="exact", top=top)
    exhaustive = rank_min_ratio(contributions, base, sigma=sigma, space=space, search="exhaustive", top=top)
    assert exact.ranking == exhaustive.ranking


@SEARCH_SETTINGS
@given(problems())
def test_exhaustive_top_is_the_head_of_the_full_ranking(problem):
    base, contributions, sigma, space, top = problem
    full = rank_min_ratio(contributions, base, sigma=sigma, space=space, search="exhaustive")
    assert len(full) == space.size(contributions.shape[0])
    assert (
        rank_min_ratio(contributions, base, sigma=sigma, space=space, search="exhaustive", top=top).ranking
        == (full.ranking[:top])
    )


@SEARCH_SETTINGS
@given(problems())
def test_exact_entries_are_scored_like_any_other_subset(problem):
    base, contributions, sigma, space, top = problem
    for entry in rank_min_ratio(contributions, base, sigma=sigma, search="exact", space=space, top=top):
        assert space.admits(entry.indices, contributions.shape[0])
        alone = score_subsets(contributions, base, torch.tensor([entry.indices]), sigma=sigma)[0]
        assert replace(entry, score=None) == alone and entry.score == entry.ratio  # min_ratio scores the ratio


@SEARCH_SETTINGS
@given(problems())
def test_exact_certificate_without_limits_says_optimal_with_no_gap(problem):
    base, contributions, sigma, space, top = problem
    result = rank_min_ratio(contributions, base, sigma=sigma, space=space, search="exact", top=top)
    certificate = result.certificate
    assert certificate.optimal and certificate.stopped is None
    assert certificate.gap == 0.0 and certificate.lower_bound == certificate.best_ratio == result.ranking[0].ratio
    assert certificate.certified == len(result.ranking)
    assert certificate.space_size == space.size(contributions.shape[0])
    assert certificate.nodes >= 0 and certificate.evaluated >= 1


# limits


@SEARCH_SETTINGS
@given(problems(), st.integers(1, 3))
def test_a_node_limit_leaves_a_valid_gap(problem, max_nodes):
    base, contributions, sigma, space, top = problem
    expected = brute_force(base, contributions, sigma, space)
    result = rank_min_ratio(contributions, base, sigma=sigma, search="exact", space=space, top=top, max_nodes=max_nodes)
    certificate = result.certificate
    optimum = expected[0][0]
    assert certificate.lower_bound <= optimum * (1 + RTOL)
    assert certificate.best_ratio >= optimum * (1 - RTOL)
    assert certificate.gap == pytest.approx(certificate.best_ratio - certificate.lower_bound, rel=1e-12, abs=1e-300)
    if certificate.optimal:
        assert_is_brute_force_top(result.ranking, expected, top)
    else:
        assert certificate.stopped == "max_nodes"
    # the certified head of the ranking is the brute force head
    assert_is_brute_force_top(result.ranking[: certificate.certified], expected, certificate.certified)


def hard_problem() -> tuple[torch.Tensor, torch.Tensor]:
    """No base kernel and 16 random rank-2 contributions of equal trace: the Rayleigh bound is loose."""
    generator = torch.Generator().manual_seed(0)
    factors = torch.randn(16, 6, 2, generator=generator, dtype=torch.float64)
    contributions = factors @ factors.mT
    contributions /= contributions.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]
    return torch.zeros(6, 6, dtype=torch.float64), contributions


@pytest.mark.parametrize(("limit", "reason"), [({"max_nodes": 1}, "max_nodes"), ({"time_limit": 1e-9}, "time_limit")])
def test_limits_stop_branch_and_bound_with_optimal_false_and_a_gap(limit, reason):
    base, contributions = hard_problem()
    full = rank_min_ratio(contributions, base, sigma=1e-4, budget=4, search="exhaustive")
    result = rank_min_ratio(contributions, base, sigma=1e-4, search="exact", budget=4, top=5, **limit)
    certificate = result.certificate
    assert (certificate.optimal, certificate.stopped) == (False, reason)
    assert certificate.lower_bound <= full[0].ratio <= certificate.best_ratio
    assert certificate.gap == certificate.best_ratio - certificate.lower_bound > 0
    assert len(result.ranking) == 5


def test_without_limits_the_hard_problem_is_solved_exactly():
    base, contributions = hard_problem()
    full = rank_min_ratio(contributions, base, sigma=1e-4, budget=4, search="exhaustive")
    result = rank_min_ratio(contributions, base, sigma=1e-4, search="exact", budget=4, top=5, max_nodes=None)
    assert result.ranking == full.ranking[:5]
    assert result.certificate.optimal
    assert result.certificate.evaluated < len(full)


def test_exhaustive_top_solves_only_the_subsets_its_lower_bounds_cannot_exclude():
    """A dominant K (the classifier head): the Ritz bounds are nearly exact, so few subsets are solved."""
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(8, 3, generator=generator, dtype=torch.float64) + 1.0
    factors = torch.randn(12, 8, 2, generator=generator, dtype=torch.float64)
    base, contributions = 1e3 * features @ features.T, factors @ factors.mT
    full = rank_min_ratio(contributions, base, sigma=1e-4, budget=3, search="exhaustive")
    result = rank_min_ratio(contributions, base, sigma=1e-4, budget=3, search="exhaustive", top=5)
    assert result.ranking == full.ranking[:5]
    assert full.certificate.evaluated == full.certificate.space_size == 220
    assert result.certificate.evaluated < 50


# greedy and beam


@SEARCH_SETTINGS
@given(problems(), st.sampled_from([("greedy", 1), ("beam", 1), ("beam", 3)]))
def test_greedy_and_beam_never_beat_the_optimum_and_bound_it_from_below(problem, search):
    base, contributions, sigma, space, top = problem
    expected = brute_force(base, contributions, sigma, space)
    name, width = search
    result = rank_min_ratio(contributions, base, sigma=sigma, space=space, search=name, beam_width=width, top=top)
    certificate = result.certificate
    optimum = expected[0][0]
    assert result.ranking[0].ratio >= optimum * (1 - RTOL)
    assert certificate.lower_bound <= optimum * (1 + RTOL)
    assert certificate.gap >= 0 and certificate.best_ratio == result.ranking[0].ratio
    if certificate.optimal:
        assert result.ranking[0].ratio == pytest.approx(optimum, rel=RTOL)
    ratio_of = {subset: ratio for ratio, subset in expected}
    for entry in result.ranking:
        assert entry.ratio == pytest.approx(ratio_of[entry.indices], rel=RTOL)


def test_a_wide_beam_on_a_small_space_finds_the_optimum():
    base, contributions = hard_problem()
    exact = rank_min_ratio(contributions[:8], base, sigma=1e-4, search="exact", budget=3, top=1)
    beam = rank_min_ratio(contributions[:8], base, sigma=1e-4, budget=3, top=1, search="beam", beam_width=100)
    assert beam.ranking == exact.ranking


def test_greedy_in_the_k_dominant_regime_leaves_a_tiny_gap():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(8, 12, generator=generator, dtype=torch.float64) + 1.0
    factors = torch.randn(12, 8, 2, generator=generator, dtype=torch.float64)
    contributions = factors @ factors.mT
    base = 1e3 * features @ features.T
    result = rank_min_ratio(contributions, base, sigma=1e-4, budget=3, top=3, search="greedy")
    assert result.certificate.gap <= 1e-4 * (result.certificate.best_ratio - 1)


# ties and the result


def test_exact_breaks_exact_ties_by_lexicographic_indices():
    e0, e1 = torch.eye(2, dtype=torch.float64)
    small, large = torch.outer(e0, e0), 3.0 * torch.outer(e1, e1)
    contributions = torch.stack([large, small, large, small, small])
    result = rank_min_ratio(
        contributions, torch.zeros(2, 2, dtype=torch.float64), sigma=1.0, search="exact", budget=2, top=4
    )
    assert [entry.indices for entry in result] == [(1, 3), (1, 4), (3, 4), (0, 1)]


def test_budget_is_short_for_a_budget_space():
    _, contributions = hard_problem()
    base = torch.eye(6, dtype=torch.float64)
    assert rank_min_ratio(contributions, base, sigma=1e-2, budget=2, top=7) == rank_min_ratio(
        contributions, base, sigma=1e-2, space=Budget(2), top=7
    )


def test_search_result_is_a_sequence_of_its_ranking():
    base, contributions = hard_problem()
    result = rank_min_ratio(contributions, base, sigma=1e-4, budget=2, top=3)
    assert isinstance(result, SearchResult)
    assert len(result) == 3 and result[0] is result.ranking[0] and list(result) == list(result.ranking)


def test_exact_without_top_ranks_the_whole_space_by_enumeration():
    base, contributions = hard_problem()
    result = rank_min_ratio(contributions[:6], base, sigma=1e-4, search="exact", budget=3)
    assert len(result) == math.comb(6, 3)
    assert result.certificate.search == "exhaustive" and result.certificate.optimal


def test_a_top_larger_than_the_space_returns_the_whole_ranking():
    base, contributions = hard_problem()
    space = Structured(1, [("q", "v"), ("k",)], [0, 0, 0, 1, 1, 1], ["q", "k", "v"] * 2)
    full = rank_min_ratio(contributions[:6], base, sigma=1e-4, space=space, search="exhaustive")
    assert (
        rank_min_ratio(contributions[:6], base, sigma=1e-4, search="exact", space=space, top=50).ranking == full.ranking
    )
    assert len(full) == 4


# errors


def _small() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([torch.eye(3, dtype=torch.float64) * (i + 1) for i in range(4)]), torch.zeros(3, 3)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "give exactly one of budget=k"),
        ({"budget": 2, "space": Budget(2)}, "give exactly one of budget=k"),
        ({"budget": 2, "search": "annealing"}, r"unknown search 'annealing': choose 'auto' or one of \('exact'"),
        ({"budget": 2, "beam_width": 0}, "beam_width=0 must be a positive integer"),
        ({"budget": 2, "max_nodes": 0}, "max_nodes=0 must be a positive integer, or None"),
        ({"budget": 2, "time_limit": -1.0}, "time_limit=-1.0 must be a number of seconds > 0"),
        ({"space": "q,v"}, "is not a search space"),
        ({"space": ParamBudget(10, [1, 2, 3])}, "parameter counts for 3 candidates, but there are 4"),
        ({"space": Budget(5)}, "needs at least 5 candidates"),
    ],
)  # fmt: skip
def test_rank_subsets_refuses_bad_arguments_and_says_what_to_change(kw, message):
    contributions, base = _small()
    with pytest.raises(InvalidConfigError, match=message):
        rank_min_ratio(contributions, base, sigma=1e-4, **kw)


def test_space_errors_from_rank_subsets_are_space_errors():
    contributions, base = _small()
    with pytest.raises(InvalidSpaceError):
        rank_min_ratio(contributions, base, sigma=1e-4, space=Budget(5))


def test_exhaustive_search_of_a_large_space_suggests_branch_and_bound():
    contributions, base = _small()
    with pytest.raises(SearchSpaceTooLargeError, match=r"15 subsets .*max_subsets=10: pass top= with search='exact'"):
        rank_min_ratio(
            contributions, base, sigma=1e-4, space=ParamBudget(10, [1, 2, 3, 4]), max_subsets=10, search="exhaustive"
        )


def test_branch_and_bound_ignores_max_subsets():
    contributions, base = _small()
    result = rank_min_ratio(contributions, base, sigma=1e-4, search="exact", budget=2, top=2, max_subsets=1)
    assert [entry.indices for entry in result] == [(0, 1), (0, 2)]


def test_contributions_and_base_kernel_shapes_must_match():
    contributions, _ = _small()
    with pytest.raises(ValueError, match=r"contributions must be \(L, n, n\) and base_kernel \(n, n\)"):
        rank_min_ratio(contributions, torch.zeros(2, 2), sigma=1e-4, budget=2)


# exact branch and bound of the maximised objectives (max_ratio, max_lambda_max): brute force in every space

MAXIMISED = ("max_ratio", "max_lambda_max")


def brute_force_max(base, contributions, sigma, space, name) -> list[tuple[float, tuple]]:
    """Every admissible subset with its objective value from numpy, best (largest) first, ties by indices."""
    subsets = list(space.subsets(contributions.shape[0]))
    parts = contributions.numpy()
    start = base.numpy() if name == "max_ratio" else np.zeros_like(base.numpy())
    tops = np.linalg.eigvalsh(np.stack([start + sum(parts[i] for i in subset) for subset in subsets]))[:, -1]
    if name == "max_ratio":
        tops = (tops + sigma) / (np.linalg.eigvalsh(base.numpy())[-1] + sigma)
    return sorted(zip(tops.tolist(), subsets, strict=True), key=lambda pair: (-pair[0], pair[1]))


@SEARCH_SETTINGS
@given(problems(), st.sampled_from(MAXIMISED))
def test_exact_branch_and_bound_of_a_maximised_objective_is_the_brute_force_top(problem, name):
    base, contributions, sigma, space, top = problem
    expected = brute_force_max(base, contributions, sigma, space, name)
    result = rank_subsets(contributions, base, sigma=sigma, space=space, search="exact", top=top, objective=name)
    certificate = result.certificate
    assert (certificate.search, certificate.optimal, certificate.gap) == ("exact", True, 0.0)
    assert certificate.objective == name
    assert len(result.ranking) == min(top, len(expected)) == certificate.certified
    value_of = {subset: value for value, subset in expected}
    for entry, (value, _) in zip(result.ranking, expected, strict=False):
        assert entry.score == pytest.approx(value, rel=RTOL, abs=1e-12)
        assert entry.score == pytest.approx(value_of[entry.indices], rel=RTOL, abs=1e-12)
    assert len({entry.indices for entry in result.ranking}) == len(result.ranking)


@SEARCH_SETTINGS
@given(problems(), st.sampled_from(MAXIMISED), st.integers(1, 3))
def test_a_node_limit_on_a_maximised_objective_leaves_a_valid_gap(problem, name, max_nodes):
    base, contributions, sigma, space, top = problem
    optimum = brute_force_max(base, contributions, sigma, space, name)[0][0]
    result = rank_subsets(contributions, base, sigma=sigma, space=space, search="exact", top=top, objective=name,
                          max_nodes=max_nodes)  # fmt: skip
    certificate = result.certificate
    best = result.ranking[0].score
    assert best <= optimum * (1 + RTOL) + 1e-12
    assert best + certificate.gap >= optimum * (1 - RTOL) - 1e-12  # the gap covers what is not yet ruled out
    assert certificate.optimal == (certificate.stopped is None)


def test_a_dominant_head_lets_branch_and_bound_solve_a_huge_maximised_space_exactly():
    """40 candidates, budget 5: C(40, 5) = 658,008 subsets; the 2 x 2 bound along u_K is nearly tight."""
    generator = torch.Generator().manual_seed(3)
    factors = 0.05 * torch.randn(40, 16, 2, generator=generator, dtype=torch.float64)
    features = torch.randn(16, 16, generator=generator, dtype=torch.float64)
    base = 1e3 * features @ features.T / 16
    result = rank_subsets(factors @ factors.mT, base, sigma=1e-4, budget=5, top=10, objective="max_ratio")
    assert result.certificate.optimal and result.certificate.evaluated < 10_000
    beam = rank_subsets(factors @ factors.mT, base, sigma=1e-4, budget=5, search="beam", beam_width=8,
                        objective="max_ratio")  # fmt: skip
    assert result.ranking[0].score >= beam.ranking[0].score


@pytest.mark.parametrize("name", ["min_ratio", *MAXIMISED])
@pytest.mark.parametrize("space", [Budget(3), ParamBudget(6, [1, 2, 3] * 4)])
def test_exact_equals_exhaustive_when_the_head_dwarfs_every_contribution(name, space):
    """K about 1e6 times each S_l, as measured with the new head as K: ratio - 1 is about 1e-7."""
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(8, 8, generator=generator, dtype=torch.float64)
    factors = torch.randn(12, 8, 2, generator=generator, dtype=torch.float64)
    base, contributions = 1e6 * features @ features.T / 8, factors @ factors.mT
    common = {"sigma": 1e-4, "space": space, "top": 5, "objective": name}
    exact = rank_subsets(contributions, base, search="exact", **common)
    exhaustive = rank_subsets(contributions, base, search="exhaustive", **common)
    assert exact.ranking == exhaustive.ranking and exact.certificate.optimal
    assert 0 < abs(exact.ranking[0].ratio - 1) < 1e-5


# asymmetric kernels (Adam's SignGD kernel): every search ranks by the symmetric parts, and stays exact


@SEARCH_SETTINGS
@given(sign_kernel_problems())
@pytest.mark.parametrize("objective", ["min_ratio", "max_ratio"])
def test_exact_search_on_sign_kernels_equals_brute_force_on_their_symmetric_parts(objective, problem):
    """min_ratio's lower bounds need PSD S_l: the search drops them when a symmetric part is indefinite (the
    exhaustive walk or beam then ranks); max_ratio's upper bounds (Weyl, 2 x 2) hold for any symmetric S_l."""
    base, contributions, sigma, space, top = problem
    symmetric = 0.5 * (contributions + contributions.transpose(-1, -2))
    expected = brute_force(0.5 * (base + base.T), symmetric, sigma, space)
    if objective == "max_ratio":
        expected = sorted(expected, key=lambda item: (-item[0], item[1]))
    result = rank_subsets(contributions, base, sigma=sigma, space=space, search="exact", top=top, objective=objective)
    assert_is_brute_force_top(result.ranking, expected, top)


def test_an_indefinite_contribution_is_not_pruned_by_lower_bounds_that_assume_psd():
    """S_0 alone raises lambda_max, S_3 alone barely lowers it, together they cancel K's top: min_ratio's Rayleigh
    and monotonicity bounds would prune {0, 3}, which is the optimum (lambda_max 0.15)."""
    base = torch.diag(torch.tensor([1.0, 0.0], dtype=torch.float64))
    entries = ([[-0.9, 0.0], [0.0, 2.0]], [[-0.05, 0.0], [0.0, 0.0]], [[-0.04, 0.0], [0.0, 0.0]],
               [[0.05, 0.0], [0.0, -2.0]])  # fmt: skip
    contributions = torch.tensor(entries, dtype=torch.float64)
    result = rank_subsets(contributions, base, sigma=1e-4, budget=2, search="exact", top=1, objective="min_ratio")
    assert result.ranking[0].indices == (0, 3)
    assert result.ranking[0].lambda_max == pytest.approx(0.15, rel=1e-12)

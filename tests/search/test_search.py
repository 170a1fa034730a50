"""Exhaustive subset search: budget checks, and a ranking equal to brute force (Algorithm 2, min_ratio)."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from peft_ntk_select.errors import InvalidConfigError, InvalidInputError, SearchSpaceTooLargeError
from peft_ntk_select.search import rank_subsets
from peft_ntk_select.search.spectral import (
    kernel_ridge_risk,
    loo_accuracy,
    regression_targets,
    risk_bounds,
    subset_kernels,
)
from tests.search.strategies import ENTRIES, FAST, SIGMAS, base_kernels, psd_matrices

# Algorithm 2 as printed: these tests rank by the spectral ratio, ascending.
rank = functools.partial(rank_subsets, objective="min_ratio")


@st.composite
def searches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """K (n, n), zero or random PSD; S (L, n, n) random PSD; sigma; budget: n in 2..8, L in 1..6, k in 1..L."""
    n = draw(st.integers(2, 8))
    base = draw(base_kernels(n))
    num_candidates = draw(st.integers(1, 6))
    contributions = torch.stack([draw(psd_matrices(n)) for _ in range(num_candidates)])
    return base, contributions, draw(SIGMAS), draw(st.integers(1, num_candidates))


def brute_force(base: torch.Tensor, contributions: torch.Tensor, sigma: float, budget: int) -> dict:
    """{indices: (ratio, lambda_min, lambda_max)} from numpy eigvalsh, ratio straight from its definition."""
    kernel_base, parts = base.numpy(), contributions.numpy()
    eye = np.eye(kernel_base.shape[0])
    base_top = np.linalg.eigvalsh(kernel_base + sigma * eye)[-1]
    scores = {}
    for subset in itertools.combinations(range(parts.shape[0]), budget):
        kernel = kernel_base + sum(parts[i] for i in subset)
        eigenvalues = np.linalg.eigvalsh(kernel)
        ratio = np.linalg.eigvalsh(kernel + sigma * eye)[-1] / base_top
        scores[subset] = (float(ratio), float(eigenvalues[0]), float(eigenvalues[-1]))
    return scores


def solver_rtol(kernel: torch.Tensor, sigma: float) -> float:
    """1e-10 relative, widened by the rounding n eps lambda_max / sigma that any solver of K + sigma I makes."""
    return 1e-10 + kernel.shape[0] * torch.finfo(torch.float64).eps * float(torch.linalg.eigvalsh(kernel)[-1]) / sigma


def eigen_atol(base: torch.Tensor, contributions: torch.Tensor) -> float:
    """Absolute tolerance for eigenvalues of K + S_C, at the scale of lambda_max(K) + sum_l lambda_max(S_l)."""
    scale = float(torch.linalg.eigvalsh(base)[-1] + torch.linalg.eigvalsh(contributions)[:, -1].sum())
    return 1e-12 * scale + 1e-300


# rank_subsets: the budget


@pytest.mark.parametrize("budget", [0, -1, 5])
def test_rank_subsets_rejects_a_budget_outside_one_to_the_number_of_candidates(budget):
    contributions, base = _small_search()
    with pytest.raises(InvalidConfigError) as error:
        rank(contributions, base, sigma=1e-4, budget=budget)
    message = str(error.value)
    assert f"budget={budget}" in message
    assert "number of candidates (4)" in message
    assert "lower it" in message


@pytest.mark.parametrize("budget", [2.0, "2", True])
def test_rank_subsets_rejects_a_budget_that_is_not_an_int(budget):
    contributions, base = _small_search()
    with pytest.raises(InvalidConfigError, match=r"budget=.* must be an integer"):
        rank(contributions, base, sigma=1e-4, budget=budget)


def test_rank_subsets_accepts_numpy_integer_budgets():
    contributions, base = _small_search()
    assert len(rank(contributions, base, sigma=1e-4, budget=np.int64(2))) == 6


@pytest.mark.parametrize("top", [0, -1, 1.5])
def test_rank_subsets_rejects_a_top_that_is_not_a_positive_integer(top):
    contributions, base = _small_search()
    with pytest.raises(InvalidConfigError, match="top="):
        rank(contributions, base, sigma=1e-4, budget=2, top=top)


# rank_subsets: errors


def _small_search() -> tuple[torch.Tensor, torch.Tensor]:
    contributions = torch.stack([torch.eye(3, dtype=torch.float64) * (i + 1) for i in range(4)])
    return contributions, torch.zeros(3, 3, dtype=torch.float64)


def test_rank_subsets_rejects_more_subsets_than_max_subsets():
    contributions, base = _small_search()
    with pytest.raises(SearchSpaceTooLargeError, match="max_subsets=5"):
        rank(contributions, base, sigma=1e-4, budget=2, max_subsets=5, search="exhaustive")


@pytest.mark.parametrize("sigma", [0.0, -1e-4, float("nan"), float("inf")])
def test_rank_subsets_rejects_a_sigma_that_is_not_positive(sigma):
    contributions, base = _small_search()
    with pytest.raises(InvalidConfigError, match=r"sigma=.* must be a finite number > 0"):
        rank(contributions, base, sigma=sigma, budget=2)


@pytest.mark.parametrize("where", ["contributions", "base_kernel", "targets"])
def test_rank_subsets_refuses_nan_in_the_kernels_or_targets(where):
    contributions, base = _small_search()
    inputs = {"contributions": contributions, "base_kernel": base, "targets": torch.ones(3, 1, dtype=torch.float64)}
    inputs[where] = inputs[where].clone()
    inputs[where].view(-1)[0] = float("nan")
    with pytest.raises(InvalidInputError, match=f"{where} hold nan or inf entries"):
        rank(inputs["contributions"], inputs["base_kernel"], sigma=1e-4, budget=2, targets=inputs["targets"])


def test_rank_subsets_warns_when_sigma_swamps_the_kernels_or_the_best_subsets_tie(caplog):
    contributions, base = _small_search()
    with caplog.at_level("WARNING", logger="peft_ntk_select"):
        rank(contributions, base, sigma=1e12, budget=2)
    assert "sigma=1e+12 swamps every kernel" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="peft_ntk_select"):
        rank(contributions[[0, 0, 0]], base, sigma=1e-4, budget=2)
    assert "the best 3 ranked subsets tie" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="peft_ntk_select"):
        rank(contributions, base, sigma=1e-4, budget=2)
    assert caplog.text == ""


# rank_subsets: the ranking


@FAST
@given(searches())
def test_ranking_scores_every_subset_with_its_brute_force_ratio(search):
    base, contributions, sigma, budget = search
    expected = brute_force(base, contributions, sigma, budget)
    ranking = rank(contributions, base, sigma=sigma, budget=budget)
    assert sorted(entry.indices for entry in ranking) == sorted(expected)
    for entry in ranking:
        assert entry.ratio == pytest.approx(expected[entry.indices][0], rel=1e-12)


@FAST
@given(searches())
def test_ranking_is_in_brute_force_order_with_lexicographic_tie_break(search):
    base, contributions, sigma, budget = search
    expected = brute_force(base, contributions, sigma, budget)
    expected_order = sorted(expected, key=lambda subset: (expected[subset][0], subset))
    ranking = rank(contributions, base, sigma=sigma, budget=budget)
    for entry, subset in zip(ranking, expected_order, strict=True):
        # Orders may differ only inside a near-tie, where rounding decides (exact ties are checked below).
        if entry.indices != subset:
            assert expected[entry.indices][0] == pytest.approx(expected[subset][0], rel=1e-12)
    for first, second in itertools.pairwise(ranking):
        assert (first.ratio, first.indices) < (second.ratio, second.indices)


def test_ranking_breaks_exact_ties_by_lexicographic_indices():
    e0, e1 = torch.eye(2, dtype=torch.float64)
    small, large = torch.outer(e0, e0), 3.0 * torch.outer(e1, e1)
    contributions = torch.stack([large, small, large, small])
    ranking = rank(contributions, torch.zeros(2, 2, dtype=torch.float64), sigma=1.0, budget=1)
    assert [entry.indices for entry in ranking] == [(1,), (3,), (0,), (2,)]
    assert [entry.ratio for entry in ranking] == pytest.approx([2.0, 2.0, 4.0, 4.0], rel=1e-14)


@FAST
@given(searches())
def test_ranking_ratios_are_at_least_one(search):
    base, contributions, sigma, budget = search
    ranking = rank(contributions, base, sigma=sigma, budget=budget)
    assert min(entry.ratio for entry in ranking) >= 1.0 - 1e-12


@FAST
@given(searches())
def test_ranking_reports_lambda_min_and_lambda_max_of_the_subset_kernel(search):
    base, contributions, sigma, budget = search
    expected = brute_force(base, contributions, sigma, budget)
    atol = eigen_atol(base, contributions)
    for entry in rank(contributions, base, sigma=sigma, budget=budget):
        _, lambda_min, lambda_max = expected[entry.indices]
        assert entry.lambda_min == pytest.approx(lambda_min, rel=0, abs=atol)
        assert entry.lambda_max == pytest.approx(lambda_max, rel=0, abs=atol)


@FAST
@given(searches())
def test_ranking_reports_kappa_as_regularised_lambda_max_over_lambda_min(search):
    base, contributions, sigma, budget = search
    for entry in rank(contributions, base, sigma=sigma, budget=budget):
        assert entry.kappa == pytest.approx((entry.lambda_max + sigma) / (entry.lambda_min + sigma), rel=1e-14)


@FAST
@given(searches())
def test_adding_a_candidate_never_lowers_the_ratio(search):
    base, contributions, sigma, budget = search
    assume(contributions.shape[0] >= 2)
    budget = min(budget, contributions.shape[0] - 1)
    smaller = {e.indices: e.ratio for e in rank(contributions, base, sigma=sigma, budget=budget)}
    for entry in rank(contributions, base, sigma=sigma, budget=budget + 1):
        for subset in itertools.combinations(entry.indices, budget):
            assert entry.ratio >= smaller[subset] * (1 - 1e-12)


@FAST
@given(searches(), st.integers(1, 25))
def test_top_keeps_the_best_subsets_of_the_full_ranking(search, top):
    base, contributions, sigma, budget = search
    full = rank(contributions, base, sigma=sigma, budget=budget)
    assert rank(contributions, base, sigma=sigma, budget=budget, top=top).ranking == full.ranking[:top]


@settings(max_examples=30, deadline=None)
@given(searches())
def test_ranking_does_not_depend_on_batch_size(search):
    base, contributions, sigma, budget = search
    one = rank(contributions, base, sigma=sigma, budget=budget, batch_size=1)
    full = rank(contributions, base, sigma=sigma, budget=budget)
    assert [entry.indices for entry in one] == [entry.indices for entry in full]
    assert [entry.ratio for entry in one] == pytest.approx([entry.ratio for entry in full], rel=1e-13)


def test_ranking_without_targets_has_no_risk():
    contributions, base = _small_search()
    for entry in rank(contributions, base, sigma=1e-4, budget=2):
        assert (entry.risk, entry.risk_lower, entry.risk_upper) == (None, None, None)


@FAST
@given(st.data())
def test_ranking_with_targets_reports_the_risk_and_theorem_1_bounds_of_each_subset_kernel(data):
    base, contributions, sigma, budget = data.draw(searches())
    targets = torch.from_numpy(data.draw(arrays(np.float64, (base.shape[0], 2), elements=ENTRIES)))
    for entry in rank(contributions, base, sigma=sigma, budget=budget, targets=targets):
        kernel = base + contributions[list(entry.indices)].sum(0)
        spectrum = torch.tensor([entry.lambda_min, entry.lambda_max], dtype=torch.float64)
        lower, upper = risk_bounds(spectrum[0], spectrum[1], float(targets.pow(2).sum()), sigma)
        rtol = solver_rtol(kernel, sigma)
        assert entry.risk == pytest.approx(float(kernel_ridge_risk(kernel, targets, sigma)), rel=rtol, abs=1e-300)
        assert (entry.risk_lower, entry.risk_upper) == pytest.approx((float(lower), float(upper)), rel=1e-14)
        assert entry.risk * base.shape[0] <= entry.risk_upper * (1 + rtol)


@FAST
@given(st.data())
def test_ranking_with_class_targets_reports_the_leave_one_out_accuracy_of_each_subset_kernel(data):
    base, contributions, sigma, budget = data.draw(searches())
    labels = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=base.shape[0], max_size=base.shape[0])))
    targets = regression_targets(labels, 3, signed=False)
    for entry in rank(contributions, base, sigma=sigma, budget=budget, targets=targets):
        kernel = subset_kernels(base, contributions, torch.tensor([entry.indices]))  # the same rounding
        assert entry.accuracy == float(loo_accuracy(kernel, targets, sigma)[0])


def test_ranking_with_regression_targets_has_no_accuracy():
    contributions, base = _small_search()
    targets = torch.linspace(0.1, 0.9, base.shape[0], dtype=torch.float64).reshape(-1, 1)
    for entry in rank(contributions, base, sigma=1e-2, budget=2, targets=targets):
        assert entry.risk is not None and entry.accuracy is None


def test_ranking_prefers_the_contribution_with_the_smallest_lambda_max():
    base = torch.diag(torch.tensor([2.0, 0.0], dtype=torch.float64))
    e0, e1 = torch.eye(2, dtype=torch.float64)
    contributions = torch.stack([4.0 * torch.outer(e0, e0), 4.0 * torch.outer(e1, e1), torch.outer(e0 + e1, e0 + e1)])
    ranking = rank(contributions, base, sigma=1.0, budget=1)
    # lambda_max(K + S_l) = 6, 4 and 2 + sqrt(2) (K + S_2 = [[3, 1], [1, 1]]); lambda_max(K + I) = 3
    assert [entry.indices for entry in ranking] == [(2,), (1,), (0,)]
    assert [entry.ratio for entry in ranking] == pytest.approx([(3 + math.sqrt(2)) / 3, 5 / 3, 7 / 3], rel=1e-14)

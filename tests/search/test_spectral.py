"""Spectral quantities of K + S_C: extreme eigenvalues, ratio, Weyl bounds, Theorem 1, regression targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from peft_ntk_select.errors import InvalidInputError
from peft_ntk_select.search.spectral import (
    condition_number,
    extreme_eigenvalues,
    kernel_ridge_risk,
    loo_accuracy,
    loo_predictions,
    regression_targets,
    ridge_objective,
    risk_bounds,
    ritz_lower_bounds,
    spectral_ratio,
    subset_kernels,
    target_classes,
)
from tests.search.strategies import ENTRIES, FAST, SIGMAS, psd_matrices


@st.composite
def problems(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """A base kernel K (n, n), zero or random PSD, and contributions S (L, n, n): n in 2..8, L in 1..6."""
    n = draw(st.integers(2, 8))
    base = draw(st.one_of(st.just(torch.zeros(n, n, dtype=torch.float64)), psd_matrices(n)))
    contributions = torch.stack([draw(psd_matrices(n)) for _ in range(draw(st.integers(1, 6)))])
    return base, contributions


@st.composite
def problems_with_subset(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """A problem and a non-empty subset C of its candidate indices (sorted)."""
    base, contributions = draw(problems())
    indices = range(contributions.shape[0])
    subset = sorted(draw(st.sets(st.sampled_from(indices), min_size=1)))
    return base, contributions, subset


@st.composite
def kernels_and_targets(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, float]:
    """A random PSD K (n, n), random targets Y (n, c) with c in 1..3, and sigma in [1e-4, 10]."""
    n = draw(st.integers(2, 8))
    targets = torch.from_numpy(draw(arrays(np.float64, (n, draw(st.integers(1, 3))), elements=ENTRIES)))
    return draw(psd_matrices(n)), targets, draw(SIGMAS)


def top_eigenvalue(matrix: torch.Tensor) -> float:
    return float(torch.linalg.eigvalsh(matrix)[-1])


def solver_rtol(kernel: torch.Tensor, sigma: float) -> float:
    """1e-10 relative, widened by the rounding n eps lambda_max / sigma that any solver of K + sigma I makes.

    Eigenvalues near 0 come out as +-eps lambda_max, which moves sigma / (sigma + lambda) by eps lambda_max / sigma.
    """
    return 1e-10 + kernel.shape[0] * torch.finfo(torch.float64).eps * top_eigenvalue(kernel) / sigma


def tolerance(*matrices: torch.Tensor) -> float:
    """Absolute float tolerance for eigenvalue comparisons at the scale of the given PSD matrices."""
    return 1e-10 * sum(top_eigenvalue(m) for m in matrices) + 1e-300


# extreme_eigenvalues and subset_kernels


@FAST
@given(problems())
def test_extreme_eigenvalues_match_eigvalsh_min_and_max(problem):
    _, contributions = problem
    lambda_min, lambda_max = extreme_eigenvalues(contributions)
    reference = torch.linalg.eigvalsh(contributions)
    assert lambda_min.shape == lambda_max.shape == (contributions.shape[0],)
    assert torch.allclose(lambda_min, reference[:, 0], rtol=0, atol=tolerance(*contributions))
    assert torch.allclose(lambda_max, reference[:, -1], rtol=0, atol=tolerance(*contributions))


def test_extreme_eigenvalues_are_float64_for_float32_kernels():
    kernel = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float32)
    lambda_min, lambda_max = extreme_eigenvalues(kernel)
    assert lambda_min.dtype == lambda_max.dtype == torch.float64
    assert (float(lambda_min), float(lambda_max)) == pytest.approx((1.0, 3.0), rel=1e-12)


def test_extreme_eigenvalues_use_the_symmetric_part_of_the_kernel():
    kernel = torch.tensor([[1.0, 3.0], [1.0, 1.0]], dtype=torch.float64)  # symmetric part [[1, 2], [2, 1]]
    lambda_min, lambda_max = extreme_eigenvalues(kernel)
    assert (float(lambda_min), float(lambda_max)) == pytest.approx((-1.0, 3.0), rel=1e-12)


@FAST
@given(problems_with_subset())
def test_subset_kernel_is_base_plus_the_sum_of_its_contributions(problem):
    base, contributions, subset = problem
    kernel = subset_kernels(base, contributions, torch.tensor([subset]))
    expected = base.clone()
    for index in subset:
        expected += contributions[index]
    assert kernel.shape == (1, *base.shape)
    scale = base.abs().max() + contributions.abs().amax(dim=(1, 2)).sum()
    assert torch.allclose(kernel[0], expected, rtol=0, atol=1e-14 * float(scale))


@FAST
@given(problems_with_subset())
def test_subset_kernels_are_symmetric(problem):
    base, contributions, subset = problem
    kernel = subset_kernels(base, contributions, torch.tensor([subset]))[0]
    assert torch.allclose(kernel, kernel.T, rtol=0, atol=1e-14 * float(kernel.abs().max()))


@FAST
@given(problems_with_subset())
def test_subset_kernels_are_psd(problem):
    base, contributions, subset = problem
    kernel = subset_kernels(base, contributions, torch.tensor([subset]))[0]
    lambda_min, lambda_max = extreme_eigenvalues(kernel)
    assert float(lambda_min) >= -1e-10 * max(float(lambda_max), 1.0)


# Spectral ratio, monotonicity, Weyl bounds


@FAST
@given(problems_with_subset(), SIGMAS)
def test_spectral_ratio_is_at_least_one(problem, sigma):
    base, contributions, subset = problem
    _, base_max = extreme_eigenvalues(base)
    _, subset_max = extreme_eigenvalues(subset_kernels(base, contributions, torch.tensor([subset])))
    ratio = spectral_ratio(subset_max, float(base_max), sigma)
    assert float(ratio) >= 1.0 - 1e-12


def test_spectral_ratio_is_the_definition_with_sigma():
    base = torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))
    subset = torch.diag(torch.tensor([5.0, 1.0], dtype=torch.float64))
    _, base_max = extreme_eigenvalues(base)
    _, subset_max = extreme_eigenvalues(base + subset)
    ratio = spectral_ratio(subset_max, float(base_max), sigma=0.5)
    assert float(ratio) == pytest.approx((6.0 + 0.5) / (3.0 + 0.5), rel=1e-14)


@FAST
@given(st.data())
def test_adding_a_candidate_never_lowers_lambda_max(data):
    base, contributions = data.draw(problems())
    num_candidates = contributions.shape[0]
    added = data.draw(st.integers(0, num_candidates - 1))
    others = [index for index in range(num_candidates) if index != added]
    subset = sorted(data.draw(st.sets(st.sampled_from(others))) if others else set())
    _, before = extreme_eigenvalues(subset_kernels(base, contributions, torch.tensor([subset], dtype=torch.long)))
    _, after = extreme_eigenvalues(subset_kernels(base, contributions, torch.tensor([sorted([*subset, added])])))
    assert float(after) >= float(before) - tolerance(base, *contributions)


@FAST
@given(problems_with_subset())
def test_weyl_lower_bound_each_member_bounds_the_subset_lambda_max(problem):
    base, contributions, subset = problem
    _, subset_max = extreme_eigenvalues(subset_kernels(base, contributions, torch.tensor([subset])))
    _, member_max = extreme_eigenvalues(subset_kernels(base, contributions, torch.tensor([[i] for i in subset])))
    assert float(member_max.max()) <= float(subset_max) + tolerance(base, *contributions)


@FAST
@given(problems_with_subset())
def test_weyl_upper_bound_subset_lambda_max_is_at_most_the_sum_of_lambda_max(problem):
    base, contributions, subset = problem
    _, subset_max = extreme_eigenvalues(subset_kernels(base, contributions, torch.tensor([subset])))
    _, base_max = extreme_eigenvalues(base)
    _, contribution_max = extreme_eigenvalues(contributions[subset])
    bound = float(base_max) + float(contribution_max.sum())
    assert float(subset_max) <= bound + tolerance(base, *contributions)


def test_weyl_bounds_are_attained_by_aligned_and_orthogonal_contributions():
    e0, e1 = torch.eye(2, dtype=torch.float64)
    base = torch.zeros(2, 2, dtype=torch.float64)
    aligned = torch.stack([torch.outer(e0, e0), 2.0 * torch.outer(e0, e0)])
    orthogonal = torch.stack([torch.outer(e0, e0), 2.0 * torch.outer(e1, e1)])
    _, aligned_max = extreme_eigenvalues(subset_kernels(base, aligned, torch.tensor([[0, 1]])))
    _, orthogonal_max = extreme_eigenvalues(subset_kernels(base, orthogonal, torch.tensor([[0, 1]])))
    assert float(aligned_max) == pytest.approx(3.0, rel=1e-14)  # upper bound lambda_max(S_0) + lambda_max(S_1)
    assert float(orthogonal_max) == pytest.approx(2.0, rel=1e-14)  # lower bound max_l lambda_max(S_l)


@FAST
@given(problems_with_subset())
def test_ritz_lower_bound_is_at_most_the_subset_lambda_max(problem):
    base, contributions, subset = problem
    rows = torch.tensor([subset])
    _, subset_max = extreme_eigenvalues(subset_kernels(base, contributions, rows))
    bound = ritz_lower_bounds(base, contributions, rows)
    assert bound.shape == (1,)
    assert float(bound) <= float(subset_max) + tolerance(base, *contributions)


@FAST
@given(problems_with_subset())
def test_ritz_lower_bound_is_exact_when_every_kernel_lives_on_two_directions(problem):
    base, contributions, subset = problem
    n = base.shape[0]
    plane = torch.zeros(n, n, dtype=torch.float64)
    plane[:2, :2] = 1.0
    base, contributions = base * plane, contributions * plane  # PSD blocks on the first two coordinates
    rows = torch.tensor([subset])
    _, subset_max = extreme_eigenvalues(subset_kernels(base, contributions, rows))
    bound = float(ritz_lower_bounds(base, contributions, rows))
    assert bound == pytest.approx(float(subset_max), rel=1e-9, abs=tolerance(base, *contributions))


def test_ritz_lower_bound_of_one_sample_is_the_kernel_itself():
    base, contributions = torch.tensor([[2.0]]), torch.tensor([[[1.0]], [[3.0]], [[5.0]]])
    assert ritz_lower_bounds(base, contributions, torch.tensor([[0, 2], [1, 2]])).tolist() == [8.0, 10.0]


# Condition number and Theorem 1


def test_condition_number_is_regularised_max_over_min():
    kappa = condition_number(torch.tensor([0.0, 1.0]), torch.tensor([4.0, 9.0]), sigma=1.0)
    assert kappa.tolist() == pytest.approx([5.0, 5.0], rel=1e-15)


@FAST
@given(kernels_and_targets())
def test_ridge_objective_lies_within_theorem_1_bounds(problem):
    kernel, targets, sigma = problem
    lambda_min, lambda_max = extreme_eigenvalues(kernel)
    lower, upper = risk_bounds(lambda_min, lambda_max, float(targets.pow(2).sum()), sigma)
    objective = float(ridge_objective(kernel, targets, sigma))
    rtol = solver_rtol(kernel, sigma)
    assert float(lower) * (1 - rtol) <= objective <= float(upper) * (1 + rtol)


@FAST
@given(kernels_and_targets())
def test_ridge_objective_equals_sigma_trace_of_the_resolvent_quadratic_form(problem):
    kernel, targets, sigma = problem
    eye = torch.eye(kernel.shape[0], dtype=torch.float64)
    direct = float(sigma * torch.trace(targets.T @ torch.linalg.solve(kernel + sigma * eye, targets)))
    assert float(ridge_objective(kernel, targets, sigma)) == pytest.approx(direct, rel=solver_rtol(kernel, sigma))


@FAST
@given(kernels_and_targets())
def test_kernel_ridge_risk_times_n_is_at_most_the_upper_bound(problem):
    kernel, targets, sigma = problem
    lambda_min, lambda_max = extreme_eigenvalues(kernel)
    _, upper = risk_bounds(lambda_min, lambda_max, float(targets.pow(2).sum()), sigma)
    risk = float(kernel_ridge_risk(kernel, targets, sigma))
    assert risk * kernel.shape[0] <= float(upper) * (1 + solver_rtol(kernel, sigma))


@FAST
@given(kernels_and_targets())
def test_kernel_ridge_risk_times_n_lies_within_the_squared_bounds(problem):
    kernel, targets, sigma = problem
    lambda_min, lambda_max = extreme_eigenvalues(kernel)
    energy = float(targets.pow(2).sum())
    risk_n = float(kernel_ridge_risk(kernel, targets, sigma)) * kernel.shape[0]
    lower = sigma**2 * energy / (sigma + float(lambda_max)) ** 2
    upper = sigma**2 * energy / (sigma + float(lambda_min)) ** 2
    rtol = 2 * solver_rtol(kernel, sigma)  # squared factors: twice the relative rounding
    assert lower * (1 - rtol) <= risk_n <= upper * (1 + rtol)


@FAST
@given(kernels_and_targets())
def test_kernel_ridge_risk_equals_a_direct_solve(problem):
    kernel, targets, sigma = problem
    n = kernel.shape[0]
    residual = sigma * torch.linalg.solve(kernel + sigma * torch.eye(n, dtype=torch.float64), targets)
    direct = float(residual.pow(2).sum()) / n
    assert float(kernel_ridge_risk(kernel, targets, sigma)) == pytest.approx(direct, rel=solver_rtol(kernel, sigma))


@FAST
@given(kernels_and_targets())
def test_kernel_ridge_risk_is_the_training_residual_of_kernel_ridge_regression(problem):
    kernel, targets, sigma = problem
    n = kernel.shape[0]
    fitted = kernel @ torch.linalg.solve(kernel + sigma * torch.eye(n, dtype=torch.float64), targets)
    direct = float((targets - fitted).pow(2).sum()) / n
    risk = float(kernel_ridge_risk(kernel, targets, sigma))
    rtol = solver_rtol(kernel, sigma)
    assert risk == pytest.approx(direct, rel=rtol, abs=rtol * float(targets.pow(2).sum()) / n)


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_kernel_ridge_risk_of_a_batch_is_the_risk_of_each_kernel(data):
    kernel, targets, sigma = data.draw(kernels_and_targets())
    other = data.draw(psd_matrices(kernel.shape[0]))
    batched = kernel_ridge_risk(torch.stack([kernel, other]), targets, sigma)
    single = [float(kernel_ridge_risk(k, targets, sigma)) for k in (kernel, other)]
    assert batched.shape == (2,)
    assert batched.tolist() == pytest.approx(single, rel=1e-12, abs=1e-300)


def test_kernel_ridge_risk_of_a_zero_kernel_is_the_mean_squared_target():
    targets = torch.tensor([[1.0], [-2.0], [3.0]], dtype=torch.float64)
    risk = kernel_ridge_risk(torch.zeros(3, 3, dtype=torch.float64), targets, sigma=0.3)
    assert float(risk) == pytest.approx(14.0 / 3.0, rel=1e-14)


# regression_targets


def test_integer_labels_become_one_hot_rows():
    targets = regression_targets(torch.tensor([0, 2, 1, 2]), 3, signed=False)
    expected = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    assert targets.dtype == torch.float64
    assert torch.equal(targets, expected)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 5).flatmap(lambda c: st.tuples(st.just(c), st.lists(st.integers(0, c - 1), min_size=1))))
def test_one_hot_targets_have_one_column_per_output_and_a_one_at_the_label(case):
    num_outputs, labels = case
    targets = regression_targets(torch.tensor(labels), num_outputs, signed=False)
    assert targets.shape == (len(labels), num_outputs)
    assert targets.sum(dim=1).tolist() == [1.0] * len(labels)
    assert targets.argmax(dim=1).tolist() == labels


def test_signed_labels_become_one_plus_minus_one_column():
    targets = regression_targets(torch.tensor([0, 1, 1, 0]), 2, signed=True)
    assert targets.dtype == torch.float64
    assert torch.equal(targets, torch.tensor([[-1.0], [1.0], [1.0], [-1.0]], dtype=torch.float64))


def test_float_labels_become_one_float_column():
    labels = torch.tensor([0.5, -1.25, 3.0], dtype=torch.float32)
    targets = regression_targets(labels, 3, signed=False)
    assert targets.dtype == torch.float64
    assert torch.equal(targets, torch.tensor([[0.5], [-1.25], [3.0]], dtype=torch.float64))


def test_integer_labels_with_one_output_become_one_float_column():
    targets = regression_targets(torch.tensor([3, 0, 7]), 1, signed=False)
    assert torch.equal(targets, torch.tensor([[3.0], [0.0], [7.0]], dtype=torch.float64))


@pytest.mark.parametrize(
    ("labels", "signed"),
    [([0, -100], False), ([0, 2], False), ([-1, 1], True), ([0, 2], True)],
)
def test_class_labels_out_of_range_are_refused(labels, signed):
    with pytest.raises(InvalidInputError, match="class labels must be integers"):
        regression_targets(torch.tensor(labels), 2, signed=signed)


# Leave-one-out kernel regression


@FAST
@given(kernels_and_targets())
def test_loo_predictions_equal_kernel_ridge_refitted_without_each_sample(data):
    kernel, targets, sigma = data
    n = kernel.shape[0]
    predictions = loo_predictions(kernel, targets, sigma)
    for i in range(n):
        rest = [j for j in range(n) if j != i]
        coefficients = torch.linalg.solve(
            kernel[rest][:, rest] + sigma * torch.eye(n - 1, dtype=torch.float64), targets[rest]
        )
        direct = kernel[i, rest] @ coefficients
        scale = float(targets.abs().max()) * (1 + top_eigenvalue(kernel) / sigma)
        assert torch.allclose(predictions[i], direct, rtol=0, atol=1e-7 * scale)


def test_loo_accuracy_is_one_when_the_kernel_is_the_label_similarity():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    targets = regression_targets(labels, 3, signed=False)
    assert float(loo_accuracy(targets @ targets.T, targets, sigma=1e-3)) == 1.0


def test_loo_accuracy_of_a_zero_kernel_predicts_nothing():
    targets = regression_targets(torch.tensor([0, 1, 0, 1]), 2, signed=True)  # +-1 column
    accuracy = loo_accuracy(torch.zeros(4, 4, dtype=torch.float64), targets, sigma=1.0)
    assert float(accuracy) == 0.5  # K = 0: every prediction is Y_i - Y_i = 0, read as class 0


def test_loo_accuracy_of_a_batch_is_the_accuracy_of_each_kernel():
    targets = regression_targets(torch.tensor([0, 1, 1, 0, 1]), 2, signed=False)
    generator = torch.Generator().manual_seed(0)
    factors = torch.randn(3, 5, 5, generator=generator, dtype=torch.float64)
    kernels = factors @ factors.mT
    batched = loo_accuracy(kernels, targets, sigma=0.1)
    assert batched.tolist() == [float(loo_accuracy(k, targets, sigma=0.1)) for k in kernels]


def test_target_classes_reads_one_hot_rows_and_signs_and_refuses_regression_values():
    assert target_classes(regression_targets(torch.tensor([2, 0, 1]), 3, signed=False)).tolist() == [2, 0, 1]
    assert target_classes(regression_targets(torch.tensor([1, 0, 1]), 2, signed=True)).tolist() == [1, 0, 1]
    assert target_classes(torch.tensor([[0.3], [1.0]], dtype=torch.float64)) is None
    with pytest.raises(InvalidInputError, match="class targets"):
        loo_accuracy(torch.eye(2, dtype=torch.float64), torch.tensor([[0.3], [1.0]], dtype=torch.float64), 1.0)

"""Scoring given subsets: the spectrum of K + S_C, the ratio, kappa, risk, bounds and kernel-regression accuracy."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..errors import InvalidConfigError
from .spectral import (
    condition_number,
    eigen,
    extreme_eigenvalues,
    kernel_ridge_risk,
    loo_accuracy,
    risk_bounds,
    spectral_ratio,
    subset_kernels,
    target_classes,
)

if TYPE_CHECKING:
    from .objectives import Objective


@dataclass(frozen=True)
class ScoredSubset:
    """One subset C of candidate indices with the spectrum of K + S_C.

    ``lambda_min``/``lambda_max`` are eigenvalues of K + S_C; ``ratio`` and ``kappa`` include sigma.
    ``risk``, ``risk_lower``, ``risk_upper``: kernel-ridge training risk and Theorem 1 bounds, with labels;
    ``accuracy``: leave-one-out kernel-regression accuracy on the samples, with class labels;
    ``score``: the value of the objective the subset was ranked by (``objectives.py``), when ranked.
    """

    indices: tuple[int, ...]
    ratio: float
    lambda_max: float
    lambda_min: float
    kappa: float
    risk: float | None = None
    risk_lower: float | None = None
    risk_upper: float | None = None
    accuracy: float | None = None
    score: float | None = None


def check_sigma(sigma: object) -> float:
    """Validate sigma (finite, > 0) and return it as a float."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (math.isfinite(sigma) and sigma > 0):
        raise InvalidConfigError(f"sigma={sigma!r} must be a finite number > 0 (the paper uses 1e-4)")
    return float(sigma)


def score_subsets(
    contributions: torch.Tensor,
    base_kernel: torch.Tensor,
    subsets: torch.Tensor,
    *,
    sigma: float,
    targets: torch.Tensor | None = None,
    batch_size: int = 4096,
) -> list[ScoredSubset]:
    """Score given subsets, in their order: S (L, n, n), K (n, n), subsets (m, k) candidate indices."""
    return _scores(contributions, base_kernel, subsets, check_sigma(sigma), targets, batch_size)


def _scores(
    contributions: torch.Tensor,
    base_kernel: torch.Tensor,
    subsets: torch.Tensor,
    sigma: float,
    targets: torch.Tensor | None,
    batch_size: int,
) -> list[ScoredSubset]:
    """``score_subsets`` for a validated sigma (the searches validate it once, in ``rank_subsets``)."""
    _, base_max = extreme_eigenvalues(base_kernel)
    classes = targets is not None and target_classes(targets) is not None
    lambda_min, lambda_max, risk, accuracy = [], [], [], []
    for start in range(0, subsets.shape[0], batch_size):
        kernels = subset_kernels(base_kernel, contributions, subsets[start : start + batch_size])
        low, high = extreme_eigenvalues(kernels)  # as every objective computes them: one subset, one value
        lambda_min.append(low)
        lambda_max.append(high)
        if targets is not None:  # one eigendecomposition serves the risk and the leave-one-out accuracy
            spectrum = eigen(kernels)
            risk.append(kernel_ridge_risk(kernels, targets, sigma, spectrum=spectrum))
            if classes:
                accuracy.append(loo_accuracy(kernels, targets, sigma, spectrum=spectrum))
    low, high = torch.cat(lambda_min), torch.cat(lambda_max)
    ratio = spectral_ratio(high, float(base_max), sigma)
    kappa = condition_number(low, high, sigma)
    missing = [None] * len(low)
    bounds: tuple[list[float | None], ...] = (missing, missing, missing, missing)
    if targets is not None:
        lower, upper = risk_bounds(low, high, float(targets.double().pow(2).sum()), sigma)
        bounds = (
            torch.cat(risk).tolist(),
            lower.tolist(),
            upper.tolist(),
            torch.cat(accuracy).tolist() if classes else missing,
        )
    columns = zip(ratio.tolist(), high.tolist(), low.tolist(), kappa.tolist(), *bounds, strict=True)
    return [ScoredSubset(tuple(row), *values) for row, values in zip(subsets.tolist(), columns, strict=True)]


def by_size(subsets: Sequence[tuple[int, ...]]) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Subsets of any sizes grouped by size, as (positions in ``subsets``, index rows (m, size)).

    The batched scorers take one size per call.
    """
    groups: dict[int, list[int]] = {}
    for position, subset in enumerate(subsets):
        groups.setdefault(len(subset), []).append(position)
    for size, positions in groups.items():
        yield positions, torch.tensor([subsets[p] for p in positions], dtype=torch.long).reshape(len(positions), size)


def score_list(
    contributions: torch.Tensor,
    base_kernel: torch.Tensor,
    subsets: Sequence[tuple[int, ...]],
    sigma: float,
    targets: torch.Tensor | None,
    batch_size: int,
) -> list[ScoredSubset]:
    """``score_subsets`` for subsets of any sizes, in their order."""
    scored: list[ScoredSubset | None] = [None] * len(subsets)
    for positions, rows in by_size(subsets):
        entries = _scores(contributions, base_kernel, rows, sigma, targets, batch_size)
        for position, entry in zip(positions, entries, strict=True):
            scored[position] = entry
    return scored  # type: ignore[return-value]


def objective_values(
    contributions: torch.Tensor,
    base_kernel: torch.Tensor,
    subsets: Sequence[tuple[int, ...]],
    objective: Objective,
    *,
    sigma: float,
    targets: torch.Tensor | None = None,
    batch_size: int = 512,
) -> torch.Tensor:
    """The objective's value (m,) float64 for subsets of any sizes, in their order: S (L, n, n), K (n, n)."""
    values = torch.empty(len(subsets), dtype=torch.float64)
    base_max = float(extreme_eigenvalues(base_kernel)[1])
    zero = torch.zeros_like(base_kernel, dtype=torch.float64)
    for positions, rows in by_size(subsets):
        for start in range(0, rows.shape[0], batch_size):
            batch = rows[start : start + batch_size]
            kernels = subset_kernels(base_kernel, contributions, batch)
            parts = subset_kernels(zero, contributions, batch) if objective.uses_parts else kernels
            value = objective.value(kernels, parts, targets, sigma, base_max)
            values[torch.tensor(positions[start : start + batch_size])] = value
    return values

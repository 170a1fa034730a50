"""Search over admissible subsets: every subset of exactly ``budget`` candidates, scored in batches."""

from __future__ import annotations

import itertools
import math
import operator
from dataclasses import dataclass

import torch

from .errors import InvalidConfigError, SearchSpaceTooLargeError
from .spectral import (
    condition_number,
    extreme_eigenvalues,
    kernel_ridge_risk,
    risk_bounds,
    spectral_ratio,
    subset_kernels,
)

DEFAULT_MAX_SUBSETS = 200_000


@dataclass(frozen=True)
class ScoredSubset:
    """One subset C of candidate indices with the spectrum of K + S_C.

    ``lambda_min``/``lambda_max`` are eigenvalues of K + S_C; ``ratio`` and ``kappa`` include sigma.
    ``risk``, ``risk_lower``, ``risk_upper``: kernel-ridge training risk and Theorem 1 bounds, with labels.
    """

    indices: tuple[int, ...]
    ratio: float
    lambda_max: float
    lambda_min: float
    kappa: float
    risk: float | None = None
    risk_lower: float | None = None
    risk_upper: float | None = None


def enumerate_subsets(num_candidates: int, budget: int) -> torch.Tensor:
    """All subsets of ``budget`` indices out of ``num_candidates``, lexicographic: (C(L, k), k) int64."""
    combos = list(itertools.combinations(range(num_candidates), budget))
    return torch.tensor(combos, dtype=torch.long).reshape(len(combos), budget)


def _is_integer(value: object) -> bool:
    """True for ints and numpy integers, False for bools, floats and everything else."""
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def check_sigma(sigma: object) -> float:
    """Validate sigma (finite, > 0) and return it as a float."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (math.isfinite(sigma) and sigma > 0):
        raise InvalidConfigError(f"sigma={sigma!r} must be a finite number > 0 (the paper uses 1e-4)")
    return float(sigma)


def check_budget(num_candidates: int, budget: int, max_subsets: int = DEFAULT_MAX_SUBSETS) -> int:
    """Validate the budget; return the number of subsets exhaustive search would score."""
    if not _is_integer(budget) or not 1 <= budget <= num_candidates:
        raise InvalidConfigError(
            f"budget={budget!r} must be an integer between 1 and the number of candidates ({num_candidates}): "
            "lower it, or widen the candidates (kinds=, layers=, modules=)"
        )
    budget = operator.index(budget)
    count = math.comb(num_candidates, budget)
    if count > max_subsets:
        raise SearchSpaceTooLargeError(
            f"exhaustive search would score C({num_candidates}, {budget}) = {count:,} subsets, more than "
            f"max_subsets={max_subsets:,}: use a smaller budget, fewer candidates (kinds=('q', 'v'), "
            "layers=[...]), or raise max_subsets"
        )
    return count


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
    sigma = check_sigma(sigma)
    _, base_max = extreme_eigenvalues(base_kernel)
    lambda_min, lambda_max, risk = [], [], []
    for start in range(0, subsets.shape[0], batch_size):
        kernels = subset_kernels(base_kernel, contributions, subsets[start : start + batch_size])
        low, high = extreme_eigenvalues(kernels)
        lambda_min.append(low)
        lambda_max.append(high)
        if targets is not None:
            risk.append(kernel_ridge_risk(kernels, targets, sigma))
    low, high = torch.cat(lambda_min), torch.cat(lambda_max)
    ratio = spectral_ratio(high, float(base_max), sigma)
    kappa = condition_number(low, high, sigma)
    bounds: tuple[list[float | None], ...] = ([None] * len(low),) * 3
    if targets is not None:
        lower, upper = risk_bounds(low, high, float(targets.double().pow(2).sum()), sigma)
        bounds = (torch.cat(risk).tolist(), lower.tolist(), upper.tolist())
    return [
        ScoredSubset(tuple(row), float(ratio[i]), float(high[i]), float(low[i]), float(kappa[i]),
                     bounds[0][i], bounds[1][i], bounds[2][i])
        for i, row in enumerate(subsets.tolist())
    ]  # fmt: skip


def rank_subsets(
    contributions: torch.Tensor,
    base_kernel: torch.Tensor,
    *,
    sigma: float,
    budget: int,
    targets: torch.Tensor | None = None,
    top: int | None = None,
    max_subsets: int = DEFAULT_MAX_SUBSETS,
    batch_size: int = 4096,
) -> list[ScoredSubset]:
    """Score every subset of ``budget`` candidates and rank by spectral ratio, ascending (Algorithm 2).

    Args:
        contributions: S (L, n, n); base_kernel: K (n, n).
        sigma: ridge strength, > 0.
        targets: Y (n, c) for the risk and its bounds, or None.
        top: keep only the best ``top`` subsets (all when None).

    Ties in the ratio keep lexicographic order of the indices, so the ranking is deterministic.
    """
    sigma = check_sigma(sigma)
    if top is not None and (not _is_integer(top) or top < 1):
        raise InvalidConfigError(f"top={top!r} must be a positive integer, or None for the whole ranking")
    check_budget(contributions.shape[0], budget, max_subsets)
    subsets = enumerate_subsets(contributions.shape[0], operator.index(budget))
    scored = score_subsets(contributions, base_kernel, subsets, sigma=sigma, targets=targets, batch_size=batch_size)
    ratio = torch.tensor([entry.ratio for entry in scored], dtype=torch.float64)
    return [scored[i] for i in torch.sort(ratio, stable=True).indices[:top].tolist()]

"""Spectral quantities of kernels, batched, in float64 (docs/science.md sections 2-3).

Conventions: ``lambda_min``/``lambda_max`` are eigenvalues of the kernel itself (K + S_C, no sigma);
sigma enters the ratio, the condition number and the risk through K + S_C + sigma I.

Theorem 1 normalisation: with targets Y (n, c) the bounds are stated as in the paper, without 1/n,

    sigma ||Y||^2 / (sigma + lambda_max)  <=  sigma tr(Y^T (K + sigma I)^-1 Y)  <=  sigma ||Y||^2 / (sigma + lambda_min)

and they bracket exactly the kernel-ridge objective in the middle (``ridge_objective``). The training
risk of the kernel-ridge solution, R = (1/n) ||sigma (K + sigma I)^-1 Y||^2 (``kernel_ridge_risk``),
satisfies n R <= the upper bound; its own tight bounds are the squares sigma^2 ||Y||^2 / (sigma + lambda)^2.
"""

from __future__ import annotations

import torch

from ..errors import InvalidInputError


def symmetric(matrices: torch.Tensor) -> torch.Tensor:
    """(A + A^T) / 2 over the last two dimensions."""
    return 0.5 * (matrices + matrices.transpose(-1, -2))


def _even(kernels: torch.Tensor) -> torch.Tensor:
    """Symmetric float64 kernels (..., n, n), padded to even n by an isolated diagonal entry below the spectrum.

    LAPACK (MKL) takes SIMD paths that depend on each matrix's alignment in the batch, so for odd n the same
    matrix can get eigenvalues differing in the last bits with its position. With n even, every matrix of a
    batch starts 32-byte aligned, and one subset scores the same in any batch. The extra eigenvalue,
    -(1 + n max|a_ij|), lies below every eigenvalue of the kernel (|lambda| <= n max|a_ij|): it comes first.
    """
    kernels = symmetric(kernels.double())
    n = kernels.shape[-1]
    if n % 2 == 0:
        return kernels
    padded = kernels.new_zeros(*kernels.shape[:-2], n + 1, n + 1)
    padded[..., 1:, 1:] = kernels
    padded[..., 0, 0] = -(1.0 + n * kernels.abs().amax(dim=(-1, -2)))
    return padded


def eigenvalues(kernels: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (..., n), ascending, of symmetric kernels (..., n, n), float64; the same in any batch."""
    values = torch.linalg.eigvalsh(_even(kernels))
    return values[..., values.shape[-1] - kernels.shape[-1] :]


def extreme_eigenvalues(kernels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lambda_min, lambda_max) of symmetric kernels (..., n, n), each of shape (...), float64."""
    values = eigenvalues(kernels)
    return values[..., 0], values[..., -1]


def subset_kernels(base_kernel: torch.Tensor, contributions: torch.Tensor, subsets: torch.Tensor) -> torch.Tensor:
    """K + S_C for each subset: K (n, n), S (L, n, n), subsets (m, k) indices -> (m, n, n) float64."""
    parts = contributions.double()
    kernels = base_kernel.double().expand(subsets.shape[0], *base_kernel.shape).clone()
    for column in range(subsets.shape[1]):  # one candidate at a time: no (m, k, n, n) intermediate
        kernels += parts[subsets[:, column]]
    return kernels


def all_psd(contributions: torch.Tensor, tolerance: float = 1e-9) -> bool:
    """True when the symmetric part of every S_l (L, n, n) is PSD: no eigenvalue below -``tolerance`` times the
    largest eigenvalue magnitude among them (rounding in a PSD kernel stays far inside)."""
    if contributions.shape[0] == 0:
        return True
    low, high = extreme_eigenvalues(contributions)
    scale = float(torch.maximum(low.abs(), high.abs()).max())
    return bool((low >= -tolerance * scale).all())


def ritz_lower_bounds(base_kernel: torch.Tensor, contributions: torch.Tensor, subsets: torch.Tensor) -> torch.Tensor:
    """Lower bounds (m,) on lambda_max(K + S_C) for subsets (m, k), from one subspace shared by all.

    Cauchy interlacing: lambda_max(V^T (K + S_C) V) <= lambda_max(K + S_C) for orthonormal V (n, p). V spans
    the top two eigenvectors of K + k mean_l S_l, a typical subset's kernel, so each bound is a sum of
    2 x 2 blocks and a closed-form eigenvalue. Tight when K dominates every S_l (the classifier head);
    loose when the S_l point in unrelated directions.
    """
    base, parts = symmetric(base_kernel.double()), symmetric(contributions.double())
    typical = base + subsets.shape[1] * parts.mean(0)
    basis = eigen(typical)[1][:, -2:]  # (n, p), p = min(2, n)
    projected = basis.T @ base @ basis + (basis.T @ parts @ basis)[subsets].sum(1)  # (m, p, p)
    if basis.shape[1] == 1:
        return projected[:, 0, 0]
    first, second, off = projected[:, 0, 0], projected[:, 1, 1], projected[:, 0, 1]
    return 0.5 * (first + second) + torch.hypot(0.5 * (first - second), off)


def spectral_ratio(lambda_max_subset: torch.Tensor, lambda_max_base: float, sigma: float) -> torch.Tensor:
    """r_C = lambda_max(K + S_C + sigma I) / lambda_max(K + sigma I), from lambda_max(K + S_C) (m,)."""
    return (lambda_max_subset + sigma) / (lambda_max_base + sigma)


def condition_number(lambda_min: torch.Tensor, lambda_max: torch.Tensor, sigma: float) -> torch.Tensor:
    """kappa(K + sigma I) = (lambda_max + sigma) / (lambda_min + sigma)."""
    return (lambda_max + sigma) / (lambda_min + sigma)


def risk_bounds(
    lambda_min: torch.Tensor, lambda_max: torch.Tensor, targets_norm_sq: float, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Theorem 1 as stated: (sigma ||Y||^2 / (sigma + lambda_max), sigma ||Y||^2 / (sigma + lambda_min))."""
    return sigma * targets_norm_sq / (sigma + lambda_max), sigma * targets_norm_sq / (sigma + lambda_min)


def eigen(kernels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (..., n), ascending, and eigenvectors (..., n, n) of symmetric kernels, float64; the same in
    any batch."""
    values, vectors = torch.linalg.eigh(_even(kernels))
    extra = values.shape[-1] - kernels.shape[-1]  # the padding's eigenvector is e_0; the others are 0 there
    return values[..., extra:], vectors[..., extra:, extra:]


def _energy(eigenvectors: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared target energy along each eigenvector (..., n), targets Y (n, c)."""
    return (eigenvectors.transpose(-1, -2) @ targets.double()).pow(2).sum(-1)


def ridge_objective(kernels: torch.Tensor, targets: torch.Tensor, sigma: float) -> torch.Tensor:
    """sigma tr(Y^T (K + sigma I)^-1 Y) for kernels (..., n, n), targets Y (n, c): shape (...)."""
    eigenvalues, eigenvectors = eigen(kernels)
    return (sigma / (sigma + eigenvalues) * _energy(eigenvectors, targets)).sum(-1)


def kernel_ridge_risk(
    kernels: torch.Tensor, targets: torch.Tensor, sigma: float, *, spectrum: tuple[torch.Tensor, ...] | None = None
) -> torch.Tensor:
    """Training risk (1/n) ||Y - K (K + sigma I)^-1 Y||^2 = (1/n) ||sigma (K + sigma I)^-1 Y||^2: shape (...).

    ``spectrum``: ``eigen(kernels)`` when already computed."""
    eigenvalues, eigenvectors = eigen(kernels) if spectrum is None else spectrum
    n = kernels.shape[-1]
    return ((sigma / (sigma + eigenvalues)).pow(2) * _energy(eigenvectors, targets)).sum(-1) / n


def target_classes(targets: torch.Tensor) -> torch.Tensor | None:
    """Class of each sample (n,) from targets Y (n, c): the argmax of one-hot rows, the sign of a +-1 column;
    None for regression targets (one float column that is not +-1)."""
    if targets.shape[1] > 1:
        return targets.argmax(1)
    column = targets[:, 0]
    return (column > 0).long() if bool((column.abs() == 1).all()) else None


def loo_predictions(
    kernels: torch.Tensor, targets: torch.Tensor, sigma: float, *, spectrum: tuple[torch.Tensor, ...] | None = None
) -> torch.Tensor:
    """Leave-one-out predictions of kernel ridge regression (..., n, c) for kernels (..., n, n), targets Y (n, c).

    Sample i is predicted from the other n - 1 in closed form: Y_i - (G Y)_i / G_ii, G = (K + sigma I)^-1.
    ``spectrum``: ``eigen(kernels)`` when already computed.
    """
    eigenvalues, eigenvectors = eigen(kernels) if spectrum is None else spectrum
    inverse = (eigenvectors / (eigenvalues + sigma).unsqueeze(-2)) @ eigenvectors.transpose(-1, -2)
    y = targets.double()
    return y - (inverse @ y) / inverse.diagonal(dim1=-2, dim2=-1).unsqueeze(-1)


def loo_accuracy(
    kernels: torch.Tensor, targets: torch.Tensor, sigma: float, *, spectrum: tuple[torch.Tensor, ...] | None = None
) -> torch.Tensor:
    """Leave-one-out accuracy of kernel ridge regression on the samples: shape (...).

    A no-training estimate of how well the kernel's linearised model generalises (Malladi et al. 2023):
    a prediction is right when its argmax (its sign, for one +-1 column) is the sample's class. Targets
    must be classes (``target_classes`` not None).
    """
    classes = target_classes(targets)
    if classes is None:
        raise InvalidInputError("leave-one-out accuracy needs class targets (one-hot or +-1), not regression values")
    predictions = loo_predictions(kernels, targets, sigma, spectrum=spectrum)
    predicted = predictions.argmax(-1) if targets.shape[1] > 1 else (predictions[..., 0] > 0).long()
    return (predicted == classes).double().mean(-1)


def regression_targets(labels: torch.Tensor, num_outputs: int, *, signed: bool) -> torch.Tensor:
    """Targets Y (n, c) for kernel regression from labels (n,).

    ``signed``: one column of +-1 from 0/1 labels (binary margin); else one-hot over ``num_outputs``
    classes, or the labels as one float column when they are floats or the head has one output
    (regression). Class labels outside [0, classes) raise ``InvalidInputError``.
    """
    if labels.is_floating_point() and not signed or num_outputs == 1:
        return labels.double().reshape(-1, 1)
    classes = 2 if signed else num_outputs
    if bool((labels < 0).any()) or bool((labels >= classes).any()) or labels.is_floating_point():
        raise InvalidInputError(
            f"class labels must be integers in [0, {classes - 1}] for a head with {classes} outputs, got "
            f"{sorted(set(labels.tolist()))}: fix the labels or the model's num_labels"
        )
    if signed:
        return (2.0 * labels.double() - 1.0).reshape(-1, 1)
    return torch.nn.functional.one_hot(labels.long(), classes).double()

"""Selection objectives: what a subset C is scored by, and in which direction the best lies.

Every objective maps the subset kernel K + S_C (and, where it says so, S_C alone or the sample targets
Y) to one number per subset. ``"max_ratio"`` is the default (``DEFAULT_OBJECTIVE``: measured on real
data, accuracy rises with the ratio); ``"min_ratio"`` is Algorithm 2 as printed, an option; the others are
the alternatives the papers' quantities suggest (docs/science.md sections 2-3):

- ``min_ratio`` / ``max_ratio``: r_C = lambda_max(K + S_C + sigma I) / lambda_max(K + sigma I);
- ``max_lambda_max``: lambda_max(S_C), the subset's own kernel without K;
- ``min_risk``: kernel-ridge training risk (1/n) ||sigma (K + S_C + sigma I)^-1 Y||^2 (Theorem 1's quantity);
- ``max_alignment``: kernel-target alignment tr(Y^T M Y) / (||M||_F ||Y||_F^2), M = K + S_C (0 for M = 0);
- ``min_kappa``: kappa(K + S_C + sigma I);
- ``max_effective_rank``: exp of the entropy of the normalised spectrum of S_C (rewards modules whose
  kernels point in different directions: complementary candidates; 0 for S_C = 0);
- ``min_loo_error``: mean squared leave-one-out residual of kernel ridge regression with K + S_C (a
  held-out error; complementary modules lower it together).

An asymmetric kernel (Adam's SignGD kernel, ``kernel="adam"``) enters every objective through its symmetric
part (K + K^T) / 2: the spectra, the ridge risk and the leave-one-out residuals are those of the symmetric part
(their formulas need a symmetric matrix), and the alignment's quadratic form tr(Y^T M Y) is the same for M and
its symmetric part, whose norm it divides by. The symmetric part need not be PSD; ``"lower"`` bounds need it
(``search.rank`` then searches without them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import InvalidConfigError
from .spectral import (
    eigenvalues,
    extreme_eigenvalues,
    kernel_ridge_risk,
    loo_predictions,
    spectral_ratio,
    symmetric,
)

Value = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, float, float], torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """A named score of subsets: ``value(kernels, parts, targets, sigma, base_max) -> (m,)``.

    ``kernels``: K + S_C (m, n, n); ``parts``: S_C (m, n, n); ``targets``: Y (n, c) or None;
    ``base_max``: lambda_max(K). ``maximize``: larger is better; ``needs_targets``: uses the labels;
    ``uses_parts``: needs S_C alone (else ``parts`` may be None).

    ``bound``: what exact branch and bound can use, or None (no bound: enumerate or beam search). The
    objective is then a monotone function of one top eigenvalue, of K + S_C (``bound_with_base``: the
    spectral ratio) or of S_C alone (its lambda_max), and ``"lower"`` (minimised: Rayleigh lower bounds on
    lambda_max of every completion of a partial subset) or ``"upper"`` (maximised: upper bounds).
    """

    name: str
    maximize: bool
    value: Value
    needs_targets: bool = False
    uses_parts: bool = False
    meaning: str = ""
    bound: Literal["lower", "upper"] | None = None
    bound_with_base: bool = True

    def __post_init__(self) -> None:
        if self.bound is not None and self.bound != ("upper" if self.maximize else "lower"):
            raise ValueError(f"objective {self.name!r}: a {self.bound} bound does not fit maximize={self.maximize}")

    def key(self, values: torch.Tensor) -> torch.Tensor:
        """Sort key, ascending = best first."""
        return -values if self.maximize else values

    def bound_value(self, top: float, base_max: float, sigma: float) -> float:
        """The value of a subset whose bounded top eigenvalue is ``top`` (objectives with a ``bound``)."""
        return float(spectral_ratio(top, base_max, sigma)) if self.bound_with_base else top


def _ratio(kernels: torch.Tensor, parts: torch.Tensor, targets: torch.Tensor | None, sigma: float,
           base_max: float) -> torch.Tensor:  # fmt: skip
    return spectral_ratio(extreme_eigenvalues(kernels)[1], base_max, sigma)


def _parts_top(kernels: torch.Tensor, parts: torch.Tensor, targets: torch.Tensor | None, sigma: float,
               base_max: float) -> torch.Tensor:  # fmt: skip
    return extreme_eigenvalues(parts)[1]


def _risk(kernels: torch.Tensor, parts: torch.Tensor, targets: torch.Tensor | None, sigma: float,
          base_max: float) -> torch.Tensor:  # fmt: skip
    return kernel_ridge_risk(kernels, targets, sigma)


def _alignment(kernels: torch.Tensor, parts: torch.Tensor, targets: torch.Tensor | None, sigma: float,
               base_max: float) -> torch.Tensor:  # fmt: skip
    y, kernels = targets.double(), symmetric(kernels.double())
    quadratic = torch.einsum("ac,mab,bc->m", y, kernels, y)
    return quadratic / (kernels.flatten(1).norm(dim=1) * y.pow(2).sum()).clamp(min=1e-300)  # 0 for K = 0


def _kappa(kernels: torch.Tensor, parts: torch.Tensor, targets: torch.Tensor | None, sigma: float,
           base_max: float) -> torch.Tensor:  # fmt: skip
    low, high = extreme_eigenvalues(kernels)
    return (high + sigma) / (low + sigma)


def _effective_rank(kernels: torch.Tensor, parts: torch.Tensor, targets: torch.Tensor | None, sigma: float,
                    base_max: float) -> torch.Tensor:  # fmt: skip
    spectrum = eigenvalues(parts).clamp(min=0.0)
    total = spectrum.sum(-1, keepdim=True)
    share = spectrum / total.clamp(min=1e-300)
    entropy = -(share * share.clamp(min=1e-300).log()).sum(-1)
    return torch.where(total[..., 0] > 0, entropy.exp(), 0.0)  # a zero kernel has no direction: 0


def _loo_error(kernels: torch.Tensor, parts: torch.Tensor, targets: torch.Tensor | None, sigma: float,
               base_max: float) -> torch.Tensor:  # fmt: skip
    return (loo_predictions(kernels, targets, sigma) - targets.double()).pow(2).sum(-1).mean(-1)


OBJECTIVES: dict[str, Objective] = {
    objective.name: objective
    for objective in (
        Objective("min_ratio", False, _ratio, meaning="lowest spectral ratio (Algorithm 2 as printed)",
                  bound="lower"),
        Objective("max_ratio", True, _ratio, meaning="highest spectral ratio", bound="upper"),
        Objective("max_lambda_max", True, _parts_top, uses_parts=True, meaning="largest lambda_max(S_C)",
                  bound="upper", bound_with_base=False),
        Objective("min_risk", False, _risk, needs_targets=True, meaning="lowest kernel-ridge training risk"),
        Objective("max_alignment", True, _alignment, needs_targets=True, meaning="highest kernel-target alignment"),
        Objective("min_kappa", False, _kappa, meaning="lowest condition number of K + S_C + sigma I"),
        Objective("max_effective_rank", True, _effective_rank, uses_parts=True,
                  meaning="most spread spectrum of S_C (complementary modules)"),
        Objective("min_loo_error", False, _loo_error, needs_targets=True,
                  meaning="lowest leave-one-out kernel-regression error (held-out samples)"),
    )
}  # fmt: skip


DEFAULT_OBJECTIVE = "max_ratio"  # decided by benchmarks/which_objective.py over the compare_picks results


def get_objective(name: object, has_targets: bool) -> Objective:
    """The objective called ``name``; ``InvalidConfigError`` for an unknown one, or one needing absent labels."""
    if name not in OBJECTIVES:
        raise InvalidConfigError(f"unknown objective {name!r}: choose one of {sorted(OBJECTIVES)}")
    objective = OBJECTIVES[name]  # type: ignore[index]
    if objective.needs_targets and not has_targets:
        raise InvalidConfigError(
            f"objective {name!r} uses the sample labels: pass data with 'labels' (class labels), or choose one of "
            f"{sorted(o.name for o in OBJECTIVES.values() if not o.needs_targets)}"
        )
    return objective

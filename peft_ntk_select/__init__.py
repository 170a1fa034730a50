"""peft_ntk_select: choose LoRA target modules from the neural tangent kernel, before training.

selector = NTKSelector(model, LoraConfig(r=8, lora_alpha=8, task_type="SEQ_CLS"), budget=3)
result = selector.select(data)
peft_model = get_peft_model(model, result.lora_config)

The names below are imported on first use (PEP 562), so that ``import peft_ntk_select`` (and the command line's
start, where Ctrl-C must end in one line) does not wait for torch, transformers and peft.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Candidate": "candidates",
    "discover_candidates": "candidates",
    "LinearityCurve": "diagnostics.linearity",
    "linearity_curve": "diagnostics.linearity",
    "StabilityReport": "diagnostics.stability",
    "format_stability": "diagnostics.stability",
    "InvalidConfigError": "errors",
    "InvalidInputError": "errors",
    "KernelComputationError": "errors",
    "MissingExtraError": "errors",
    "NoCandidatesError": "errors",
    "NTKSelectError": "errors",
    "SearchSpaceTooLargeError": "errors",
    "ENGINES": "kernels",
    "compute_kernels": "kernels",
    "RankedSubset": "result",
    "SelectionResult": "result",
    "Certificate": "search.rank",
    "SearchResult": "search.rank",
    "rank_subsets": "search.rank",
    "ScoredSubset": "search.scoring",
    "Budget": "search.spaces",
    "InvalidSpaceError": "search.spaces",
    "ParamBudget": "search.spaces",
    "Structured": "search.spaces",
    "NTKSelector": "selector",
    "find_ntk_target_modules": "selector",
    "KernelSettings": "settings",
    "RankingSettings": "settings",
}

__all__ = [
    "Budget",
    "Candidate",
    "Certificate",
    "ENGINES",
    "InvalidConfigError",
    "InvalidInputError",
    "InvalidSpaceError",
    "KernelComputationError",
    "KernelSettings",
    "LinearityCurve",
    "MissingExtraError",
    "NTKSelectError",
    "NTKSelector",
    "NoCandidatesError",
    "ParamBudget",
    "RankedSubset",
    "RankingSettings",
    "ScoredSubset",
    "SearchResult",
    "SearchSpaceTooLargeError",
    "SelectionResult",
    "StabilityReport",
    "Structured",
    "compute_kernels",
    "discover_candidates",
    "find_ntk_target_modules",
    "format_stability",
    "linearity_curve",
    "rank_subsets",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'peft_ntk_select' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from .candidates import Candidate, discover_candidates
    from .diagnostics.linearity import LinearityCurve, linearity_curve
    from .diagnostics.stability import StabilityReport, format_stability
    from .errors import (
        InvalidConfigError,
        InvalidInputError,
        KernelComputationError,
        MissingExtraError,
        NoCandidatesError,
        NTKSelectError,
        SearchSpaceTooLargeError,
    )
    from .kernels import ENGINES, compute_kernels
    from .result import RankedSubset, SelectionResult
    from .search.rank import Certificate, SearchResult, rank_subsets
    from .search.scoring import ScoredSubset
    from .search.spaces import Budget, InvalidSpaceError, ParamBudget, Structured
    from .selector import NTKSelector, find_ntk_target_modules
    from .settings import KernelSettings, RankingSettings

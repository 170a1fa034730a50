"""peft_ntk_select: choose LoRA target modules from the neural tangent kernel, before training.

selector = NTKSelector(model, LoraConfig(r=8, lora_alpha=8, task_type="SEQ_CLS"), budget=3)
result = selector.select(data)
peft_model = get_peft_model(model, result.lora_config)
"""

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

__version__ = "0.1.0"

__all__ = [
    "ENGINES",
    "Budget",
    "Candidate",
    "Certificate",
    "InvalidSpaceError",
    "ParamBudget",
    "SearchResult",
    "Structured",
    "InvalidConfigError",
    "InvalidInputError",
    "KernelComputationError",
    "KernelSettings",
    "MissingExtraError",
    "LinearityCurve",
    "NTKSelectError",
    "NTKSelector",
    "NoCandidatesError",
    "RankedSubset",
    "RankingSettings",
    "ScoredSubset",
    "SearchSpaceTooLargeError",
    "SelectionResult",
    "StabilityReport",
    "compute_kernels",
    "discover_candidates",
    "find_ntk_target_modules",
    "format_stability",
    "linearity_curve",
    "rank_subsets",
]

"""peft_ntk_select: choose LoRA target modules from the neural tangent kernel, before training.

selector = NTKSelector(model, LoraConfig(r=8, lora_alpha=8, task_type="SEQ_CLS"), budget=3)
result = selector.select(data)
peft_model = get_peft_model(model, result.lora_config)
"""

from .candidates import Candidate, discover_candidates
from .errors import (
    InvalidConfigError,
    InvalidInputError,
    KernelComputationError,
    NoCandidatesError,
    NTKSelectError,
    SearchSpaceTooLargeError,
)
from .kernels import ENGINES, compute_kernels
from .linearity import LinearityCurve, linearity_curve
from .result import RankedSubset, SelectionResult
from .scoring import ScoredSubset
from .search import Certificate, SearchResult, rank_subsets
from .selector import NTKSelector
from .spaces import Budget, InvalidSpaceError, ParamBudget, Structured
from .stability import StabilityReport, format_stability

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
    "LinearityCurve",
    "NTKSelectError",
    "NTKSelector",
    "NoCandidatesError",
    "RankedSubset",
    "ScoredSubset",
    "SearchSpaceTooLargeError",
    "SelectionResult",
    "StabilityReport",
    "compute_kernels",
    "discover_candidates",
    "format_stability",
    "linearity_curve",
    "rank_subsets",
]

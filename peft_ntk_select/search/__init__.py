"""Search stage: spectra of subset kernels, objectives, admissible spaces, and the searches that rank them.

Callers import the stage's public names from here (``from peft_ntk_select.search import rank_subsets``).
"""

from .objectives import DEFAULT_OBJECTIVE, OBJECTIVES, Objective, get_objective
from .rank import (
    DEFAULT_BEAM_WIDTH,
    DEFAULT_MAX_NODES,
    DEFAULT_MAX_SUBSETS,
    SEARCHES,
    Certificate,
    SearchResult,
    admissible_space,
    check_exhaustive,
    check_search_options,
    rank_subsets,
    resolve_search,
    search_subsets,
)
from .scoring import ScoredSubset, check_sigma, objective_values, score_subsets
from .spaces import Budget, InvalidSpaceError, ParamBudget, SearchSpace, Structured, is_integer
from .spectral import regression_targets

__all__ = [
    "DEFAULT_BEAM_WIDTH",
    "DEFAULT_MAX_NODES",
    "DEFAULT_MAX_SUBSETS",
    "DEFAULT_OBJECTIVE",
    "OBJECTIVES",
    "SEARCHES",
    "Budget",
    "Certificate",
    "InvalidSpaceError",
    "Objective",
    "ParamBudget",
    "ScoredSubset",
    "SearchResult",
    "SearchSpace",
    "Structured",
    "admissible_space",
    "check_exhaustive",
    "check_search_options",
    "check_sigma",
    "get_objective",
    "is_integer",
    "objective_values",
    "rank_subsets",
    "regression_targets",
    "resolve_search",
    "score_subsets",
    "search_subsets",
]

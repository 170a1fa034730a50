"""What a search returns: the ranking (``SearchResult``) and what it proved about it (``Certificate``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .objectives import DEFAULT_OBJECTIVE
from .scoring import ScoredSubset


@dataclass(frozen=True)
class Certificate:
    """What the search proved about its ranking.

    ``search``: the search that ran (``"exhaustive"``, ``"exact"``, ``"greedy"`` or ``"beam"``; ``"auto"``
    is resolved first). ``optimal``: the ranking is the exact top of the space (for greedy/beam: only when
    the best found meets the objective's bound). ``certified``: how many leading entries of the ranking are
    proven to be the exact top. ``nodes``: partial subsets expanded; ``evaluated``: subset kernels whose
    spectrum was computed; ``space_size``: admissible subsets; ``stopped``: ``"max_nodes"`` or
    ``"time_limit"`` when branch and bound ran out, else None. ``objective``: what the ranking is ordered by.

    ``lower_bound`` and ``gap`` depend on the objective's bound (``Objective.bound``). A ``"lower"`` bound
    (``min_ratio``): ``lower_bound`` is a proven lower bound on the ratio of every admissible subset (the
    optimum's ratio when optimal) and ``gap`` = ``best_ratio`` - ``lower_bound``. Otherwise ``lower_bound``
    is None, and ``gap`` is 0 when optimal; with an ``"upper"`` bound (``max_ratio``, ``max_lambda_max``)
    it is how much higher, in the objective's units, the best subset not ruled out could score; without
    a bound, None after greedy/beam search.
    """

    search: str
    optimal: bool
    best_ratio: float
    lower_bound: float | None
    gap: float | None
    certified: int
    nodes: int
    evaluated: int
    space_size: int
    stopped: str | None = None
    seconds: float = field(default=0.0, compare=False)
    objective: str = DEFAULT_OBJECTIVE


@dataclass(frozen=True)
class SearchResult(Sequence[ScoredSubset]):
    """``ranking`` (best first) and its ``certificate``; also a read-only sequence of the ranking."""

    ranking: tuple[ScoredSubset, ...]
    certificate: Certificate

    def __getitem__(self, index):  # type: ignore[no-untyped-def, override]
        return self.ranking[index]

    def __len__(self) -> int:
        return len(self.ranking)

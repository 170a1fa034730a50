"""``rank_subsets``: rank admissible subsets by an objective, with a certificate of how far the ranking is proven.

The objective (``objectives.py``; default ``DEFAULT_OBJECTIVE``, ``"max_ratio"``) orders the subsets of an
admissible space (``spaces.py``). ``rank_subsets`` returns a ``SearchResult``: the ranking (best first)
and a ``Certificate``.

Searches:

- ``"auto"`` (default): ``"exhaustive"`` when the space has at most ``max_subsets`` subsets, else
  ``"exact"`` when the objective has a bound, else ``"beam"``; without ``top``, a search that is not
  exhaustive keeps ``DEFAULT_TOP``.
- ``"exhaustive"``: enumerate the space; refused above ``max_subsets``. With ``top=None`` every subset is
  ranked. For an objective with a lower bound (``min_ratio``, Algorithm 2 as printed) and a ``top``, every
  subset first gets a cheap lower bound on lambda_max (``ritz_lower_bounds``), and only those whose bound
  can reach the ``top``-th exact value are solved: the same ranking, far fewer eigensolves when K dominates.
- ``"exact"``: best-first branch and bound (``branch_and_bound.py``) for the exact top ``top``, for the
  objectives with a ``bound`` (``min_ratio``: Rayleigh lower bounds; ``max_ratio``, ``max_lambda_max``:
  upper bounds), started from the greedy picks. ``top=None`` asks for the whole ranking, which only
  enumeration gives, and objectives without a bound are enumerated too: both run ``"exhaustive"``.
- ``"greedy"`` / ``"beam"``: keep the best ``beam_width`` (greedy: 1) partial picks per size
  (``beam.py``). For an objective with a bound the certificate carries the bound at the root, valid over
  the whole space, so the gap left is visible.

Every search ends in one ranking tail: the objective's value of each subset found (ties: lexicographic
indices), and ``score_subsets`` on the subsets kept, so one subset always scores the same whatever the search.
"""

from __future__ import annotations

import itertools
import logging
import math
import operator
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from ..errors import InvalidConfigError, InvalidInputError, SearchSpaceTooLargeError
from .beam import beam_search
from .branch_and_bound import branch_and_bound, root_bound
from .certificate import Certificate, SearchResult
from .objectives import DEFAULT_OBJECTIVE, OBJECTIVES, get_objective
from .pool import with_slack
from .scoring import ScoredSubset, by_size, check_sigma, objective_values, score_list
from .spaces import Budget, ParamBudget, SearchSpace, Structured, is_integer
from .spectral import all_psd, eigenvalues, extreme_eigenvalues, ritz_lower_bounds, subset_kernels

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..candidates import Candidate
    from .objectives import Objective

logger = logging.getLogger(__name__)

DEFAULT_MAX_SUBSETS = 200_000
DEFAULT_MAX_NODES = 100_000
DEFAULT_BEAM_WIDTH = 8
SWAMPED = 1e-9  # sigma swamps the kernels when |lambda|max(K + all S_l) < SWAMPED * sigma
DEFAULT_TOP = 10  # subsets kept by an ``"auto"`` search that is not exhaustive, when no ``top`` is given
SEARCHES = ("exact", "exhaustive", "greedy", "beam")


@dataclass(frozen=True)
class _Run:
    """One ranking request, validated: S (L, n, n) and K (n, n) float64, and what to rank them by."""

    parts: torch.Tensor
    base: torch.Tensor
    space: SearchSpace
    objective: Objective
    sigma: float
    top: int | None
    targets: torch.Tensor | None
    batch_size: int

    @property
    def num_candidates(self) -> int:
        return self.parts.shape[0]

    def in_objective_units(self, top_eigenvalue: float) -> float:
        """The objective's value at a bounded top eigenvalue (``Objective.bound_value``)."""
        base_max = float(extreme_eigenvalues(self.base)[1])
        return self.objective.bound_value(top_eigenvalue, base_max, self.sigma)


def rank_subsets(
    contributions: torch.Tensor,
    base_kernel: torch.Tensor,
    *,
    sigma: float,
    budget: int | None = None,
    space: SearchSpace | None = None,
    search: str = "auto",
    top: int | None = None,
    targets: torch.Tensor | None = None,
    beam_width: int = DEFAULT_BEAM_WIDTH,
    max_nodes: int | None = DEFAULT_MAX_NODES,
    time_limit: float | None = None,
    max_subsets: int = DEFAULT_MAX_SUBSETS,
    batch_size: int = 512,
    objective: str = DEFAULT_OBJECTIVE,
) -> SearchResult:
    """Rank admissible subsets by ``objective``, best first, with a certificate.

    Args:
        contributions: S (L, n, n); base_kernel: K (n, n).
        sigma: ridge strength, > 0.
        budget: k, short for ``space=Budget(k)``; give exactly one of ``budget`` and ``space``.
        space: ``Budget``, ``ParamBudget``, ``Structured`` (``peft_ntk_select.search``) or any ``SearchSpace``.
        search: ``"auto"``, ``"exact"`` (branch and bound), ``"exhaustive"``, ``"greedy"`` or ``"beam"``
            (module docstring).
        top: keep the best ``top`` subsets; None: the whole ranking when the search enumerates (``"exact"``
            then enumerates the space), ``DEFAULT_TOP`` when ``"auto"`` does not.
        targets: Y (n, c) for the risk and its bounds (and the objectives that use labels), or None.
        beam_width: partial subsets kept per size by ``"beam"``.
        max_nodes, time_limit: stop branch and bound after this many expanded nodes / seconds; the
            certificate then says ``optimal=False`` and gives the gap.
        max_subsets: refuse exhaustive enumeration beyond this many subsets.
        batch_size: subset kernels per batched eigensolve.
        objective: what to rank by (``OBJECTIVES``); default ``DEFAULT_OBJECTIVE`` (``"max_ratio"``);
            ``"min_ratio"`` is Algorithm 2 as printed. Objectives with a ``bound`` (``min_ratio``,
            ``max_ratio``, ``max_lambda_max``) have exact branch and bound; the others are ranked by
            enumerating the space (up to ``max_subsets``) or by ``"greedy"``/``"beam"``.

    Returns:
        ``SearchResult(ranking, certificate)``; it is also a sequence of the ranking, so ``result[0]`` is
        the best ``ScoredSubset``, its objective value in ``score``. Ties keep lexicographic order of the indices.
    """
    sigma = check_sigma(sigma)
    check_search_options(search, top, beam_width, max_nodes, time_limit)
    _check_inputs(contributions, base_kernel, targets)
    search_space = _resolve_space(contributions.shape[0], budget, space)
    chosen = get_objective(objective, targets is not None)
    return search_subsets(
        contributions, base_kernel, search_space, chosen, sigma=sigma, search=search,
        top=None if top is None else operator.index(top), targets=targets, beam_width=beam_width,
        max_nodes=max_nodes, time_limit=time_limit, max_subsets=max_subsets, batch_size=batch_size,
    )  # fmt: skip


def search_subsets(
    contributions: torch.Tensor,
    base_kernel: torch.Tensor,
    space: SearchSpace,
    objective: Objective,
    *,
    sigma: float,
    search: str,
    top: int | None,
    targets: torch.Tensor | None,
    beam_width: int,
    max_nodes: int | None,
    time_limit: float | None,
    max_subsets: int,
    batch_size: int = 512,
) -> SearchResult:
    """``rank_subsets`` for validated arguments (``RankingSettings`` validated them once): the space checked
    against the candidates, the objective resolved, sigma and the search options checked."""
    started = time.perf_counter()
    if objective.bound == "lower" and not all_psd(contributions):
        logger.info("objective %s: some S_l is not PSD (symmetric part of an asymmetric kernel), so its lower "
                    "bounds do not hold: searching without them", objective.name)  # fmt: skip
        objective = replace(objective, bound=None)
    if search == "auto":
        search, top = _resolve_auto(space, contributions.shape[0], top, max_subsets, objective)
    run = _Run(contributions.double(), base_kernel.double(), space, objective, sigma, top, targets, batch_size)
    if search == "exhaustive" or (search == "exact" and (top is None or objective.bound is None)):
        ranking, certificate = _exhaustive(run, max_subsets)
    elif search == "exact":
        ranking, certificate = _exact(run, (max_nodes, time_limit, started))
    else:
        ranking, certificate = _beam(run, search, 1 if search == "greedy" else beam_width)
    warn_if_meaningless(run.parts, run.base, sigma, ranking)
    return SearchResult(ranking, replace(certificate, seconds=time.perf_counter() - started))


def _ranked(run: _Run, subsets: Sequence[tuple[int, ...]]) -> tuple[ScoredSubset, ...]:
    """The ``top`` best of ``subsets`` by the objective (ties: lexicographic indices), scored, each with its
    objective value in ``score``."""
    values = objective_values(run.parts, run.base, subsets, run.objective, sigma=run.sigma, targets=run.targets,
                              batch_size=run.batch_size)  # fmt: skip
    keys = run.objective.key(values).tolist()
    order = sorted(range(len(subsets)), key=lambda i: (keys[i], subsets[i]))[: run.top]
    scored = score_list(run.parts, run.base, [subsets[i] for i in order], run.sigma, run.targets, run.batch_size)
    return tuple(replace(entry, score=float(values[i])) for entry, i in zip(scored, order, strict=True))


def _certificate(
    run: _Run,
    search: str,
    ranking: tuple[ScoredSubset, ...],
    proof: tuple[bool, int, float | None],
    counts: tuple[int, int],
    stopped: str | None = None,
) -> Certificate:
    """The certificate of ``ranking``. ``proof``: (optimal, entries certified, the best value in the objective's
    units that a subset not ruled out may have, or None without a bound); ``counts``: (nodes, evaluated)."""
    optimal, certified, open_value = proof
    best = _best(run, ranking)
    lower_bound = gap = None
    if run.objective.bound == "lower":  # a proven lower bound on every subset's value
        lower_bound = best if optimal or open_value is None else min(best, open_value)
        gap = max(best - lower_bound, 0.0)
    elif optimal:
        gap = 0.0
    elif run.objective.bound == "upper" and open_value is not None:  # how much better the best open one may be
        gap = max(open_value - best, 0.0)
    return Certificate(
        search=search, optimal=optimal, best_ratio=ranking[0].ratio if ranking else math.inf,
        lower_bound=lower_bound, gap=gap, certified=certified, nodes=counts[0], evaluated=counts[1],
        space_size=run.space.size(run.num_candidates), stopped=stopped, objective=run.objective.name,
    )  # fmt: skip


def _best(run: _Run, ranking: tuple[ScoredSubset, ...]) -> float:
    """The best objective value found (the worst possible one when nothing was)."""
    if ranking:
        return ranking[0].score  # type: ignore[return-value]
    return -math.inf if run.objective.maximize else math.inf


def _exhaustive(run: _Run, max_subsets: int) -> tuple[tuple[ScoredSubset, ...], Certificate]:
    """Enumerate the space and rank every subset; refused above ``max_subsets``."""
    if run.objective.bound is None:
        bounded = ", ".join(o.name for o in OBJECTIVES.values() if o.bound is not None)
        remedy = (f"objective {run.objective.name!r} has no branch and bound (only {bounded}): use search='beam' "
                  "or 'greedy', a smaller space or fewer candidates, or raise max_subsets")  # fmt: skip
    else:
        remedy = ("pass top= with search='exact' (branch and bound) or use search='beam', use a smaller space or "
                  "fewer candidates, or raise max_subsets")  # fmt: skip
    check_exhaustive(run.space, run.num_candidates, max_subsets, remedy)
    subsets = list(run.space.subsets(run.num_candidates))
    solved = 0
    if run.objective.bound == "lower" and run.top is not None and run.top < len(subsets):
        subsets, solved = _screen(run, subsets)
    ranking = _ranked(run, subsets)
    return ranking, _certificate(run, "exhaustive", ranking, (True, len(ranking), None), (0, solved + len(subsets)))


def _screen(run: _Run, subsets: list[tuple[int, ...]]) -> tuple[list[tuple[int, ...]], int]:
    """The subsets that may be among the ``top`` smallest lambda_max of the bounded kernel, and how many were
    solved to know it.

    Each subset gets a lower bound (``ritz_lower_bounds``); the ``top`` subsets with the smallest bounds are
    solved, and their largest lambda_max is at least the ``top``-th smallest of all. Only subsets whose bound
    is within slack of it are kept, so the ranking is exact.
    """
    bound_base = run.base if run.objective.bound_with_base else torch.zeros_like(run.base)
    bounds = torch.empty(len(subsets), dtype=torch.float64)
    for positions, rows in by_size(subsets):
        bounds[torch.tensor(positions)] = ritz_lower_bounds(bound_base, run.parts, rows)
    first = bounds.topk(run.top, largest=False).indices.tolist()  # type: ignore[arg-type]
    cutoff = -math.inf
    for _, rows in by_size([subsets[i] for i in first]):
        cutoff = max(cutoff, float(extreme_eigenvalues(subset_kernels(bound_base, run.parts, rows))[1].max()))
    near = torch.nonzero(bounds <= with_slack(cutoff)).flatten().tolist()
    return [subsets[i] for i in near], len(first)


def _exact(run: _Run, limits: tuple[int | None, float | None, float]) -> tuple[tuple[ScoredSubset, ...], Certificate]:
    """Branch and bound for the exact top ``top``, from the greedy picks."""
    seeds, nodes, evaluated = beam_search(run.parts, run.base, run.space, run.objective,
                                          (run.sigma, run.targets, 1, run.batch_size))  # fmt: skip
    outcome = branch_and_bound(run.parts, run.base, run.space, run.objective, run.top, seeds, limits)  # type: ignore[arg-type]
    ranking = _ranked(run, outcome.subsets)
    open_value = run.in_objective_units(outcome.open_top)
    key = run.objective.key
    optimal = outcome.stopped is None
    proven = itertools.takewhile(lambda entry: key(entry.score) < key(open_value), ranking)  # type: ignore[arg-type]
    certified = len(ranking) if optimal else sum(1 for _ in proven)
    counts = (nodes + outcome.nodes, evaluated + outcome.evaluated)
    return ranking, _certificate(run, "exact", ranking, (optimal, certified, open_value), counts, outcome.stopped)


def _beam(run: _Run, search: str, width: int) -> tuple[tuple[ScoredSubset, ...], Certificate]:
    """Greedy or beam search; with a bound, optimal when the best found meets the bound at the root."""
    subsets, nodes, evaluated = beam_search(run.parts, run.base, run.space, run.objective,
                                            (run.sigma, run.targets, width, run.batch_size))  # fmt: skip
    ranking = _ranked(run, subsets)
    open_value, optimal = None, False
    if run.objective.bound is not None:
        open_value = run.in_objective_units(root_bound(run.parts, run.base, run.space, run.objective))
        key = run.objective.key
        optimal = bool(ranking) and key(_best(run, ranking)) <= with_slack(key(open_value))  # type: ignore[arg-type]
    return ranking, _certificate(run, search, ranking, (optimal, int(optimal), open_value), (nodes, evaluated))


def check_budget_value(num_candidates: int, budget: object) -> int:
    """``budget`` as an int, or ``InvalidConfigError`` unless it is an integer in 1..``num_candidates``."""
    if not is_integer(budget) or not 1 <= budget <= num_candidates:  # type: ignore[operator]
        raise InvalidConfigError(
            f"budget={budget!r} must be an integer between 1 and the number of candidates ({num_candidates}): "
            "lower it, or widen the candidates (kinds=, layers=, modules=)"
        )
    return operator.index(budget)  # type: ignore[arg-type]


def check_exhaustive(space: SearchSpace, num_candidates: int, max_subsets: int, remedy: str) -> int:
    """Size of ``space``; ``SearchSpaceTooLargeError`` ending with ``remedy`` when above ``max_subsets``."""
    count = space.size(num_candidates)
    if count > max_subsets:
        raise SearchSpaceTooLargeError(
            f"exhaustive search would score {count:,} subsets ({space.describe()} over {num_candidates} "
            f"candidates), more than max_subsets={max_subsets:,}: {remedy}"
        )
    return count


def _check_inputs(contributions: torch.Tensor, base_kernel: torch.Tensor, targets: torch.Tensor | None) -> None:
    shape = tuple(contributions.shape)
    if len(shape) != 3 or shape[1] != shape[2] or tuple(base_kernel.shape) != shape[1:]:
        raise InvalidInputError(
            f"contributions must be (L, n, n) and base_kernel (n, n), got {shape} and {tuple(base_kernel.shape)}: "
            "pass S and K as returned by compute_kernels"
        )
    named = {"contributions": contributions, "base_kernel": base_kernel, "targets": targets}
    bad = [name for name, tensor in named.items() if tensor is not None and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise InvalidInputError(
            f"{' and '.join(bad)} hold nan or inf entries, so every score would be nan and the ranking arbitrary: "
            "recompute the kernels (in float32 or float64 for a half-precision model) or fix the labels"
        )


def warn_if_meaningless(
    contributions: torch.Tensor, base_kernel: torch.Tensor, sigma: float, ranking: Sequence[ScoredSubset]
) -> None:
    """Log a warning where the ranking cannot mean anything: sigma swamps every kernel (every ratio is 1 up to
    rounding), or the best subsets tie (the kernels do not tell them apart; the order among them is by index)."""
    scale = float(eigenvalues(base_kernel.double() + contributions.double().sum(dim=0)).abs().max())
    if scale < SWAMPED * sigma:
        logger.warning(
            "sigma=%g swamps every kernel (largest eigenvalue of K + all S_l: %.3g), so every subset scores alike: "
            "choose sigma far below the kernels' scale, e.g. 1e-4 times it (%.3g)", sigma, scale, 1e-4 * scale,
        )  # fmt: skip
        return
    tied = [entry for entry in ranking if entry.score == ranking[0].score]
    if len(ranking) > 1 and len(tied) > 1:
        logger.warning(
            "the best %d ranked subsets tie at score %.6g: the kernels do not tell them apart (equal or zero "
            "contributions?), and the order among them is by candidate index", len(tied), ranking[0].score,
        )  # fmt: skip


def _resolve_space(num_candidates: int, budget: object, space: object) -> SearchSpace:
    if (budget is None) == (space is None):
        raise InvalidConfigError(
            "give exactly one of budget=k (subsets of k candidates) or space=Budget(...)/ParamBudget(...)/"
            "Structured(...)"
        )
    if space is None:
        return Budget(check_budget_value(num_candidates, budget))
    if not isinstance(space, SearchSpace):
        raise InvalidConfigError(
            f"space={space!r} is not a search space: use Budget, ParamBudget or Structured from peft_ntk_select"
        )
    space.check(num_candidates)
    return space


def check_search_options(
    search: object, top: object, beam_width: object, max_nodes: object, time_limit: object
) -> None:
    """Typed errors for an unknown search, or a top, beam width, node limit or time limit that is not usable."""
    if search not in ("auto", *SEARCHES):
        raise InvalidConfigError(f"unknown search {search!r}: choose 'auto' or one of {SEARCHES}")
    if top is not None and (not is_integer(top) or top < 1):  # type: ignore[operator]
        raise InvalidConfigError(f"top={top!r} must be a positive integer, or None for the whole ranking")
    if not is_integer(beam_width) or beam_width < 1:  # type: ignore[operator]
        raise InvalidConfigError(f"beam_width={beam_width!r} must be a positive integer (1 is greedy)")
    if max_nodes is not None and (not is_integer(max_nodes) or max_nodes < 1):  # type: ignore[operator]
        raise InvalidConfigError(f"max_nodes={max_nodes!r} must be a positive integer, or None for no limit")
    if time_limit is not None and (
        isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0
    ):
        raise InvalidConfigError(f"time_limit={time_limit!r} must be a number of seconds > 0, or None for no limit")


def _resolve_auto(
    space: SearchSpace, num_candidates: int, top: int | None, max_subsets: int, objective: Objective
) -> tuple[str, int | None]:
    """(search, top) for ``"auto"``: ``"exhaustive"`` up to ``max_subsets`` subsets, else ``"exact"`` branch and
    bound for an objective with a bound, else ``"beam"``; these two keep ``DEFAULT_TOP`` when ``top`` is None."""
    if space.size(num_candidates) <= max_subsets:
        return "exhaustive", top
    return "exact" if objective.bound is not None else "beam", DEFAULT_TOP if top is None else top


def resolve_search(
    space: SearchSpace, num_candidates: int, search: str, top: int | None, max_subsets: int, objective: str
) -> tuple[str, int | None]:
    """(search, top) as the selector resolved them before ranking: ``"auto"`` as ``rank_subsets`` resolves it;
    an explicit search that is not exhaustive keeps ``DEFAULT_TOP`` when ``top`` is None.

    Only for callers that still resolve before calling ``rank_subsets`` (which takes ``"auto"`` itself).
    """
    if search not in ("auto", *SEARCHES):
        raise InvalidConfigError(f"unknown search {search!r}: choose 'auto' or one of {SEARCHES}")
    if search == "auto":
        return _resolve_auto(space, num_candidates, top, max_subsets, get_objective(objective, has_targets=True))
    if search == "exhaustive":
        check_exhaustive(space, num_candidates, max_subsets, "use search='exact', a smaller budget, fewer "
                          "candidates (kinds=('q', 'v'), layers=[...]), or raise max_subsets")  # fmt: skip
    return search, DEFAULT_TOP if top is None and search != "exhaustive" else top


def admissible_space(
    candidates: Sequence[Candidate],
    budget: int,
    param_budget: int | None,
    layers_per_pick: int | None,
    kind_sets: Sequence[Sequence[str] | str],
    space: SearchSpace | None,
) -> SearchSpace:
    """The space the selector searches: ``space``, else a parameter budget, a structured space, or ``Budget``."""
    chosen = [name for name, value in (("param_budget", param_budget), ("layers_per_pick", layers_per_pick),
                                        ("space", space)) if value is not None]  # fmt: skip
    if len(chosen) > 1:
        raise InvalidConfigError(f"{' and '.join(chosen)} each define the search space: give only one")
    if space is None and param_budget is not None:
        space = ParamBudget.from_candidates(param_budget, candidates)
    elif space is None and layers_per_pick is not None:
        space = Structured.from_candidates(layers_per_pick, kind_sets, candidates)
    elif space is None:
        space = Budget(check_budget_value(len(candidates), budget))
    space.check(len(candidates))
    return space

"""Search over admissible subsets for the lowest spectral ratio (Algorithm 2), with a certificate.

r_C = lambda_max(K + S_C + sigma I) / lambda_max(K + sigma I) grows with lambda_max(K + S_C), so every
method minimises lambda_max(K + S_C) over an admissible space (``spaces.py``). ``rank_subsets`` returns
a ``SearchResult``: the ranking (best first) and a ``Certificate`` saying how far it is proven.

Methods:

- ``"exhaustive"``: enumerate the space; refused above ``max_subsets``. With ``top=None`` every subset is
  scored. With ``top``, every subset first gets a cheap lower bound on lambda_max (``ritz_lower_bounds``),
  and only those whose bound can reach the ``top``-th exact value are solved: the same ranking as solving
  all, and far fewer eigensolves when K dominates.
- ``"exact"``: best-first branch and bound for the exact top ``top``. Lower bounds, for a partial subset
  P and any completion Q: monotonicity, lambda_max(K + S_P + S_Q) >= lambda_max(K + S_P) (every S_l is
  PSD), and the Rayleigh bound: for a unit vector u (the top eigenvector of K + S_P),
  lambda_max(K + S_P + S_Q) >= u^T (K + S_P) u + sum_{j in Q} u^T S_j u, so adding the smallest
  admissible u^T S_j u of the candidates still open bounds every completion. It is nearly tight when K
  dominates (the classifier head's kernel is ~1e3 times each S_l), which is when pruning is hardest
  without it. Candidates are searched in order of lambda_max(K + S_l); a greedy pass gives the first
  incumbents; children are screened with the parent's bound, then the survivors are solved in one
  batched ``eigh``. ``top=None`` asks for the whole ranking, which only enumeration gives: it runs
  ``"exhaustive"``. For the objectives that maximise a top eigenvalue (``max_ratio``: of K + S_C;
  ``max_lambda_max``: of S_C), a best-first branch and bound with UPPER bounds: for a partial subset with
  kernel A (top eigenpair l1, u; second eigenvalue l2) and any completion Q, in the basis (u, u-perp)
  lambda_max(A + S_Q) <= lambda_max([[l1 + u^T S_Q u, |P S_Q u|], [|P S_Q u|, l2 + lambda_max(S_Q)]]),
  each entry bounded by the largest per-candidate terms, and by Weyl, l1 + sum lambda_max(S_j). When the
  head's kernel dominates, the off-diagonal term is second order and the bound nearly tight.
  ``BRANCH_AND_BOUND`` names the objectives with bounds; the others enumerate or use greedy/beam.
- ``"greedy"`` / ``"beam"``: keep the best ``beam_width`` (greedy: 1) partial subsets per size. Their
  certificate carries a lower bound on the optimum valid over the whole space (the larger of the
  Rayleigh bound at K's top eigenvector and the Weyl bound from lambda_max(K + S_l)), so the gap left
  is visible.

Rankings are deterministic: ratio, then lexicographic indices. Every reported number comes from
``score_subsets`` on the subset itself, whatever the method, so one subset always scores the same.
"""

from __future__ import annotations

import heapq
import itertools
import math
import operator
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import torch

from ..candidates import Candidate
from ..errors import InvalidConfigError, InvalidInputError, SearchSpaceTooLargeError
from .objectives import Objective, get_objective
from .scoring import ScoredSubset, by_size, check_sigma, objective_values, score_list
from .spaces import BlockProblem, Budget, ParamBudget, SearchSpace, Structured, is_integer
from .spectral import extreme_eigenvalues, ritz_lower_bounds, spectral_ratio, subset_kernels

DEFAULT_MAX_SUBSETS = 200_000
DEFAULT_MAX_NODES = 100_000
DEFAULT_BEAM_WIDTH = 8
SEARCHES = ("exact", "exhaustive", "greedy", "beam")
METHODS = SEARCHES  # the old name, until cli/commands.py imports SEARCHES from peft_ntk_select.search

# Relative slack on lambda_max: near-ties within it are never pruned, so rounding cannot change the ranking.
_SLACK = 1e-9
# Objectives with branch and bound: min_ratio (Rayleigh lower bounds) and the two that maximise a top
# eigenvalue (Weyl upper bounds), of K + S_C (max_ratio) or of S_C alone (max_lambda_max).
BRANCH_AND_BOUND = ("min_ratio", "max_ratio", "max_lambda_max")


@dataclass(frozen=True)
class Certificate:
    """What the search proved about its ranking.

    ``optimal``: the ranking is the exact top of the space (for greedy/beam: only when the best found
    meets ``lower_bound``). ``lower_bound``: a proven lower bound on the ratio of every admissible subset
    (the optimum's ratio when optimal); ``gap`` = ``best_ratio`` - ``lower_bound``. ``certified``: how many
    leading entries of the ranking are proven to be the exact top. ``nodes``: partial subsets expanded;
    ``evaluated``: subset kernels whose spectrum was computed; ``space_size``: admissible subsets;
    ``stopped``: ``"max_nodes"`` or ``"time_limit"`` when branch and bound ran out, else None.
    ``objective``: what the ranking is ordered by; ``lower_bound`` and ``gap`` are bounds on the ratio
    for ``"min_ratio"``. For the other objectives ``lower_bound`` is None; ``gap`` is 0 after enumerating
    the space, None after greedy/beam search without bounds, and for the branch and bound of
    ``"max_ratio"``/``"max_lambda_max"`` how much higher (in the objective's units) the best subset not
    yet ruled out could score.
    """

    method: str
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
    objective: str = "min_ratio"


@dataclass(frozen=True)
class SearchResult(Sequence[ScoredSubset]):
    """``ranking`` (best first) and its ``certificate``; also a read-only sequence of the ranking."""

    ranking: tuple[ScoredSubset, ...]
    certificate: Certificate

    def __getitem__(self, index):  # type: ignore[no-untyped-def, override]
        return self.ranking[index]

    def __len__(self) -> int:
        return len(self.ranking)


def enumerate_subsets(num_candidates: int, budget: int) -> torch.Tensor:
    """All subsets of ``budget`` indices out of ``num_candidates``, lexicographic: (C(L, k), k) int64."""
    combos = list(itertools.combinations(range(num_candidates), budget))
    return torch.tensor(combos, dtype=torch.long).reshape(len(combos), budget)


def check_budget_value(num_candidates: int, budget: object) -> int:
    if not is_integer(budget) or not 1 <= budget <= num_candidates:  # type: ignore[operator]
        raise InvalidConfigError(
            f"budget={budget!r} must be an integer between 1 and the number of candidates ({num_candidates}): "
            "lower it, or widen the candidates (kinds=, layers=, modules=)"
        )
    return operator.index(budget)  # type: ignore[arg-type]


def check_budget(num_candidates: int, budget: int, max_subsets: int = DEFAULT_MAX_SUBSETS) -> int:
    """Validate the budget; return the number of subsets exhaustive search would score."""
    budget = check_budget_value(num_candidates, budget)
    count = math.comb(num_candidates, budget)
    if count > max_subsets:
        raise SearchSpaceTooLargeError(
            f"exhaustive search would score C({num_candidates}, {budget}) = {count:,} subsets, more than "
            f"max_subsets={max_subsets:,}: use a smaller budget, fewer candidates (kinds=('q', 'v'), "
            "layers=[...]), or raise max_subsets"
        )
    return count


def check_exhaustive(space: SearchSpace, num_candidates: int, max_subsets: int, remedy: str) -> int:
    """Size of ``space``; ``SearchSpaceTooLargeError`` ending with ``remedy`` when above ``max_subsets``."""
    count = space.size(num_candidates)
    if count > max_subsets:
        raise SearchSpaceTooLargeError(
            f"exhaustive search would score {count:,} subsets ({space.describe()} over {num_candidates} "
            f"candidates), more than max_subsets={max_subsets:,}: {remedy}"
        )
    return count


def _symmetric(matrices: torch.Tensor) -> torch.Tensor:
    return 0.5 * (matrices + matrices.transpose(-1, -2))


def _lower_bounds(
    contributions: torch.Tensor, base_kernel: torch.Tensor, subsets: Sequence[tuple[int, ...]]
) -> torch.Tensor:
    """``ritz_lower_bounds`` of subsets of any sizes, in their order (m,)."""
    bounds = torch.empty(len(subsets), dtype=torch.float64)
    for positions, rows in by_size(subsets):
        bounds[torch.tensor(positions)] = ritz_lower_bounds(base_kernel, contributions, rows)
    return bounds


def _best(
    contributions: torch.Tensor,
    base_kernel: torch.Tensor,
    subsets: Sequence[tuple[int, ...]],
    values: Sequence[float] | None,
    top: int | None,
    sigma: float,
    targets: torch.Tensor | None,
    batch_size: int,
) -> tuple[tuple[ScoredSubset, ...], int]:
    """The ``top`` best of ``subsets`` by (ratio, indices), scored by ``score_subsets``; all when ``top`` is None.

    ``values``: lambda_max(K + S_C) of each subset (branch and bound's pool), or None: then each subset
    gets a lower bound (``ritz_lower_bounds``) and the ``top`` subsets with the smallest bounds are solved,
    whose largest lambda_max is at least the ``top``-th smallest of the space. Only subsets whose value or
    bound is within ``_SLACK`` of that cutoff are scored, so the ranking is exact and does not depend on
    how ``values`` were rounded. Returns the ranking and the number of subsets solved exactly.
    """
    solved = 0
    if top is not None and top < len(subsets):
        if values is None:
            bounds = _lower_bounds(contributions, base_kernel, subsets)
            first = [subsets[i] for i in bounds.topk(top, largest=False).indices.tolist()]
            cutoff = max(
                entry.lambda_max for entry in score_list(contributions, base_kernel, first, sigma, None, batch_size)
            )
            solved = top
        else:
            bounds = torch.as_tensor(values, dtype=torch.float64)
            cutoff = float(torch.kthvalue(bounds, top).values)
        near = torch.nonzero(bounds <= cutoff + _SLACK * abs(cutoff)).flatten().tolist()
        subsets = [subsets[i] for i in near]
    scored = score_list(contributions, base_kernel, subsets, sigma, targets, batch_size)
    ranking = tuple(sorted(scored, key=lambda entry: (entry.ratio, entry.indices))[:top])
    return ranking, solved + len(subsets)


class _Pool:
    """Admissible subsets evaluated so far, kept while within slack of the ``top``-th best (all if None)."""

    def __init__(self, top: int | None) -> None:
        self.top = top
        self.values: dict[tuple[int, ...], float] = {}
        self._worst_of_best: list[float] = []  # max-heap (negated) of the ``top`` smallest values
        self._trim_at = 4 * (top or 0) + 256  # sizes double between trims, so adding stays cheap with many ties

    def threshold(self) -> float:
        """Values above this cannot enter the ranking (inf until ``top`` subsets are known)."""
        if self.top is None or len(self._worst_of_best) < self.top:
            return math.inf
        value = -self._worst_of_best[0]
        return value + _SLACK * abs(value)

    def add(self, value: float, subset: tuple[int, ...]) -> None:
        if subset in self.values or value > self.threshold():
            return
        self.values[subset] = value
        if self.top is None:
            return
        if len(self._worst_of_best) < self.top:
            heapq.heappush(self._worst_of_best, -value)
        elif value < -self._worst_of_best[0]:
            heapq.heapreplace(self._worst_of_best, -value)
        if len(self.values) > self._trim_at:
            limit = self.threshold()
            self.values = {key: v for key, v in self.values.items() if v <= limit}
            self._trim_at = max(self._trim_at, 2 * len(self.values))

    def subsets(self) -> list[tuple[int, ...]]:
        limit = self.threshold()
        return [subset for subset, value in self.values.items() if value <= limit]


@dataclass
class _Problem:
    """A block problem in search order: blocks sorted by lambda_max(K + G_b), G_b the sum of its S_l."""

    blocks: list[tuple[int, ...]]
    kernels: torch.Tensor  # G (B, n, n)
    flat: torch.Tensor  # G (B, n * n)
    weights: torch.Tensor  # (B,) float64, zeros when unweighted
    capacity: float
    min_blocks: int
    max_blocks: int
    single: torch.Tensor  # lambda_max(K + G_b) (B,)


def _prepare(problem: BlockProblem, contributions: torch.Tensor, base_kernel: torch.Tensor) -> _Problem:
    n = base_kernel.shape[0]
    kernels = torch.stack(
        [
            contributions[list(block)].sum(0) if block else torch.zeros(n, n, dtype=torch.float64)
            for block in problem.blocks
        ]
    )
    single = extreme_eigenvalues(base_kernel + kernels)[1]
    order = sorted(range(len(problem.blocks)), key=lambda b: (float(single[b]), b))
    index = torch.tensor(order, dtype=torch.long)
    weights = torch.zeros(len(order), dtype=torch.float64)
    if problem.weights is not None:
        weights = torch.tensor([float(problem.weights[b]) for b in order], dtype=torch.float64)
    capacity = math.inf if problem.capacity is None else float(problem.capacity)
    return _Problem(
        blocks=[tuple(problem.blocks[b]) for b in order],
        kernels=kernels[index],
        flat=kernels[index].reshape(len(order), n * n),
        weights=weights,
        capacity=capacity,
        min_blocks=problem.min_blocks,
        max_blocks=min(problem.max_blocks, len(order)),
        single=single[index],
    )


def _smallest_sums(values: torch.Tensor, allowed: torch.Tensor, need: int) -> torch.Tensor:
    """Per row of values (C, B), the sum of the ``need`` smallest allowed ones; inf if fewer are allowed."""
    if need <= 0:
        return torch.zeros(values.shape[0], dtype=torch.float64)
    if need > values.shape[1]:
        return torch.full((values.shape[0],), math.inf, dtype=torch.float64)
    masked = values.clamp(min=0.0).masked_fill(~allowed, math.inf)
    return masked.topk(need, dim=1, largest=False).values.sum(1)


def _quadratic_forms(vectors: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """u^T G_b u for unit vectors (C, n) and flattened blocks (B, n * n): (C, B)."""
    outer = (vectors[:, :, None] * vectors[:, None, :]).reshape(vectors.shape[0], -1)
    return outer @ flat.T


def _union(problem: _Problem, positions: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted(i for b in positions for i in problem.blocks[b]))


def _root_bound(problem: _Problem, base_top: float, base_vector: torch.Tensor) -> float:
    """A lower bound on lambda_max(K + S_C) over every pick of the problem (Rayleigh at u_K, and Weyl)."""
    need = max(problem.min_blocks, 1)
    fits = problem.weights <= problem.capacity
    forms = _quadratic_forms(base_vector[None], problem.flat)
    rayleigh = base_top + float(_smallest_sums(forms, fits[None], need)[0])
    feasible = problem.single[fits]
    weyl = float(feasible.sort().values[need - 1]) if feasible.numel() >= need else math.inf
    return max(rayleigh, weyl, base_top)


def _beam(
    problem: _Problem,
    base_kernel: torch.Tensor,
    width: int,
    pool: _Pool,
    stop_when_full: bool = False,
) -> tuple[int, int]:
    """Keep the best ``width`` partial picks per size; every admissible pick evaluated goes to ``pool``.

    Returns (nodes expanded, kernels evaluated). ``stop_when_full``: stop once ``pool`` holds ``top`` entries
    and the current size is admissible (used to seed branch and bound).
    """
    states: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    nodes = evaluated = 0
    num_blocks = len(problem.blocks)
    for size in range(1, problem.max_blocks + 1):
        children: dict[tuple[int, ...], tuple[tuple[int, ...], int]] = {}
        for chosen, weight in states:
            nodes += 1
            for b in range(num_blocks):
                if b not in chosen and weight + float(problem.weights[b]) <= problem.capacity:
                    children.setdefault(tuple(sorted((*chosen, b))), (chosen, b))
        if not children:
            break
        keys = list(children)
        partials = torch.stack([base_kernel + problem.kernels[list(chosen)].sum(0) for chosen, _ in states])
        parent_of = {chosen: i for i, (chosen, _) in enumerate(states)}
        parents = torch.tensor([parent_of[children[key][0]] for key in keys], dtype=torch.long)
        added = torch.tensor([children[key][1] for key in keys], dtype=torch.long)
        values = extreme_eigenvalues(partials[parents] + problem.kernels[added])[1].tolist()
        evaluated += len(keys)
        unions = [_union(problem, key) for key in keys]
        if size >= problem.min_blocks:
            for value, subset in zip(values, unions, strict=True):
                if subset:
                    pool.add(value, subset)
            if stop_when_full and math.isfinite(pool.threshold()):
                break
        ranked = sorted(range(len(keys)), key=lambda i: (values[i], unions[i]))[:width]
        states = [(keys[i], float(problem.weights[list(keys[i])].sum())) for i in ranked]
    return nodes, evaluated


class _BestFirst:
    """The best-first loop of both branch and bounds: ``heap`` entries start with a key that lower-bounds the
    pool value of every completion of the node; ``_expand`` pops one node and pushes its open children."""

    heap: list[tuple]
    pool: _Pool
    nodes: int

    def run(self, max_nodes: int | None, time_limit: float | None, started: float) -> tuple[str | None, float]:
        """Search until done or a limit; returns (why it stopped early or None, smallest open key; inf when
        every node is ruled out)."""
        while self.heap:
            if self.heap[0][0] > self.pool.threshold():
                break
            if max_nodes is not None and self.nodes >= max_nodes:
                return "max_nodes", self.heap[0][0]
            if time_limit is not None and time.perf_counter() - started >= time_limit:
                return "time_limit", self.heap[0][0]
            self.nodes += 1
            self._expand(*heapq.heappop(self.heap)[2:])
        return None, math.inf

    def _expand(self, *node: object) -> None:
        raise NotImplementedError


class _BranchAndBound(_BestFirst):
    """Best-first branch and bound over the problems of a space; fills ``pool`` with the exact top.

    A node is a partial pick (bound, sequence, problem, chosen positions, lambda_max, weight, top
    eigenvector); its children add one block at a later position. The heap is ordered by bound, so
    the first bound above the pool's threshold ends the search with every open pick ruled out.
    """

    def __init__(self, problems: list[_Problem], base_kernel: torch.Tensor, pool: _Pool) -> None:
        self.problems, self.base_kernel, self.pool = problems, base_kernel, pool
        self.nodes = self.evaluated = 0
        self.sequence = itertools.count()
        eigenvalues, eigenvectors = torch.linalg.eigh(base_kernel)
        top, vector = float(eigenvalues[-1]), eigenvectors[:, -1]
        self.heap = [
            (_root_bound(problem, top, vector), next(self.sequence), index, (), top, 0.0, vector)
            for index, problem in enumerate(problems)
            if problem.blocks
        ]
        heapq.heapify(self.heap)

    def _expand(self, index: int, chosen: tuple[int, ...], value: float, weight: float, vector: torch.Tensor) -> None:
        """Evaluate the children its bounds cannot rule out, pool the admissible ones, push the open ones."""
        problem, pool = self.problems[index], self.pool
        num_blocks = len(problem.blocks)
        size = len(chosen) + 1
        need = max(problem.min_blocks - size, 0)  # blocks a child still needs to be admissible
        positions = torch.arange(chosen[-1] + 1 if chosen else 0, num_blocks)
        room = problem.capacity - weight
        positions = positions[(problem.weights[positions] <= room) & (num_blocks - 1 - positions >= need)]
        later = torch.arange(num_blocks)[None, :] > positions[:, None]
        allowed = later & (problem.weights[None, :] <= room - problem.weights[positions][:, None])
        # Screen with the parent's vector u: child j and its completions have lambda_max >= this.
        partial = self.base_kernel + problem.kernels[list(chosen)].sum(0) if chosen else self.base_kernel
        forms = _quadratic_forms(vector[None], problem.flat)[0].clamp(min=0.0)
        screen = float(vector @ partial @ vector) + forms[positions]
        screen = screen + _smallest_sums(forms.expand(len(positions), -1), allowed, need)
        keep = screen.clamp(min=value) <= pool.threshold()
        positions, allowed = positions[keep], allowed[keep]
        if positions.numel() == 0:
            return
        more = max(need, 1)  # blocks that a child's strict completions add
        open_ = (allowed.sum(1) >= more) & (size < problem.max_blocks)
        kernels = partial + problem.kernels[positions]
        values = torch.empty(len(positions), dtype=torch.float64)
        vectors = torch.empty(len(positions), partial.shape[0], dtype=torch.float64)
        if bool(open_.any()):
            eigenvalues, eigenvectors = torch.linalg.eigh(kernels[open_])
            values[open_], vectors[open_] = eigenvalues[:, -1], eigenvectors[:, :, -1]
        if bool((~open_).any()):
            values[~open_] = torch.linalg.eigvalsh(kernels[~open_])[:, -1]
        self.evaluated += len(positions)
        if size >= problem.min_blocks:
            for b, child_value in zip(positions.tolist(), values.tolist(), strict=True):
                subset = _union(problem, (*chosen, b))
                if subset:
                    pool.add(child_value, subset)
        if not bool(open_.any()):
            return
        bounds = values[open_] + _smallest_sums(_quadratic_forms(vectors[open_], problem.flat), allowed[open_], more)
        limit = pool.threshold()
        for b, bound, child_value, child_vector in zip(
            positions[open_].tolist(), bounds.tolist(), values[open_].tolist(), vectors[open_], strict=True
        ):
            if bound <= limit:
                child = (*chosen, b), child_value, weight + float(problem.weights[b]), child_vector
                heapq.heappush(self.heap, (bound, next(self.sequence), index, *child))


def _largest_sums(values: torch.Tensor, allowed: torch.Tensor, count: int) -> torch.Tensor:
    """Per row of ``allowed`` (C, B), the sum of the ``count`` largest allowed ``values`` (B,) or (C, B), >= 0."""
    if count <= 0:
        return torch.zeros(allowed.shape[0], dtype=torch.float64)
    masked = values.clamp(min=0.0).expand(allowed.shape[0], -1).masked_fill(~allowed, 0.0)
    return masked.topk(min(count, allowed.shape[1]), dim=1).values.sum(1)


def _completion_upper_bounds(
    eigenvalues: torch.Tensor, vectors: torch.Tensor, problem: _Problem, tops: torch.Tensor, allowed: torch.Tensor,
    count: int,
) -> torch.Tensor:  # fmt: skip
    """Upper bounds on lambda_max(A + S_Q) for partial kernels A (eigenvalues (C, n), top eigenvectors u (C, n))
    and any Q of at most ``count`` allowed blocks (C, B).

    In the basis (u, u-perp), A + S_Q = [[l1 + u^T S u, c^T], [c, D]] with c = P S u and D <= l2 + lambda_max(S)
    (P: projector off u), so lambda_max <= that of the 2 x 2 matrix [[a, |c|], [|c|, d]] with each entry
    bounded by the ``count`` largest per-block terms: a <= l1 + sum u^T G_b u, |c| <= sum |P G_b u|,
    d <= l2 + sum lambda_max(G_b). Nearly tight when A's top eigenvalue stands out (the head's kernel
    dominates); never worse than Weyl's l1 + sum lambda_max(G_b), which is also applied.
    """
    forms = _quadratic_forms(vectors, problem.flat).clamp(min=0.0)  # (C, B)
    images = torch.einsum("bij,cj->cbi", problem.kernels, vectors)  # G_b u (C, B, n)
    off = (images.pow(2).sum(-1) - forms.pow(2)).clamp(min=0.0).sqrt()
    first, second = eigenvalues[:, -1], eigenvalues[:, -2] if eigenvalues.shape[1] > 1 else eigenvalues[:, -1]
    spread = _largest_sums(tops, allowed, count)
    a = first + _largest_sums(forms, allowed, count)
    c = _largest_sums(off, allowed, count)
    d = second + spread
    two_by_two = 0.5 * (a + d) + torch.sqrt((0.5 * (a - d)).pow(2) + c.pow(2))
    return torch.minimum(two_by_two, first + spread)


class _MaxBranchAndBound(_BestFirst):
    """Best-first branch and bound for the LARGEST lambda_max(K + S_C) (K = 0 for ``max_lambda_max``).

    A node's completions are bounded by ``_completion_upper_bounds`` (a 2 x 2 reduction along the node's
    top eigenvector, and Weyl). ``pool`` holds -lambda_max and the heap keys are -(upper bound), so the
    minimising ``_Pool`` and loop serve: ``run`` returns minus the largest open upper bound.
    """

    def __init__(self, problems: list[_Problem], base_kernel: torch.Tensor, pool: _Pool) -> None:
        self.problems, self.base_kernel, self.pool = problems, base_kernel, pool
        self.nodes = self.evaluated = 0
        self.sequence = itertools.count()
        self.tops = [extreme_eigenvalues(p.kernels)[1].clamp(min=0.0) if p.blocks else None for p in problems]
        eigenvalues, eigenvectors = torch.linalg.eigh(base_kernel)
        self.heap = []
        for index, problem in enumerate(problems):
            if problem.blocks:
                everything = torch.ones(1, len(problem.blocks), dtype=torch.bool)
                bound = _completion_upper_bounds(eigenvalues[None], eigenvectors[None, :, -1], problem,
                                                 self.tops[index], everything, problem.max_blocks)  # fmt: skip
                self.heap.append((-float(bound[0]), next(self.sequence), index, (), 0.0))
        heapq.heapify(self.heap)

    def _expand(self, index: int, chosen: tuple[int, ...], weight: float) -> None:
        problem, pool = self.problems[index], self.pool
        num_blocks = len(problem.blocks)
        size = len(chosen) + 1
        need = max(problem.min_blocks - size, 0)
        positions = torch.arange(chosen[-1] + 1 if chosen else 0, num_blocks)
        room = problem.capacity - weight
        positions = positions[(problem.weights[positions] <= room) & (num_blocks - 1 - positions >= need)]
        if positions.numel() == 0:
            return
        partial = self.base_kernel + problem.kernels[list(chosen)].sum(0) if chosen else self.base_kernel
        eigenvalues, eigenvectors = torch.linalg.eigh(partial + problem.kernels[positions])
        self.evaluated += len(positions)
        if size >= problem.min_blocks:
            for b, child_value in zip(positions.tolist(), eigenvalues[:, -1].tolist(), strict=True):
                subset = _union(problem, (*chosen, b))
                if subset:  # a structured block may hold no candidate
                    pool.add(-child_value, subset)
        if size >= problem.max_blocks:
            return
        later = torch.arange(num_blocks)[None, :] > positions[:, None]
        allowed = later & (problem.weights[None, :] <= room - problem.weights[positions][:, None])
        bounds = _completion_upper_bounds(eigenvalues, eigenvectors[:, :, -1], problem, self.tops[index], allowed,
                                          problem.max_blocks - size)  # fmt: skip
        limit = pool.threshold()
        for b, bound, open_ in zip(positions.tolist(), bounds.tolist(), allowed.any(1).tolist(), strict=True):
            if open_ and -bound <= limit:
                heapq.heappush(self.heap, (-bound, next(self.sequence), index, (*chosen, b),
                                           weight + float(problem.weights[b])))  # fmt: skip


def _search_max(
    parts: torch.Tensor,
    base: torch.Tensor,
    space: SearchSpace,
    objective: Objective,
    sigma: float,
    top: int,
    targets: torch.Tensor | None,
    limits: tuple[int | None, float | None, float],
    batch_size: int,
) -> tuple[tuple[ScoredSubset, ...], Certificate]:
    """Exact top ``top`` of ``max_ratio`` (lambda_max of K + S_C) or ``max_lambda_max`` (of S_C alone) by
    ``_MaxBranchAndBound``, started from the greedy picks; ranked and scored like every other objective."""
    num_candidates = parts.shape[0]
    kernel_base = _symmetric(base) if objective.name == "max_ratio" else torch.zeros_like(base)
    problems = [_prepare(problem, _symmetric(parts), kernel_base) for problem in space.blocks(num_candidates)]
    pool = _Pool(top)
    seeds, nodes = _objective_beam(parts, base, space, objective, sigma, targets, 1, batch_size)
    for positions, rows in by_size(seeds):
        tops = extreme_eigenvalues(subset_kernels(kernel_base, parts, rows))[1].tolist()
        for position, value in zip(positions, tops, strict=True):
            pool.add(-value, seeds[position])
    search = _MaxBranchAndBound(problems, kernel_base, pool)
    stopped, open_key = search.run(*limits)
    open_top = -open_key
    ranking = _ranked(parts, base, pool.subsets(), objective, sigma, top, targets, batch_size)
    best = ranking[0].score if ranking else -math.inf
    bound = open_top if objective.name == "max_lambda_max" else spectral_ratio(
        torch.tensor(open_top), float(extreme_eigenvalues(base)[1]), sigma).item()  # fmt: skip
    certificate = Certificate(
        method="exact", optimal=stopped is None, best_ratio=ranking[0].ratio if ranking else math.inf,
        lower_bound=None, gap=0.0 if stopped is None else max(bound - best, 0.0),
        certified=len(ranking) if stopped is None else sum(1 for e in ranking if e.score >= bound),
        nodes=nodes + search.nodes, evaluated=len(seeds) + search.evaluated, space_size=space.size(num_candidates),
        stopped=stopped, objective=objective.name,
    )  # fmt: skip
    return ranking, certificate


def _check_inputs(contributions: torch.Tensor, base_kernel: torch.Tensor) -> None:
    shape = tuple(contributions.shape)
    if len(shape) != 3 or shape[1] != shape[2] or tuple(base_kernel.shape) != shape[1:]:
        raise InvalidInputError(
            f"contributions must be (L, n, n) and base_kernel (n, n), got {shape} and {tuple(base_kernel.shape)}: "
            "pass S and K as returned by compute_kernels"
        )


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


def _check_options(method: object, top: object, beam_width: object, max_nodes: object, time_limit: object) -> None:
    if method not in SEARCHES:
        raise InvalidConfigError(f"unknown method {method!r}: choose one of {SEARCHES}")
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


def rank_subsets(
    contributions: torch.Tensor,
    base_kernel: torch.Tensor,
    *,
    sigma: float,
    budget: int | None = None,
    space: SearchSpace | None = None,
    method: str = "exact",
    top: int | None = None,
    targets: torch.Tensor | None = None,
    beam_width: int = DEFAULT_BEAM_WIDTH,
    max_nodes: int | None = DEFAULT_MAX_NODES,
    time_limit: float | None = None,
    max_subsets: int = DEFAULT_MAX_SUBSETS,
    batch_size: int = 512,
    objective: str = "min_ratio",
) -> SearchResult:
    """Rank admissible subsets by spectral ratio, ascending (Algorithm 2), with a certificate.

    Args:
        contributions: S (L, n, n); base_kernel: K (n, n).
        sigma: ridge strength, > 0.
        budget: k, short for ``space=Budget(k)``; give exactly one of ``budget`` and ``space``.
        space: ``Budget``, ``ParamBudget``, ``Structured`` (``peft_ntk_select.search.spaces``) or any ``SearchSpace``.
        method: ``"exact"`` (branch and bound), ``"exhaustive"``, ``"greedy"`` or ``"beam"`` (module docstring).
        top: keep the best ``top`` subsets; None: the whole ranking (``"exact"`` then enumerates the space).
        targets: Y (n, c) for the risk and its bounds, or None.
        beam_width: partial subsets kept per size by ``"beam"``.
        max_nodes, time_limit: stop branch and bound after this many expanded nodes / seconds; the
            certificate then says ``optimal=False`` and gives the gap.
        max_subsets: refuse exhaustive enumeration beyond this many subsets.
        batch_size: subset kernels per batched eigensolve when enumerating.
        objective: what to rank by (``peft_ntk_select.search.objectives.OBJECTIVES``); ``"min_ratio"`` is
            Algorithm 2. ``"exact"`` runs branch and bound for ``BRANCH_AND_BOUND`` (``min_ratio``,
            ``max_ratio``, ``max_lambda_max``); the others are ranked by enumerating the space
            (``"exact"``/``"exhaustive"``, up to ``max_subsets``) or by ``"greedy"``/``"beam"``.

    Returns:
        ``SearchResult(ranking, certificate)``; it is also a sequence of the ranking, so
        ``result[0]`` is the best ``ScoredSubset``. Ties in the ratio keep lexicographic order of the indices.
    """
    started = time.perf_counter()
    sigma = check_sigma(sigma)
    _check_options(method, top, beam_width, max_nodes, time_limit)
    _check_inputs(contributions, base_kernel)
    num_candidates = contributions.shape[0]
    search_space = _resolve_space(num_candidates, budget, space)
    base, parts = base_kernel.double(), contributions.double()
    top = None if top is None else operator.index(top)
    chosen = get_objective(objective, targets is not None)
    if chosen.name in BRANCH_AND_BOUND[1:] and method == "exact" and top is not None:
        limits = (max_nodes, time_limit, started)
        ranking, certificate = _search_max(parts, base, search_space, chosen, sigma, top, targets, limits, batch_size)
        return SearchResult(ranking, replace(certificate, seconds=time.perf_counter() - started))
    if chosen.name != "min_ratio":
        ranking, certificate = _rank_by_objective(
            parts, base, search_space, chosen, sigma, top, targets, method, beam_width, max_subsets, batch_size
        )
        return SearchResult(ranking, replace(certificate, seconds=time.perf_counter() - started))
    if method == "exhaustive" or (method == "exact" and top is None):
        ranking, certificate = _exhaustive(parts, base, search_space, sigma, top, targets, max_subsets, batch_size)
    else:
        limits = (max_nodes, time_limit, started) if method == "exact" else None
        width = 1 if method == "greedy" else beam_width
        ranking, certificate = _search(
            parts, base, search_space, sigma, top, targets, method, width, limits, batch_size
        )
    ranking = tuple(replace(entry, score=entry.ratio) for entry in ranking)
    return SearchResult(ranking, replace(certificate, seconds=time.perf_counter() - started))


def _objective_beam(
    parts: torch.Tensor,
    base: torch.Tensor,
    space: SearchSpace,
    objective: Objective,
    sigma: float,
    targets: torch.Tensor | None,
    width: int,
    batch_size: int,
) -> tuple[list[tuple[int, ...]], int]:
    """Grow subsets one candidate at a time, keeping the ``width`` best by the objective at each size.

    Returns every admissible subset met and the number of partial subsets expanded.
    """
    num_candidates = parts.shape[0]
    states: list[tuple[int, ...]] = [()]
    admissible: dict[tuple[int, ...], None] = {}
    nodes = 0
    while states:
        nodes += len(states)
        grown = {tuple(sorted((*state, j))) for state in states for j in range(num_candidates) if j not in state}
        children = sorted(c for c in grown if space.admits(c, num_candidates) or space.extendable(c, num_candidates))
        if not children:
            break
        keys = objective.key(
            objective_values(parts, base, children, objective, sigma=sigma, targets=targets, batch_size=batch_size)
        ).tolist()
        admissible.update((child, None) for child in children if space.admits(child, num_candidates))
        order = sorted(range(len(children)), key=lambda i: (keys[i], children[i]))
        states = [children[i] for i in order if space.extendable(children[i], num_candidates)][:width]
    return list(admissible), nodes


def _ranked(
    parts: torch.Tensor,
    base: torch.Tensor,
    subsets: Sequence[tuple[int, ...]],
    objective: Objective,
    sigma: float,
    top: int | None,
    targets: torch.Tensor | None,
    batch_size: int,
) -> tuple[ScoredSubset, ...]:
    """The ``top`` best of ``subsets`` by ``objective`` (ties: lexicographic indices), scored, each with its
    objective value in ``score``."""
    values = objective_values(parts, base, subsets, objective, sigma=sigma, targets=targets, batch_size=batch_size)
    keys = objective.key(values).tolist()
    order = sorted(range(len(subsets)), key=lambda i: (keys[i], subsets[i]))[:top]
    scored = score_list(parts, base, [subsets[i] for i in order], sigma, targets, batch_size)
    return tuple(replace(entry, score=float(values[i])) for entry, i in zip(scored, order, strict=True))


def _rank_by_objective(
    parts: torch.Tensor,
    base: torch.Tensor,
    space: SearchSpace,
    objective: Objective,
    sigma: float,
    top: int | None,
    targets: torch.Tensor | None,
    method: str,
    width: int,
    max_subsets: int,
    batch_size: int,
) -> tuple[tuple[ScoredSubset, ...], Certificate]:
    """Rank by any objective: enumerate the space (exact and exhaustive) or grow it greedily (greedy, beam)."""
    num_candidates = parts.shape[0]
    enumerate_all = method in ("exact", "exhaustive")
    if enumerate_all:
        count = check_exhaustive(
            space, num_candidates, max_subsets, f"objective {objective.name!r} has no branch and bound "
            f"(only {', '.join(BRANCH_AND_BOUND)}): use method='beam' or 'greedy', a smaller space or fewer "
            "candidates, or raise max_subsets"
        )  # fmt: skip
        subsets, nodes = list(space.subsets(num_candidates)), 0
    else:
        count = space.size(num_candidates)
        subsets, nodes = _objective_beam(
            parts, base, space, objective, sigma, targets, 1 if method == "greedy" else width, batch_size
        )
    ranking = _ranked(parts, base, subsets, objective, sigma, top, targets, batch_size)
    certificate = Certificate(
        method="exhaustive" if enumerate_all else method,
        optimal=enumerate_all,
        best_ratio=ranking[0].ratio if ranking else math.inf,
        lower_bound=None,
        gap=0.0 if enumerate_all else None,
        certified=len(ranking) if enumerate_all else 0,
        nodes=nodes,
        evaluated=len(subsets),
        space_size=count,
        objective=objective.name,
    )
    return ranking, certificate


def _exhaustive(
    parts: torch.Tensor,
    base: torch.Tensor,
    space: SearchSpace,
    sigma: float,
    top: int | None,
    targets: torch.Tensor | None,
    max_subsets: int,
    batch_size: int,
) -> tuple[tuple[ScoredSubset, ...], Certificate]:
    """Enumerate the space and score every subset; refused above ``max_subsets``."""
    num_candidates = parts.shape[0]
    count = check_exhaustive(
        space, num_candidates, max_subsets, "pass top= with method='exact' (branch and bound) or use "
        "method='beam', use a smaller space or fewer candidates, or raise max_subsets"
    )  # fmt: skip
    ranking, solved = _best(parts, base, list(space.subsets(num_candidates)), None, top, sigma, targets, batch_size)
    best = ranking[0].ratio if ranking else math.inf
    return ranking, Certificate("exhaustive", True, best, best, 0.0, len(ranking), 0, solved, count)


def _search(
    parts: torch.Tensor,
    base: torch.Tensor,
    space: SearchSpace,
    sigma: float,
    top: int | None,
    targets: torch.Tensor | None,
    method: str,
    width: int,
    limits: tuple[int | None, float | None, float] | None,
    batch_size: int,
) -> tuple[tuple[ScoredSubset, ...], Certificate]:
    """Branch and bound (``limits`` = (max_nodes, time_limit, start time)) or, without limits, beam search."""
    num_candidates = parts.shape[0]
    symmetric_base = _symmetric(base)
    problems = [_prepare(problem, _symmetric(parts), symmetric_base) for problem in space.blocks(num_candidates)]
    exact = limits is not None
    pool = _Pool(top)
    nodes = evaluated = 0
    for problem in problems:  # branch and bound starts from the greedy picks
        expanded, solved = _beam(problem, symmetric_base, 1 if exact else width, pool, stop_when_full=exact)
        nodes, evaluated = nodes + expanded, evaluated + solved
    stopped = None
    if limits is not None:
        search = _BranchAndBound(problems, symmetric_base, pool)
        stopped, open_bound = search.run(*limits)
        nodes, evaluated = nodes + search.nodes, evaluated + search.evaluated
    else:
        eigenvalues, eigenvectors = torch.linalg.eigh(symmetric_base)
        roots = [_root_bound(p, float(eigenvalues[-1]), eigenvectors[:, -1]) for p in problems if p.blocks]
        open_bound = min(roots, default=math.inf)
    shortlist = pool.subsets()
    ranking, _ = _best(parts, base, shortlist, [pool.values[s] for s in shortlist], top, sigma, targets, batch_size)
    best_value = ranking[0].lambda_max if ranking else math.inf
    best_ratio = ranking[0].ratio if ranking else math.inf
    if exact:
        optimal = stopped is None
        proven = itertools.takewhile(lambda entry: entry.lambda_max < open_bound, ranking)
        certified = len(ranking) if optimal else sum(1 for _ in proven)
    else:
        optimal = best_value <= open_bound + _SLACK * abs(open_bound)
        certified = int(optimal and bool(ranking))
    base_top = float(extreme_eigenvalues(base)[1])
    lower = best_ratio if optimal else (min(best_value, open_bound) + sigma) / (base_top + sigma)
    certificate = Certificate(
        method=method,
        optimal=optimal,
        best_ratio=best_ratio,
        lower_bound=lower,
        gap=max(best_ratio - lower, 0.0),
        certified=certified,
        nodes=nodes,
        evaluated=evaluated,
        space_size=space.size(num_candidates),
        stopped=stopped,
    )
    return ranking, certificate


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


def resolve_search(
    space: SearchSpace, num_candidates: int, search: str, top: int | None, max_subsets: int, objective: str
) -> tuple[str, int | None]:
    """(method, top): ``auto`` is exhaustive up to ``max_subsets`` subsets, else exact branch and bound (beam
    search for objectives without it); exact and beam keep 10 by default."""
    if search not in ("auto", *SEARCHES):
        raise InvalidConfigError(f"unknown search {search!r}: choose auto or one of {SEARCHES}")
    if search == "auto":
        large = "exact" if objective in BRANCH_AND_BOUND else "beam"
        search = "exhaustive" if space.size(num_candidates) <= max_subsets else large
    if search == "exhaustive":
        check_exhaustive(space, num_candidates, max_subsets, "use search='exact', a smaller budget, fewer "
                         "candidates (kinds=('q', 'v'), layers=[...]), or raise max_subsets")  # fmt: skip
    if top is None and search != "exhaustive":
        top = 10
    return search, top

"""Exact top of a space by best-first branch and bound, for objectives with a bound (``Objective.bound``).

Both searches walk the space's block problems (``spaces.BlockProblem``; blocks searched in order of
lambda_max(A + G_b)). A node is a partial pick; its children add one block at a later position. The heap
is ordered by a bound on the top eigenvalue of every completion of the node (``bounds.py``), so the first
bound past the pool's threshold ends the search with every open pick ruled out.

- ``"lower"`` (minimised lambda_max(K + S_C)): children are screened with the parent's Rayleigh bound, the
  survivors solved in one batched eigensolve, and the open ones pushed with their own bounds.
- ``"upper"`` (maximised lambda_max of K + S_C, or of S_C alone): the pool holds -lambda_max and the heap
  keys are -(upper bound), so the same minimising pool and loop serve.

The pool starts from given seeds (the greedy picks), so pruning starts at once.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .bounds import child_lower_bounds, completion_upper_bounds, root_lower_bound
from .pool import Pool
from .problem import Problem, prepare, quadratic_forms, smallest_sums
from .scoring import by_size
from .spectral import eigen, eigenvalues, extreme_eigenvalues, subset_kernels, symmetric

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .objectives import Objective
    from .spaces import SearchSpace

Limits = tuple[int | None, float | None, float]  # max_nodes, time_limit, start time (perf_counter)


class _BestFirst:
    """The best-first loop: ``heap`` entries (key, sequence, problem index, chosen, weight, ...) start with a
    key that lower-bounds the pool value of every completion of the node; ``_expand`` pushes open children.
    ``sign``: pool values and keys are ``sign`` x lambda_max (-1 when maximising)."""

    sign = 1.0

    def __init__(self, problems: list[Problem], base_kernel: torch.Tensor, pool: Pool) -> None:
        self.problems, self.base_kernel, self.pool = problems, base_kernel, pool
        self.nodes = self.evaluated = 0
        self.sequence = itertools.count()
        self.heap: list[tuple] = []

    def push(self, key: float, index: int, chosen: tuple[int, ...], weight: float, *extra: Any) -> None:
        heapq.heappush(self.heap, (key, next(self.sequence), index, chosen, weight, *extra))

    def open_top(self) -> float:
        """The best top eigenvalue any subset not yet ruled out may have (sign x inf when none is open)."""
        return self.sign * (self.heap[0][0] if self.heap else math.inf)

    def run(self, max_nodes: int | None, time_limit: float | None, started: float) -> str | None:
        """Search until done or a limit; returns why it stopped early, or None (``open_top`` then says
        what is left open; nothing when done)."""
        while self.heap:
            if self.heap[0][0] > self.pool.threshold():
                self.heap = []
                break
            if max_nodes is not None and self.nodes >= max_nodes:
                return "max_nodes"
            if time_limit is not None and time.perf_counter() - started >= time_limit:
                return "time_limit"
            self.nodes += 1
            self._expand(*heapq.heappop(self.heap)[2:])
        return None

    def _expand(self, index: int, chosen: tuple[int, ...], weight: float, *extra: Any) -> None:
        raise NotImplementedError

    def _pool_children(self, index: int, chosen: tuple[int, ...], positions: torch.Tensor, tops: torch.Tensor) -> None:
        """Count the children's eigensolves and pool the admissible ones with their top eigenvalues."""
        problem = self.problems[index]
        self.evaluated += len(positions)
        if len(chosen) + 1 >= problem.min_blocks:
            for b, value in zip(positions.tolist(), tops.tolist(), strict=True):
                subset = problem.union((*chosen, b))
                if subset:  # a structured block may hold no candidate
                    self.pool.add(self.sign * value, subset)


class _Lower(_BestFirst):
    """Branch and bound for the SMALLEST lambda_max(K + S_C); nodes carry their top eigenpair."""

    def __init__(self, problems: list[Problem], base_kernel: torch.Tensor, pool: Pool) -> None:
        super().__init__(problems, base_kernel, pool)
        values, vectors = eigen(base_kernel)
        top, vector = float(values[-1]), vectors[:, -1]
        for index, problem in enumerate(problems):
            if problem.blocks:
                self.push(root_lower_bound(problem, top, vector), index, (), 0.0, top, vector)

    def _expand(self, index: int, chosen: tuple[int, ...], weight: float, value: float, vector: torch.Tensor) -> None:
        """Evaluate the children the parent's bound cannot rule out, pool the admissible ones, push the open ones."""
        problem = self.problems[index]
        size = len(chosen) + 1
        need = max(problem.min_blocks - size, 0)  # blocks a child still needs to be admissible
        positions = problem.next_positions(chosen, weight, need)
        allowed = problem.completions(positions, weight, chosen)
        # Screen with the parent's vector u: child j and its completions have lambda_max >= this.
        partial = problem.partial(self.base_kernel, chosen)
        forms = quadratic_forms(vector[None], problem.flat)[0].clamp(min=0.0)
        screen = float(vector @ partial @ vector) + forms[positions]
        screen = screen + smallest_sums(forms.expand(len(positions), -1), allowed, need)
        keep = screen.clamp(min=value) <= self.pool.threshold()
        positions, allowed = positions[keep], allowed[keep]
        if positions.numel() == 0:
            return
        more = max(need, 1)  # blocks that a child's strict completions add
        open_ = (allowed.sum(1) >= more) & (size < problem.max_blocks)
        kernels = partial + problem.kernels[positions]
        tops = torch.empty(len(positions), dtype=torch.float64)
        vectors = torch.empty(len(positions), partial.shape[0], dtype=torch.float64)
        if bool(open_.any()):
            spectrum, eigenvectors = eigen(kernels[open_])
            tops[open_], vectors[open_] = spectrum[:, -1], eigenvectors[:, :, -1]
        if bool((~open_).any()):
            tops[~open_] = eigenvalues(kernels[~open_])[:, -1]
        self._pool_children(index, chosen, positions, tops)
        if not bool(open_.any()):
            return
        bounds = child_lower_bounds(tops[open_], vectors[open_], problem, allowed[open_], more)
        limit = self.pool.threshold()
        for b, bound, top, child_vector in zip(
            positions[open_].tolist(), bounds.tolist(), tops[open_].tolist(), vectors[open_], strict=True
        ):
            if bound <= limit:
                self.push(bound, index, (*chosen, b), weight + float(problem.weights[b]), top, child_vector)


class _Upper(_BestFirst):
    """Branch and bound for the LARGEST lambda_max(A + S_C) (A = K, or 0 for an objective of S_C alone)."""

    sign = -1.0

    def __init__(self, problems: list[Problem], base_kernel: torch.Tensor, pool: Pool) -> None:
        super().__init__(problems, base_kernel, pool)
        self.tops = [extreme_eigenvalues(p.kernels)[1].clamp(min=0.0) if p.blocks else None for p in problems]
        values, vectors = eigen(base_kernel)
        for index, problem in enumerate(problems):
            if problem.blocks:
                everything = torch.ones(1, len(problem.blocks), dtype=torch.bool)
                bound = completion_upper_bounds(values[None], vectors[None, :, -1], problem, self.tops[index],
                                                everything, problem.max_blocks)  # fmt: skip
                self.push(-float(bound[0]), index, (), 0.0)

    def _expand(self, index: int, chosen: tuple[int, ...], weight: float) -> None:
        problem = self.problems[index]
        size = len(chosen) + 1
        positions = problem.next_positions(chosen, weight, max(problem.min_blocks - size, 0))
        if positions.numel() == 0:
            return
        values, vectors = eigen(problem.partial(self.base_kernel, chosen) + problem.kernels[positions])
        self._pool_children(index, chosen, positions, values[:, -1])
        if size >= problem.max_blocks:
            return
        allowed = problem.completions(positions, weight, chosen)
        bounds = completion_upper_bounds(values, vectors[:, :, -1], problem, self.tops[index], allowed,
                                         problem.max_blocks - size)  # fmt: skip
        limit = self.pool.threshold()
        for b, bound, open_ in zip(positions.tolist(), bounds.tolist(), allowed.any(1).tolist(), strict=True):
            if open_ and -bound <= limit:
                self.push(-bound, index, (*chosen, b), weight + float(problem.weights[b]))


@dataclass(frozen=True)
class Outcome:
    """What branch and bound left: the pool's ``subsets`` (the exact top when ``stopped`` is None, with
    near-ties), ``open_top`` (the best top eigenvalue a subset not ruled out may have; +-inf when none),
    ``nodes`` expanded and subset kernels ``evaluated``."""

    subsets: list[tuple[int, ...]]
    stopped: str | None
    open_top: float
    nodes: int
    evaluated: int


def _search(
    parts: torch.Tensor, base: torch.Tensor, space: SearchSpace, objective: Objective, pool: Pool
) -> _BestFirst:
    """The branch and bound of ``objective``'s bound over ``space``, ready to run."""
    bound_base = symmetric(base) if objective.bound_with_base else torch.zeros_like(base)
    problems = [prepare(problem, symmetric(parts), bound_base) for problem in space.blocks(parts.shape[0])]
    kind = {"lower": _Lower, "upper": _Upper}[objective.bound]  # type: ignore[index]
    return kind(problems, bound_base, pool)


def root_bound(parts: torch.Tensor, base: torch.Tensor, space: SearchSpace, objective: Objective) -> float:
    """A bound on the top eigenvalue of every admissible subset (lower or upper, as ``objective.bound``)."""
    return _search(parts, base, space, objective, Pool(None)).open_top()


def branch_and_bound(
    parts: torch.Tensor,
    base: torch.Tensor,
    space: SearchSpace,
    objective: Objective,
    top: int,
    seeds: Sequence[tuple[int, ...]],
    limits: Limits,
) -> Outcome:
    """The exact top ``top`` of ``space`` by ``objective`` (one with a ``bound``), from the ``seeds`` subsets:
    S (L, n, n), K (n, n) float64."""
    pool = Pool(top)
    search = _search(parts, base, space, objective, pool)
    bound_base = search.base_kernel
    for positions, rows in by_size(seeds):
        tops = extreme_eigenvalues(subset_kernels(bound_base, parts, rows))[1].tolist()
        for position, value in zip(positions, tops, strict=True):
            pool.add(search.sign * value, seeds[position])
    stopped = search.run(*limits)
    return Outcome(pool.subsets(), stopped, search.open_top(), search.nodes, len(seeds) + search.evaluated)

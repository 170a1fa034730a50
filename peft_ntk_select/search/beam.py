"""Greedy and beam search for any objective: grow picks one block at a time, keep the best ``width`` per size.

The space's block problems (``spaces.BlockProblem``) give the moves: a child adds one block (a candidate,
or a layer's group for a structured space) that still fits the capacity. Children are ranked by the
objective's value of their subset (ties: lexicographic indices), and the best ``width`` that can still
grow are expanded. Every admissible subset met is returned: the ranking is taken from them, and branch
and bound starts from them.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

from .scoring import objective_values

if TYPE_CHECKING:
    import torch

    from .objectives import Objective
    from .spaces import BlockProblem, SearchSpace


def _grow(problem: BlockProblem, states: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Each state plus one more block that fits the capacity, of a group it lacks, as sorted block positions, in
    sorted order."""
    weights = problem.weights or (0,) * len(problem.blocks)
    groups = problem.groups or tuple(range(len(problem.blocks)))
    capacity = math.inf if problem.capacity is None else problem.capacity
    children = set()
    for chosen in states:
        room = capacity - sum(weights[b] for b in chosen)
        taken = {groups[b] for b in chosen}
        children.update(
            tuple(sorted((*chosen, b)))
            for b in range(len(problem.blocks))
            if groups[b] not in taken and weights[b] <= room
        )
    return sorted(children)


def _beam(
    parts: torch.Tensor,
    base: torch.Tensor,
    problem: BlockProblem,
    objective: Objective,
    options: tuple[float, torch.Tensor | None, int, int],
    met: dict[tuple[int, ...], None],
) -> tuple[int, int]:
    """Beam search of one block problem; admissible subsets go to ``met``. Returns (nodes, evaluated)."""
    sigma, targets, width, batch_size = options
    states: list[tuple[int, ...]] = [()]
    nodes = evaluated = 0
    for size in range(1, min(problem.max_blocks, len(problem.blocks)) + 1):
        nodes += len(states)
        children = _grow(problem, states)
        if not children:
            break
        unions = [tuple(sorted(i for b in child for i in problem.blocks[b])) for child in children]
        values = objective_values(parts, base, unions, objective, sigma=sigma, targets=targets, batch_size=batch_size)
        keys = objective.key(values).tolist()
        evaluated += len(children)
        if size >= problem.min_blocks:
            met.update((subset, None) for subset in unions if subset)
        order = sorted(range(len(children)), key=lambda i: (keys[i], unions[i]))
        growing = (children[i] for i in order if size < problem.max_blocks and _grow(problem, [children[i]]))
        states = list(itertools.islice(growing, width))
    return nodes, evaluated


def beam_search(
    parts: torch.Tensor,
    base: torch.Tensor,
    space: SearchSpace,
    objective: Objective,
    options: tuple[float, torch.Tensor | None, int, int],
) -> tuple[list[tuple[int, ...]], int, int]:
    """Beam search of every block problem of ``space``: S (L, n, n), K (n, n); ``options`` = (sigma, targets Y or
    None, width, batch_size). Returns (admissible subsets met, nodes expanded, subsets evaluated)."""
    met: dict[tuple[int, ...], None] = {}
    nodes = evaluated = 0
    for problem in space.blocks(parts.shape[0]):
        expanded, solved = _beam(parts, base, problem, objective, options, met)
        nodes, evaluated = nodes + expanded, evaluated + solved
    return list(met), nodes, evaluated

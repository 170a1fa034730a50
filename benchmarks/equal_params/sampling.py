"""Exactly uniform draws from a parameter-budget space: nonempty subsets whose weights sum to at most a capacity.

The admissible subsets are counted by dynamic programming over (candidate index, remaining capacity), with
Python integers (no overflow, no rounding), and a uniform integer below the count is unranked into its subset.
Weights and capacity are first divided by the gcd of the weights (the same subsets fit), so that a budget of
tens of thousands of LoRA parameters becomes a table of a few hundred columns.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def reduced(weights: Sequence[int], capacity: int) -> tuple[list[int], int]:
    """(weights // g, capacity // g) with g the gcd of the weights: the same subsets fit."""
    if any(weight <= 0 for weight in weights):
        raise ValueError(f"weights must be positive integers, got {list(weights)}")
    divisor = math.gcd(*weights) if weights else 1
    return [weight // divisor for weight in weights], capacity // divisor if capacity >= 0 else -1


def subset_counts(weights: Sequence[int], capacity: int) -> list[list[int]]:
    """``counts[i][c]``: subsets of ``weights[i:]`` (the empty one included) whose sum is at most ``c``,
    for i in 0..len(weights) and c in 0..capacity. Shape (len(weights) + 1, capacity + 1)."""
    counts = [[1] * (capacity + 1) for _ in range(len(weights) + 1)]
    for i in range(len(weights) - 1, -1, -1):
        after, weight = counts[i + 1], weights[i]
        counts[i] = [after[c] + (after[c - weight] if c >= weight else 0) for c in range(capacity + 1)]
    return counts


def count_subsets(weights: Sequence[int], capacity: int) -> int:
    """Number of NONEMPTY subsets of ``weights`` whose sum is at most ``capacity``."""
    small, room = reduced(weights, capacity)
    return subset_counts(small, room)[0][room] - 1 if room >= 0 else 0


def unrank(counts: Sequence[Sequence[int]], weights: Sequence[int], capacity: int, index: int) -> list[int]:
    """The subset number ``index`` (0 <= index < counts[0][capacity]) in the order "without candidate i
    first, then with it", as sorted candidate indices; index 0 is the empty subset."""
    chosen, room = [], capacity
    for i, weight in enumerate(weights):
        without = counts[i + 1][room]
        if index >= without:
            index -= without
            room -= weight
            chosen.append(i)
    return chosen


def sample_subset(weights: Sequence[int], capacity: int, generator: random.Random) -> list[int]:
    """One nonempty subset of ``range(len(weights))`` whose weights sum to at most ``capacity``, drawn exactly
    uniformly among all of them with ``generator``; ``ValueError`` when none fits."""
    return sample_subsets(weights, capacity, 1, generator)[0]


def sample_subsets(weights: Sequence[int], capacity: int, n: int, generator: random.Random) -> list[list[int]]:
    """``n`` distinct nonempty subsets (fewer when the space is smaller), each drawn uniformly among those
    not drawn before: the first k of n draws are the draws of n = k."""
    small, room = reduced(weights, capacity)
    if room < 0 or not any(weight <= room for weight in small):
        raise ValueError(f"no nonempty subset of weights {list(weights)} fits in {capacity}")
    counts = subset_counts(small, room)
    total = counts[0][room] - 1
    drawn: list[list[int]] = []
    seen: set[int] = set()
    while len(drawn) < min(n, total):
        index = generator.randrange(1, total + 1)  # 0 is the empty subset
        if index not in seen:
            seen.add(index)
            drawn.append(unrank(counts, small, room, index))
    return drawn

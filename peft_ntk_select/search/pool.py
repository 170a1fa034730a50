"""The incumbents of a search: admissible subsets evaluated so far, smaller values better."""

from __future__ import annotations

import heapq
import math

# Relative slack on values: near-ties within it are never pruned, so rounding cannot change the ranking.
SLACK = 1e-9


def with_slack(value: float) -> float:
    """``value`` raised by the relative ``SLACK``: anything at most this may still tie with ``value``."""
    return value + SLACK * abs(value)


class Pool:
    """Admissible subsets evaluated so far, kept while within slack of the ``top``-th best (all if None).

    Values are minimised: a search that maximises adds minus its values.
    """

    def __init__(self, top: int | None) -> None:
        self.top = top
        self.values: dict[tuple[int, ...], float] = {}
        self._worst_of_best: list[float] = []  # max-heap (negated) of the ``top`` smallest values
        self._trim_at = 4 * (top or 0) + 256  # sizes double between trims, so adding stays cheap with many ties

    def threshold(self) -> float:
        """Values above this cannot enter the ranking (inf until ``top`` subsets are known)."""
        if self.top is None or len(self._worst_of_best) < self.top:
            return math.inf
        return with_slack(-self._worst_of_best[0])

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

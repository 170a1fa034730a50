"""Block problems prepared for branch and bound, and the per-block sums their bounds are made of."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .spectral import extreme_eigenvalues

if TYPE_CHECKING:
    from .spaces import BlockProblem


@dataclass
class Problem:
    """A block problem in search order: blocks sorted by lambda_max(A + G_b), G_b the sum of its S_l and A
    the kernel the bound is about (K, or 0 for an objective of S_C alone)."""

    blocks: list[tuple[int, ...]]
    kernels: torch.Tensor  # G (B, n, n)
    flat: torch.Tensor  # G (B, n * n)
    weights: torch.Tensor  # (B,) float64, zeros when unweighted
    capacity: float
    min_blocks: int
    max_blocks: int
    single: torch.Tensor  # lambda_max(A + G_b) (B,)
    groups: torch.Tensor  # (B,) long: at most one block per group

    def free(self, chosen: tuple[int, ...]) -> torch.Tensor:
        """(B,) bool: blocks whose group none of ``chosen`` holds."""
        if not chosen:
            return torch.ones(len(self.blocks), dtype=torch.bool)
        return ~torch.isin(self.groups, self.groups[list(chosen)])

    def union(self, positions: Iterable[int]) -> tuple[int, ...]:
        """The candidate indices of the blocks at ``positions``, sorted."""
        return tuple(sorted(i for b in positions for i in self.blocks[b]))

    def partial(self, base_kernel: torch.Tensor, chosen: tuple[int, ...]) -> torch.Tensor:
        """A + the blocks at ``chosen`` (n, n)."""
        return base_kernel + self.kernels[list(chosen)].sum(0) if chosen else base_kernel

    def next_positions(self, chosen: tuple[int, ...], weight: float, need: int) -> torch.Tensor:
        """Blocks after the last of ``chosen``, of a group ``chosen`` lacks, that fit the remaining capacity and
        leave ``need`` more after them."""
        positions = torch.arange(chosen[-1] + 1 if chosen else 0, len(self.blocks))
        fits = (self.weights[positions] <= self.capacity - weight) & self.free(chosen)[positions]
        return positions[fits & (len(self.blocks) - 1 - positions >= need)]

    def completions(self, positions: torch.Tensor, weight: float, chosen: tuple[int, ...] = ()) -> torch.Tensor:
        """Which blocks may still follow each child ``chosen`` + one of ``positions`` (C, B): later ones that fit
        its capacity, of a group the child lacks."""
        later = torch.arange(len(self.blocks))[None, :] > positions[:, None]
        room = self.capacity - weight - self.weights[positions][:, None]
        other_group = self.groups[None, :] != self.groups[positions][:, None]
        return later & (self.weights[None, :] <= room) & other_group & self.free(chosen)[None, :]


def prepare(problem: BlockProblem, contributions: torch.Tensor, base_kernel: torch.Tensor) -> Problem:
    """The problem over symmetric contributions S (L, n, n) with bound kernel A (n, n), in search order."""
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
    groups = torch.tensor([problem.groups[b] if problem.groups is not None else b for b in order], dtype=torch.long)
    weights = torch.zeros(len(order), dtype=torch.float64)
    if problem.weights is not None:
        weights = torch.tensor([float(problem.weights[b]) for b in order], dtype=torch.float64)
    return Problem(
        blocks=[tuple(problem.blocks[b]) for b in order],
        kernels=kernels[index],
        flat=kernels[index].reshape(len(order), n * n),
        weights=weights,
        capacity=math.inf if problem.capacity is None else float(problem.capacity),
        min_blocks=problem.min_blocks,
        max_blocks=min(problem.max_blocks, len(order)),
        single=single[index],
        groups=groups,
    )


def quadratic_forms(vectors: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """u^T G_b u for unit vectors (C, n) and flattened blocks (B, n * n): (C, B)."""
    outer = (vectors[:, :, None] * vectors[:, None, :]).reshape(vectors.shape[0], -1)
    return outer @ flat.T


def smallest_sums(values: torch.Tensor, allowed: torch.Tensor, need: int) -> torch.Tensor:
    """Per row of values (C, B), the sum of the ``need`` smallest allowed ones (clamped at 0); inf if fewer
    are allowed."""
    if need <= 0:
        return torch.zeros(values.shape[0], dtype=torch.float64)
    if need > values.shape[1]:
        return torch.full((values.shape[0],), math.inf, dtype=torch.float64)
    masked = values.clamp(min=0.0).masked_fill(~allowed, math.inf)
    return masked.topk(need, dim=1, largest=False).values.sum(1)


def largest_sums(values: torch.Tensor, allowed: torch.Tensor, count: int) -> torch.Tensor:
    """Per row of ``allowed`` (C, B), the sum of the ``count`` largest allowed ``values`` (B,) or (C, B), >= 0."""
    if count <= 0:
        return torch.zeros(allowed.shape[0], dtype=torch.float64)
    masked = values.clamp(min=0.0).expand(allowed.shape[0], -1).masked_fill(~allowed, 0.0)
    return masked.topk(min(count, allowed.shape[1]), dim=1).values.sum(1)

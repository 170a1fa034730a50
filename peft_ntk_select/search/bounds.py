"""Bounds on the top eigenvalue of every completion of a partial subset (docs/science.md section 3).

For a partial pick with kernel A = K + S_P (K = 0 for an objective of S_C alone) and any completion Q:

- lower (``min_ratio``): monotonicity, lambda_max(A + S_Q) >= lambda_max(A) (every S_l is PSD), and the
  Rayleigh bound at the top eigenvector u of A, lambda_max(A + S_Q) >= u^T A u + sum_{j in Q} u^T S_j u, so
  the smallest admissible u^T S_j u of the open candidates bounds every completion. Nearly tight when K
  dominates (the classifier head's kernel is ~1e3 times each S_l), which is when pruning is hardest without it.
- upper (``max_ratio``, ``max_lambda_max``): in the basis (u, u-perp) A + S_Q is bounded by a 2 x 2 matrix
  (``completion_upper_bounds``), and by Weyl, lambda_max(A) + sum lambda_max(S_j).
"""

from __future__ import annotations

import math

import torch

from .problem import Problem, largest_sums, quadratic_forms, smallest_sums


def root_lower_bound(problem: Problem, base_top: float, base_vector: torch.Tensor) -> float:
    """A lower bound on lambda_max(A + S_C) over every pick of the problem (Rayleigh at u_A, and Weyl)."""
    need = max(problem.min_blocks, 1)
    fits = problem.weights <= problem.capacity
    forms = quadratic_forms(base_vector[None], problem.flat)
    rayleigh = base_top + float(smallest_sums(forms, fits[None], need)[0])
    feasible = problem.single[fits]
    weyl = float(feasible.sort().values[need - 1]) if feasible.numel() >= need else math.inf
    return max(rayleigh, weyl, base_top)


def completion_upper_bounds(
    eigenvalues: torch.Tensor, vectors: torch.Tensor, problem: Problem, tops: torch.Tensor, allowed: torch.Tensor,
    count: int,
) -> torch.Tensor:  # fmt: skip
    """Upper bounds on lambda_max(A + S_Q) for partial kernels A (eigenvalues (C, n), top eigenvectors u (C, n))
    and any Q of at most ``count`` allowed blocks (C, B); ``tops``: lambda_max(G_b) (B,).

    In the basis (u, u-perp), A + S_Q = [[l1 + u^T S u, c^T], [c, D]] with c = P S u and D <= l2 + lambda_max(S)
    (P: projector off u), so lambda_max <= that of the 2 x 2 matrix [[a, |c|], [|c|, d]] with each entry
    bounded by the ``count`` largest per-block terms: a <= l1 + sum u^T G_b u, |c| <= sum |P G_b u|,
    d <= l2 + sum lambda_max(G_b). Nearly tight when A's top eigenvalue stands out (the head's kernel
    dominates); never worse than Weyl's l1 + sum lambda_max(G_b), which is also applied.
    """
    forms = quadratic_forms(vectors, problem.flat).clamp(min=0.0)  # (C, B)
    images = torch.einsum("bij,cj->cbi", problem.kernels, vectors)  # G_b u (C, B, n)
    off = (images.pow(2).sum(-1) - forms.pow(2)).clamp(min=0.0).sqrt()
    first, second = eigenvalues[:, -1], eigenvalues[:, -2] if eigenvalues.shape[1] > 1 else eigenvalues[:, -1]
    spread = largest_sums(tops, allowed, count)
    a = first + largest_sums(forms, allowed, count)
    c = largest_sums(off, allowed, count)
    d = second + spread
    two_by_two = 0.5 * (a + d) + torch.sqrt((0.5 * (a - d)).pow(2) + c.pow(2))
    return torch.minimum(two_by_two, first + spread)


def child_lower_bounds(
    values: torch.Tensor, vectors: torch.Tensor, problem: Problem, allowed: torch.Tensor, more: int
) -> torch.Tensor:
    """Lower bounds on lambda_max of the strict completions (``more`` blocks or more, from ``allowed`` (C, B))
    of children with top eigenpairs (values (C,), vectors (C, n)): Rayleigh at each child's vector."""
    return values + smallest_sums(quadratic_forms(vectors, problem.flat), allowed, more)

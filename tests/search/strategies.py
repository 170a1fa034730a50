"""Hypothesis strategies shared by the spectral and search tests: random PSD kernels and search spaces."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from peft_ntk_select.search.spaces import Budget, ParamBudget, Structured

# Floats in [-1, 1]; magnitudes below 1e-6 flushed to 0 so that no product or square goes subnormal.
ENTRIES = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False).map(lambda x: 0.0 if abs(x) < 1e-6 else x)
SIGMAS = st.floats(1e-4, 10.0)
FAST = settings(max_examples=40, deadline=None)


@st.composite
def psd_matrices(draw: st.DrawFn, n: int) -> torch.Tensor:
    """G G^T (symmetrised exactly) for a random float64 G of shape (n, m), m in 1..8."""
    g = torch.from_numpy(draw(arrays(np.float64, (n, draw(st.integers(1, 8))), elements=ENTRIES)))
    gram = g @ g.T
    return 0.5 * (gram + gram.T)


# Scale of K against each S_l: comparable, dominant, and as measured on real models with the new head as K
# (K about 1e6 times each S_l, so ratio - 1 is about 1e-7).
BASE_SCALES = {"psd": 1.0, "dominant": 1e3, "head": 1e6}


@st.composite
def base_kernels(draw: st.DrawFn, n: int) -> torch.Tensor:
    """K (n, n): zero (no head: causal LMs), or random PSD times ``BASE_SCALES`` (up to the real head's 1e6)."""
    regime = draw(st.sampled_from(["zero", *BASE_SCALES]))
    if regime == "zero":
        return torch.zeros(n, n, dtype=torch.float64)
    return BASE_SCALES[regime] * draw(psd_matrices(n))


@st.composite
def candidate_kernels(draw: st.DrawFn, max_candidates: int = 14) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(K (n, n), S (L, n, n), sigma): n in 2..5, L in 1..max_candidates, S_l random PSD."""
    n = draw(st.integers(2, 5))
    num_candidates = draw(st.integers(1, max_candidates))
    contributions = torch.stack([draw(psd_matrices(n)) for _ in range(num_candidates)])
    return draw(base_kernels(n)), contributions, draw(SIGMAS)


@st.composite
def structured_spaces(draw: st.DrawFn, num_candidates: int) -> Structured:
    """A valid Structured space: candidates spread over 1..4 layers with kinds q/k/v, some excluded."""
    layer_of = [draw(st.integers(0, 3)) for _ in range(num_candidates)]
    kind_of = [draw(st.sampled_from("qkv")) for _ in range(num_candidates)]
    exclude = draw(st.sets(st.integers(0, num_candidates - 1), max_size=num_candidates - 1))
    kept = [i for i in range(num_candidates) if i not in exclude]
    present = sorted({kind_of[i] for i in kept})
    choices = [kinds for size in range(1, len(present) + 1) for kinds in itertools.combinations(present, size)]
    kind_sets = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3, unique=True))
    layers = len({layer_of[i] for i in kept})
    return Structured(draw(st.integers(1, layers)), kind_sets, layer_of, kind_of, tuple(exclude))


@st.composite
def search_spaces(draw: st.DrawFn, num_candidates: int, max_size: int = 400) -> Budget | ParamBudget | Structured:
    """Any kind of space over ``num_candidates`` candidates with at most ``max_size`` admissible subsets."""
    kind = draw(st.sampled_from(["budget", "at_most", "params", "ranks", "structured"]))
    sizes = range(1, num_candidates + 1)
    if kind == "budget":
        return Budget(draw(st.sampled_from([k for k in sizes if Budget(k).size(num_candidates) <= max_size])))
    if kind == "at_most":
        fits = [k for k in sizes if Budget(k, exact=False).size(num_candidates) <= max_size]
        return Budget(draw(st.sampled_from(fits)), exact=False)
    if kind in ("params", "ranks"):
        counts = draw(st.lists(st.integers(1, 4), min_size=num_candidates, max_size=num_candidates))
        # rank options: consecutive candidates of one module (1 to 3 each) exclude each other
        groups = None
        if kind == "ranks":
            sizes_of = draw(st.lists(st.integers(1, 3), min_size=num_candidates, max_size=num_candidates))
            groups = tuple(module for module, size in enumerate(sizes_of) for _ in range(size))[:num_candidates]
        limit = min(counts)
        while limit < sum(counts) and ParamBudget(limit + 1, counts, groups).size(num_candidates) <= max_size:
            limit += 1
        return ParamBudget(draw(st.integers(min(counts), limit)), counts, groups)
    return draw(structured_spaces(num_candidates))


@st.composite
def sign_kernels(draw: st.DrawFn, n: int) -> torch.Tensor:
    """F sign(F)^T for random features F (n, m), m in 1..8: the structure of Adam's SignGD kernel (asymmetric,
    its symmetric part possibly indefinite)."""
    f = torch.from_numpy(draw(arrays(np.float64, (n, draw(st.integers(1, 8))), elements=ENTRIES)))
    return f @ f.sign().T


@st.composite
def sign_kernel_problems(draw: st.DrawFn, max_candidates: int = 10) -> tuple:
    """(K, S, sigma, space, top) with SignGD-shaped K (zero, or up to 1e3 x) and S_l, as ``kernel="adam"`` gives."""
    n = draw(st.integers(2, 5))
    num_candidates = draw(st.integers(1, max_candidates))
    contributions = torch.stack([draw(sign_kernels(n)) for _ in range(num_candidates)])
    base = draw(st.sampled_from([0.0, 1.0, 1e3])) * draw(sign_kernels(n))
    space = draw(search_spaces(num_candidates, max_size=300))
    return base, contributions, draw(SIGMAS), space, draw(st.integers(1, 12))

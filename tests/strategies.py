"""Hypothesis strategies shared by the spectral and search tests: random PSD kernels."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

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

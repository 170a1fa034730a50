"""Kernels: the base kernel K and the contributions S_l, computed by interchangeable engines."""

from .compute import ENGINES, compute_kernels, gram

__all__ = ["ENGINES", "compute_kernels", "gram"]

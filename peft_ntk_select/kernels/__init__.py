"""Kernels: the base kernel K and the contributions S_l, computed by interchangeable engines."""

from .compute import ENGINES, KERNELS, compute_kernels, gram

__all__ = ["ENGINES", "KERNELS", "compute_kernels", "gram"]

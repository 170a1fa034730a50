"""Plain-text tables and the matplotlib report (eigenvalue spectra of top picks, ratio of every subset).

matplotlib is an optional extra (``pip install peft-ntk-select[plot]``); it is imported only to plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import NTKSelectError
from .spectral import subset_kernels


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned text table: one header line, a rule, one line per row."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def plot_report(
    base_kernel: torch.Tensor,
    contributions: torch.Tensor,
    picks: Sequence[tuple[int, ...]],
    pick_labels: Sequence[str],
    ratios: Sequence[float],
    path: str | Path | None = None,
):
    """Two panels: sorted eigenvalues of S_C for each pick and of K (log scale), and r_C of every ranked subset.

    Args:
        base_kernel: K (n, n); contributions: S (L, n, n).
        picks: candidate indices of the subsets whose spectra are drawn; pick_labels: their legend labels.
        ratios: spectral ratio of every ranked subset, best first.
        path: where to save the figure (PNG); None to only return it.

    Returns:
        The matplotlib ``Figure``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise NTKSelectError("plotting needs matplotlib: pip install 'peft-ntk-select[plot]'") from err
    figure, (spectra_axis, ratio_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    zero = torch.zeros_like(base_kernel)
    kernels = subset_kernels(zero, contributions, torch.tensor(picks, dtype=torch.long).reshape(len(picks), -1))
    eigenvalues = torch.linalg.eigvalsh(torch.cat([kernels, base_kernel[None].double()])).flip(-1).clamp(min=1e-300)
    index = range(1, eigenvalues.shape[1] + 1)
    for values, label in zip(eigenvalues[:-1], pick_labels, strict=True):
        spectra_axis.semilogy(index, values.numpy(), marker=".", label=label)
    if base_kernel.any():
        spectra_axis.semilogy(index, eigenvalues[-1].numpy(), "k--", label="K (base kernel)")
    spectra_axis.set(title="Eigenvalues of S_C for the top picks", xlabel="index", ylabel="eigenvalue")
    spectra_axis.legend(fontsize=7)
    ratio_axis.plot(range(len(ratios)), [r - 1 for r in ratios], linewidth=1)
    ratio_axis.set(title="Spectral ratio of every ranked subset", xlabel="rank (0 = lowest ratio)", ylabel="r_C - 1")
    ratio_axis.set_yscale("log" if min(ratios) > 1 else "linear")
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure

"""The matplotlib report of a result: eigenvalue spectra of the top picks, the ratio of every ranked subset,
a table of the top picks, and optional stability and linearity panels.

matplotlib is an optional extra (``pip install 'peft-ntk-select[plot]'``), imported only to plot
(``figures.new_figure``: no pyplot, so the user's backend is left alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .figures import new_figure
from .search.spectral import subset_kernels
from .tables import format_number


def _spectra_panel(axis, base_kernel, contributions, picks, pick_labels) -> None:
    zero = torch.zeros_like(base_kernel)
    kernels = subset_kernels(zero, contributions, torch.tensor(picks, dtype=torch.long).reshape(len(picks), -1))
    eigenvalues = torch.linalg.eigvalsh(torch.cat([kernels, base_kernel[None].double()])).flip(-1).clamp(min=1e-300)
    index = range(1, eigenvalues.shape[1] + 1)
    for values, label in zip(eigenvalues[:-1], pick_labels, strict=True):
        axis.semilogy(index, values.numpy(), marker=".", label=label)
    if base_kernel.any():
        axis.semilogy(index, eigenvalues[-1].numpy(), "k--", label="K (base kernel)")
    axis.set(title="Eigenvalues of S_C for the top picks", xlabel="index", ylabel="eigenvalue")
    axis.legend(fontsize=7)


def _ratio_panel(axis, ratios: Sequence[float]) -> None:
    axis.plot(range(len(ratios)), [r - 1 for r in ratios], linewidth=1)
    axis.set(
        title="Spectral ratio of every ranked subset", xlabel="rank (0 = the best by the objective)", ylabel="r_C - 1"
    )
    axis.set_yscale("log" if min(ratios) > 1 else "linear")


def _table_panel(axis, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    axis.axis("off")
    table = axis.table(cellText=[[str(c) for c in row] for row in rows], colLabels=list(headers), loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.scale(1.0, 1.3)
    axis.set_title("Conditioning, Theorem 1 bounds and kernel-regression accuracy of the top picks")


def _stability_panel(axis, reports: Sequence[Any]) -> None:
    labels = [f"{r.kernel}, {r.axis}" for r in reports]
    positions = range(len(reports))
    axis.bar([p - 0.2 for p in positions], [r.mean_tau for r in reports], width=0.4, label="mean Kendall tau")
    axis.bar([p + 0.2 for p in positions], [r.top1_agreement for r in reports], width=0.4, label="top-1 agreement")
    axis.set_xticks(list(positions), labels, fontsize=8)
    axis.set(title="Stability of the ranking over seeds", ylim=(min(0.0, *[r.mean_tau for r in reports]), 1.05))
    axis.legend(fontsize=7)


def _linearity_panel(axis, curve: Any) -> None:
    axis.plot(curve.radii, curve.l_avg, marker="o", label="L_avg(r)")
    axis.plot(curve.radii, curve.l_upper, marker="s", label="L_upper(r)")
    axis.set(title="Linearity check (Algorithm 1)", xlabel="radius r", ylabel="Lipschitz estimate")
    axis.legend(fontsize=7)


def plot_report(
    base_kernel: torch.Tensor,
    contributions: torch.Tensor,
    picks: Sequence[tuple[int, ...]],
    pick_labels: Sequence[str],
    ratios: Sequence[float],
    path: str | Path | None = None,
    *,
    table: tuple[Sequence[str], Sequence[Sequence[Any]]] | None = None,
    stability: Sequence[Any] | None = None,
    linearity: Any | None = None,
):
    """Sorted eigenvalues of S_C for each pick and of K (log scale), and r_C of every ranked subset; optionally
    a table of the top picks, the stability of the ranking and the linearity curve.

    Args:
        base_kernel: K (n, n); contributions: S (L, n, n).
        picks: candidate indices of the subsets whose spectra are drawn; pick_labels: their legend labels.
        ratios: spectral ratio of every ranked subset, best first.
        path: where to save the figure (PNG); None to only return it.
        table: (headers, rows) drawn as a table panel.
        stability: ``StabilityReport``s (mean Kendall tau and top-1 agreement per kernel and axis).
        linearity: a ``LinearityCurve`` (``radii``, ``l_avg``, ``l_upper``).

    Returns:
        The matplotlib ``Figure``.
    """
    extras = [panel for panel, given in ((_stability_panel, stability), (_linearity_panel, linearity)) if given]
    heights = [1.0] + [0.25 + 0.06 * len(table[1])] * (table is not None) + [1.0] * (len(extras) > 0)
    rows = len(heights)
    figure = new_figure(figsize=(12, 4.5 * sum(heights)))
    grid = figure.add_gridspec(rows, 2, height_ratios=heights)
    _spectra_panel(figure.add_subplot(grid[0, 0]), base_kernel, contributions, picks, pick_labels)
    _ratio_panel(figure.add_subplot(grid[0, 1]), ratios)
    if table is not None:
        _table_panel(figure.add_subplot(grid[1, :]), *table)
    for column, panel in enumerate(extras):
        panel(figure.add_subplot(grid[rows - 1, column]), stability if panel is _stability_panel else linearity)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure


def spectrum_rows(entries: Sequence[Any], labels: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of ranked subsets: ratio, lambda_min, lambda_max, kappa, risk, Theorem 1 bounds, accuracy."""
    headers = ["pick", "ratio - 1", "lambda_min", "lambda_max", "kappa", "risk", "bound low", "bound up", "LOO acc"]
    number = format_number
    rows = [
        [label, number(e.ratio - 1, ".3e"), number(e.lambda_min), number(e.lambda_max), number(e.kappa),
         number(e.risk), number(e.risk_lower), number(e.risk_upper), number(e.accuracy, ".3f")]
        for label, e in zip(labels, entries, strict=True)
    ]  # fmt: skip
    return headers, rows

"""How much a pick depends on chance: rankings over seeds of the LoRA init and over sample draws.

With B = 0 at init, the LoRA kernel is a random r-dimensional sketch of the full-weight kernel
(docs/science.md section 4), and the n samples are a random draw too. A pick that changes with either is
noise. ``stability`` compares the rankings of repeated selections: Kendall tau between every pair of
runs (on the scores of one common list of subsets), how often the runs agree on the best subset, and how
often each candidate is in the best subset.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from ..search.objectives import OBJECTIVES
from ..search.scoring import objective_values
from ..tables import format_table

if TYPE_CHECKING:
    from ..result import SelectionResult

_CHUNK = 1024


def kendall_tau(x: torch.Tensor, y: torch.Tensor) -> float:
    """Kendall's tau-b between two score vectors (m,), ties counted as in tau-b; nan when one is constant."""
    x, y = x.double(), y.double()
    concordant = tied_x = tied_y = 0.0
    for start in range(0, x.shape[0], _CHUNK):
        dx = torch.sign(x[start : start + _CHUNK, None] - x[None, :])
        dy = torch.sign(y[start : start + _CHUNK, None] - y[None, :])
        concordant += float((dx * dy).sum())
        tied_x += float((dx != 0).sum())
        tied_y += float((dy != 0).sum())
    total = (tied_x * tied_y) ** 0.5
    return concordant / total if total > 0 else float("nan")


@dataclass(frozen=True)
class StabilityReport:
    """Agreement of the rankings of repeated selections that differ along one ``axis``.

    ``axis``: ``"init"`` (seeds of the LoRA A draw and, when redrawn, of the head; same samples) or
    ``"samples"`` (sample draws, same init);
    ``kernel``: ``"lora"`` or ``"expected"``; ``seeds``: the seed of each run; ``taus``: Kendall tau-b of
    every pair of runs, on the values of the runs' objective for the same subsets; ``top1_agreement``: share
    of runs whose best subset is the most common best subset; ``frequency``: per candidate, the share of runs whose best
    subset contains it (candidates never picked are left out); ``picks``: the best subset of each run.
    """

    kernel: str
    axis: str
    seeds: tuple[int, ...]
    taus: tuple[float, ...]
    top1_agreement: float
    frequency: dict[str, float]
    picks: tuple[tuple[str, ...], ...]

    @property
    def mean_tau(self) -> float:
        return sum(self.taus) / len(self.taus) if self.taus else float("nan")

    @property
    def min_tau(self) -> float:
        return min(self.taus, default=float("nan"))

    def to_dict(self) -> dict:
        return {**asdict(self), "mean_tau": self.mean_tau, "min_tau": self.min_tau}


def compare_runs(
    results: Sequence[SelectionResult],
    seeds: Sequence[int],
    kernel: str,
    axis: str,
    subsets: Sequence[tuple[int, ...]] | None = None,
) -> StabilityReport:
    """Compare selections of the same candidates and space (at least 2) made with different seeds.

    Every run's kernels score the same ``subsets`` (candidate indices of one size); None: the union of the
    runs' rankings.
    """
    names = list(dict.fromkeys(candidate.name for candidate in results[0].candidates))
    if subsets is None:
        subsets = sorted({results[0].entry_indices(entry) for r in results for entry in r.ranking})
    objective = OBJECTIVES[results[0].objective]  # the runs' own order (tau ignores its direction)
    scores = [
        objective_values(
            result.contributions, result.base_kernel, subsets, objective, sigma=result.sigma, targets=result.targets
        )  # fmt: skip
        for result in results
    ]
    taus = tuple(kendall_tau(a, b) for a, b in itertools.combinations(scores, 2))
    picks = tuple(_pick(r) for r in results)
    common = Counter(picks).most_common(1)[0][1]
    counts = Counter(module for r in results for module in r.ranking[0].modules)
    frequency = {name: counts[name] / len(results) for name in names if counts[name]}
    return StabilityReport(kernel, axis, tuple(seeds), taus, common / len(results), frequency, picks)


def _pick(result: SelectionResult) -> tuple[str, ...]:
    """The best subset's modules, each as ``name@rank`` under rank allocation (same modules at other ranks differ)."""
    best = result.ranking[0]
    if not result.allocates_ranks or best.ranks is None:
        return best.modules
    return tuple(f"{module}@{best.ranks[module]}" for module in best.modules)


def stability(
    run: Callable[[int, int, str, str], SelectionResult],
    *,
    seeds: Sequence[int],
    sample_draws: Sequence[int],
    base_seed: int,
    kernels: Sequence[str],
    subsets: Sequence[tuple[int, ...]] | None = None,
    redraw_head: bool = False,
) -> list[StabilityReport]:
    """Rerun selection with ``run(sample_seed, init_seed, kernel, axis)`` and compare the rankings on
    ``subsets`` (None: the union of the runs' rankings; see ``compare_runs``).

    For each kernel: along ``"init"``, one run per seed of ``seeds`` with the samples of ``base_seed``;
    along ``"samples"``, one run per seed of ``sample_draws`` with the init of ``base_seed``. The expected
    kernel does not depend on A, so it gets an ``"init"`` report only when ``run`` also redraws the head
    (``redraw_head``). An axis with fewer than 2 seeds is skipped.
    """
    reports = []
    for kernel in kernels:
        axes = {"init": [(base_seed, seed) for seed in seeds], "samples": [(seed, base_seed) for seed in sample_draws]}
        for axis, pairs in axes.items():
            if len(pairs) < 2 or (kernel == "expected" and axis == "init" and not redraw_head):
                continue
            results = [run(sample_seed, init_seed, kernel, axis) for sample_seed, init_seed in pairs]
            varied = [pair[0] if axis == "samples" else pair[1] for pair in pairs]
            reports.append(compare_runs(results, varied, kernel, axis, subsets))
    return reports


def format_stability(reports: Sequence[StabilityReport], short: dict[str, str] | None = None) -> str:
    """A text table: one line per report with mean and min Kendall tau, top-1 agreement and the usual picks.

    ``short``: display names of the candidates (e.g. ``{full name: "L0.q"}``); full names otherwise.
    """
    rows = []
    for report in reports:
        top = sorted(report.frequency.items(), key=lambda item: (-item[1], item[0]))[:4]
        picked = ", ".join(f"{(short or {}).get(name, name)} {share:.2f}" for name, share in top)
        rows.append(
            [report.kernel, report.axis, len(report.seeds), f"{report.mean_tau:.3f}", f"{report.min_tau:.3f}",
             f"{report.top1_agreement:.2f}", picked]
        )  # fmt: skip
    headers = ["kernel", "varied", "runs", "mean tau", "min tau", "top-1 agree", "most picked (share of runs)"]
    return format_table(headers, rows)

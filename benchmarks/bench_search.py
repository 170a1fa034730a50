"""Brute force against branch and bound on synthetic kernels with a realistic spread of magnitudes.

    .venv/bin/python benchmarks/bench_search.py [--seed 0] [--repeats 3] [--threads 1] [--json FILE]
    .venv/bin/python benchmarks/bench_search.py --markdown benchmarks/results/bench_search_synthetic_cpu.json

Prints, in one run:
1. brute force (every subset's kernel solved), exhaustive enumeration of the top 10 (every subset
   bounded, only those that can reach the top solved) and branch and bound on 36 candidates
   (12 layers x q/k/v), budget 4: C(36, 4) = 58,905 subsets; all three must give the same top 10;
2. the same on a hard case (K = 0, contributions of equal trace: the bounds are loose);
3. branch and bound for the exact optimum among 90 candidates (SmolLM2-135M's shape: 30 layers x q/k/v,
   grouped-query attention: W_q 576 -> 576, W_k/W_v 576 -> 192, r = 8), budget 6: C(90, 6) = 622,614,630
   subsets, with node counts; then the same candidates under a parameter budget and a structured space,
   and greedy/beam with the gap their certificate leaves;
4. the objectives that maximise a top eigenvalue (max_ratio, max_lambda_max): exhaustive top 10 against
   their upper-bound branch and bound on 36 candidates, and branch and bound on the 90;
5. the causal-LM regime: the same 90 contributions with K = 0 (no head trained in every pick), budget 6,
   objectives max_ratio (the default) and min_ratio, branch and bound stopped at ``--time-limit`` (60 s),
   with the gap its certificate leaves, and beam search beside it.

Sections 1, 3 and 4 are the classifier regime (a dominant head kernel K: the bounds are nearly tight); 2 and 5
have K = 0, where branch and bound may not close. ``--json FILE`` writes every row (regime, objective, space,
method, time, nodes, kernels solved, optimal, gap) with the date, machine and versions.

The kernels are random PSD n x n matrices (n = 32 samples) shaped like measured ones: a base kernel K
(the new classifier head) with a dominant top eigenvalue, about 1e3 times the median S_l in trace, and
contributions S_l = G_l G_l^T (rank r = 8) partly aligned with K's features, whose traces span two
orders of magnitude (log-uniform, larger for W_q and for later layers).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import harness
import torch

from peft_ntk_select import ParamBudget, Structured, rank_subsets

N_SAMPLES = 32
RANK = 8
HIDDEN = 576
KV_OUT = 192


def synthetic_kernels(layers: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[int], list[str], list[int]]:
    """K (n, n), S (3 * layers, n, n), and per candidate its layer, kind and LoRA parameter count."""
    generator = torch.Generator().manual_seed(seed)
    n = N_SAMPLES
    features = torch.randn(n, 64, generator=generator, dtype=torch.float64) + 1.0  # shared mean: a top mode
    base = features @ features.T
    layer_of, kind_of, num_params, parts = [], [], [], []
    for layer in range(layers):
        for kind in ("q", "k", "v"):
            projection = torch.randn(64, RANK, generator=generator, dtype=torch.float64) / 8.0
            sketch = 0.5 * features @ projection + torch.randn(n, RANK, generator=generator, dtype=torch.float64)
            part = sketch @ sketch.T
            spread = 10 ** (2 * torch.rand((), generator=generator, dtype=torch.float64))  # 1 .. 100
            trend = 1.0 + layer / max(layers - 1, 1)
            size = 1.5 if kind == "q" else 1.0
            parts.append(part / part.trace() * spread * trend * size)
            layer_of.append(layer)
            kind_of.append(kind)
            num_params.append(RANK * (HIDDEN + (HIDDEN if kind == "q" else KV_OUT)))
    contributions = torch.stack(parts)
    median = contributions.diagonal(dim1=1, dim2=2).sum(-1).median()
    base = base / base.trace() * 1e3 * median
    return base, contributions, layer_of, kind_of, num_params


ROWS: list[dict[str, Any]] = []
LOW = {"objective": "min_ratio"}  # sections 1-3: Algorithm 2 as printed (the maximised objectives come in 4 and 5)


def timed(repeats: int, **kw):
    """Best wall time of ``repeats`` runs of rank_subsets(**kw) (the machine is shared) and the last result."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = rank_subsets(**kw)
        best = min(best, time.perf_counter() - start)
    return best, result


def line(name: str, seconds: float, result, **record: Any) -> str:
    """The printed line of one timing; with ``record`` (case, regime, ...) also a row of the JSON file."""
    cert = result.certificate
    bound = "" if cert.lower_bound is None else f" (lower bound {cert.lower_bound:.9f})"
    gap = "" if cert.optimal or cert.gap is None else f", gap {cert.gap:.3g}{bound}"
    if record:
        ROWS.append({**record, "method": name, "seconds": seconds, "best_score": cert.best_ratio,
                     "optimal": cert.optimal, "certified": cert.certified, "gap": cert.gap,
                     "lower_bound": cert.lower_bound, "nodes": cert.nodes,
                     "evaluated": cert.evaluated, "space_size": cert.space_size, "stopped": cert.stopped,
                     "objective": cert.objective, "top": [list(e.indices) for e in result.ranking[:10]]})  # fmt: skip
    return (
        f"  {name:<34} {seconds:8.3f} s   best ratio {cert.best_ratio:.9f}  optimal={cert.optimal}  "
        f"nodes {cert.nodes:,}  evaluated {cert.evaluated:,}{gap}"
    )


def compare_with_brute_force(repeats: int, common: dict, **record: Any) -> float:
    """Print brute force (every subset solved), exhaustive top 10 and branch and bound on budget 4.

    Returns the brute-force time. The three must agree on the top 10.
    """
    brute_s, brute = timed(repeats, **{**common, "top": None}, budget=4, search="exhaustive")
    screened_s, screened = timed(repeats, **common, budget=4, search="exhaustive")
    exact_s, exact = timed(repeats, **common, budget=4, search="exact")
    head = [e.indices for e in brute.ranking[:10]]
    same = head == [e.indices for e in screened.ranking] == [e.indices for e in exact.ranking]
    print(line("brute force (every subset solved)", brute_s, brute, **record))
    print(line("exhaustive, top 10 (bounds first)", screened_s, screened, **record, same_top10=same))
    print(line("exact (branch and bound)", exact_s, exact, **record, same_top10=same))
    print(
        f"  same top 10: {same}; branch and bound {brute_s / exact_s:.0f}x faster than brute force, "
        f"{screened_s / exact_s:.1f}x faster than exhaustive top 10"
    )
    return brute_s


def _proof(row: dict[str, Any]) -> str:
    if row["optimal"]:
        return "optimal" + ("; same top 10 as the other methods of its case" if row.get("same_top10") else "")
    text = "no proof" if row["gap"] is None else f"not optimal, gap {row['gap']:.2g}"
    return text + (" (stopped at its time limit)" if row.get("stopped") == "time_limit" else "")


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows of a ``--json`` file as the markdown table of benchmarks/README.md."""
    lines = ["| regime | case | objective | method | time (s) | nodes | kernels solved | certificate |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for row in rows:
        seconds = f"{row['seconds']:.3f}" if row["seconds"] < 10 else f"{row['seconds']:.1f}"
        method = row["method"].split(": ")[-1]
        lines.append(f"| {row['regime']} | {row['case']} | `{row['objective']}` | {method} | {seconds} | "
                     f"{row['nodes']:,} | {row['evaluated']:,} | {_proof(row)} |")  # fmt: skip
    return "\n".join(lines)


def equal_trace(count: int, seed: int) -> torch.Tensor:
    """``count`` random rank-r contributions of trace 1: no spread of magnitudes."""
    generator = torch.Generator().manual_seed(seed)
    factors = torch.randn(count, N_SAMPLES, RANK, generator=generator, dtype=torch.float64)
    parts = factors @ factors.mT
    return parts / parts.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing; the best is shown")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the batches are many small eigensolves)",
    )
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds for each causal-LM search [60]")
    parser.add_argument("--json", type=Path, help="also write every row, with date, machine and versions")
    parser.add_argument("--markdown", type=Path, help="only print the table of a --json file (benchmarks/README.md)")
    args = parser.parse_args(argv)
    if args.markdown:
        rows = json.loads(args.markdown.read_text())["rows"]
        print(markdown(rows))
        return rows
    torch.set_num_threads(args.threads)
    ROWS.clear()
    meta = harness.metadata() if args.json else {}
    sigma = 1e-4
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; n = {N_SAMPLES} samples, float64")
    classifier = "classifier: dominant head kernel K"
    causal = "causal LM: K = 0"

    base, contributions, *_ = synthetic_kernels(12, args.seed)
    common = {"contributions": contributions, "base_kernel": base, "sigma": sigma, "top": 10, **LOW}
    print(f"\n36 candidates (12 layers x q/k/v), budget 4: C(36, 4) = {math.comb(36, 4):,} subsets, top 10")
    case = {"case": "C(36,4)", "regime": classifier, "candidates": 36, "budget": 4}
    per_subset = compare_with_brute_force(args.repeats, common, **case) / math.comb(36, 4)

    hard_common = {"contributions": equal_trace(36, args.seed),
                   "base_kernel": torch.zeros(N_SAMPLES, N_SAMPLES, dtype=torch.float64)}  # fmt: skip
    print("\nhard case: the same search with K = 0 and 36 random S_l of equal trace (no spread)")
    case = {"case": "C(36,4) equal trace", "regime": "K = 0, equal-trace S_l", "candidates": 36, "budget": 4}
    compare_with_brute_force(args.repeats, {**hard_common, "sigma": sigma, "top": 10, **LOW}, **case)

    base, contributions, layer_of, kind_of, num_params = synthetic_kernels(30, args.seed)
    common = {"contributions": contributions, "base_kernel": base, "sigma": sigma, "top": 10, **LOW}
    count = math.comb(90, 6)
    print(
        f"\n90 candidates (SmolLM2-like: 30 layers x q/k/v, GQA), budget 6: C(90, 6) = {count:,} subsets, "
        f"top 10 (brute force at the rate above: ~{count * per_subset / 3600:.1f} h)"
    )
    case = {"case": "C(90,6)", "regime": classifier, "candidates": 90, "budget": 6}
    exact_s, exact = timed(args.repeats, **common, budget=6, search="exact")
    print(line("exact (branch and bound)", exact_s, exact, **case))
    print(f"  optimum: candidates {exact.ranking[0].indices}")
    for method, width in (("greedy", 1), ("beam", 8)):
        seconds, result = timed(args.repeats, **common, budget=6, search=method, beam_width=width)
        print(line(f"{method} (width {width})", seconds, result, **case))
    limited_s, limited = timed(1, **common, budget=6, search="exact", max_nodes=2)
    print(line("exact, max_nodes=2 (interrupted)", limited_s, limited))

    zero = torch.zeros(N_SAMPLES, N_SAMPLES, dtype=torch.float64)
    print("  hard case (K = 0, 90 S_l of equal trace), budget 6:")
    case = {"case": "C(90,6) equal trace", "regime": "K = 0, equal-trace S_l", "candidates": 90, "budget": 6}
    for name, kw in (
        ("exact, time_limit=2 s", {"method": "exact", "time_limit": 2.0}),
        ("beam (width 8)", {"method": "beam"}),
    ):
        seconds, result = timed(1, contributions=equal_trace(90, args.seed), base_kernel=zero, sigma=sigma, top=10,
                                budget=6, **LOW, **kw)  # fmt: skip
        print(line(name, seconds, result, **case))

    q_params, kv_params = max(num_params), min(num_params)
    spaces = [
        (
            f"ParamBudget(max_params={4 * q_params + 2 * kv_params:,})",
            ParamBudget(4 * q_params + 2 * kv_params, num_params),
        ),
        (
            "Structured(3 layers x [q+v, k, q+k+v])",
            Structured(3, [("q", "v"), ("k",), ("q", "k", "v")], layer_of, kind_of),
        ),
    ]
    for name, space in spaces:
        size = space.size(90)
        seconds, result = timed(args.repeats, **common, space=space, search="exact")
        print(f"\n90 candidates, {name}: {size:,} subsets, top 10")
        print(line("exact (branch and bound)", seconds, result, case=name, regime=classifier, candidates=90))

    for objective in ("max_ratio", "max_lambda_max"):
        print(f"\nobjective={objective} (upper-bound branch and bound):")
        small_base, small_parts, *_ = synthetic_kernels(12, args.seed)
        small = {"contributions": small_parts, "base_kernel": small_base, "sigma": sigma, "top": 10,
                 "objective": objective}  # fmt: skip
        screened_s, screened = timed(args.repeats, **small, budget=4, search="exhaustive")
        exact_s, exact = timed(args.repeats, **small, budget=4, search="exact")
        same = [e.indices for e in screened.ranking] == [e.indices for e in exact.ranking]
        case = {"case": "C(36,4)", "regime": classifier, "candidates": 36, "budget": 4, "same_top10": same}
        print(line("36 candidates, budget 4: exhaustive", screened_s, screened, **case))
        print(line("36 candidates, budget 4: exact", exact_s, exact, **case))
        print(f"  same top 10: {same}")
        seconds, result = timed(args.repeats, **{**common, "objective": objective}, budget=6, search="exact")
        case = {"case": "C(90,6)", "regime": classifier, "candidates": 90, "budget": 6}
        print(line("90 candidates, budget 6: exact", seconds, result, **case))

    print(
        f"\ncausal-LM regime: the 90 contributions above with K = 0, budget 6, branch and bound stopped at "
        f"{args.time_limit:g} s"
    )
    case = {"case": "C(90,6)", "regime": causal, "candidates": 90, "budget": 6}
    for objective in ("max_ratio", "min_ratio"):
        lm = {"contributions": contributions, "base_kernel": zero, "sigma": sigma, "top": 10, "objective": objective}
        seconds, result = timed(1, **lm, budget=6, search="exact", time_limit=args.time_limit)
        print(line(f"{objective}: exact, time_limit={args.time_limit:g} s", seconds, result, **case,
                   time_limit=args.time_limit))  # fmt: skip
        seconds, result = timed(1, **lm, budget=6, search="beam")
        print(line(f"{objective}: beam (width 8)", seconds, result, **case))

    if args.json:
        harness.write_result(args.json, {"what": "benchmarks/bench_search.py", **meta, "threads": args.threads,
                                         "repeats": args.repeats, "seed": args.seed, "rows": ROWS})  # fmt: skip
        print(f"\nwrote {args.json}")
    return ROWS


if __name__ == "__main__":
    main()

"""Brute force against branch and bound on synthetic kernels with a realistic spread of magnitudes.

    .venv/bin/python benchmarks/bench_search.py [--seed 0] [--repeats 3] [--threads 1]

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
   their upper-bound branch and bound on 36 candidates, and branch and bound on the 90.

The kernels are random PSD n x n matrices (n = 32 samples) shaped like measured ones: a base kernel K
(the new classifier head) with a dominant top eigenvalue, about 1e3 times the median S_l in trace, and
contributions S_l = G_l G_l^T (rank r = 8) partly aligned with K's features, whose traces span two
orders of magnitude (log-uniform, larger for W_q and for later layers).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from peft_ntk_select.search.rank import rank_subsets
from peft_ntk_select.search.spaces import ParamBudget, Structured

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


def timed(repeats: int, **kw):
    """Best wall time of ``repeats`` runs of rank_subsets(**kw) (the machine is shared) and the last result."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = rank_subsets(**kw)
        best = min(best, time.perf_counter() - start)
    return best, result


def line(name: str, seconds: float, result) -> str:
    cert = result.certificate
    bound = "" if cert.lower_bound is None else f" (lower bound {cert.lower_bound:.9f})"
    gap = "" if cert.optimal or cert.gap is None else f", gap {cert.gap:.3g}{bound}"
    return (
        f"  {name:<34} {seconds:8.3f} s   best ratio {cert.best_ratio:.9f}  optimal={cert.optimal}  "
        f"nodes {cert.nodes:,}  evaluated {cert.evaluated:,}{gap}"
    )


def compare_with_brute_force(repeats: int, common: dict) -> float:
    """Print brute force (every subset solved), exhaustive top 10 and branch and bound on budget 4.

    Returns the brute-force time. The three must agree on the top 10.
    """
    brute_s, brute = timed(repeats, **{**common, "top": None}, budget=4, method="exhaustive")
    screened_s, screened = timed(repeats, **common, budget=4, method="exhaustive")
    exact_s, exact = timed(repeats, **common, budget=4, method="exact")
    print(line("brute force (every subset solved)", brute_s, brute))
    print(line("exhaustive, top 10 (bounds first)", screened_s, screened))
    print(line("exact (branch and bound)", exact_s, exact))
    head = [e.indices for e in brute.ranking[:10]]
    same = head == [e.indices for e in screened.ranking] == [e.indices for e in exact.ranking]
    print(
        f"  same top 10: {same}; branch and bound {brute_s / exact_s:.0f}x faster than brute force, "
        f"{screened_s / exact_s:.1f}x faster than exhaustive top 10"
    )
    return brute_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing; the best is shown")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the batches are many small eigensolves)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sigma = 1e-4
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; n = {N_SAMPLES} samples, float64")

    base, contributions, *_ = synthetic_kernels(12, args.seed)
    common = {"contributions": contributions, "base_kernel": base, "sigma": sigma, "top": 10}
    print(f"\n36 candidates (12 layers x q/k/v), budget 4: C(36, 4) = {math.comb(36, 4):,} subsets, top 10")
    per_subset = compare_with_brute_force(args.repeats, common) / math.comb(36, 4)

    generator = torch.Generator().manual_seed(args.seed)
    factors = torch.randn(36, N_SAMPLES, RANK, generator=generator, dtype=torch.float64)
    hard = factors @ factors.mT
    hard /= hard.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]
    hard_common = {"contributions": hard, "base_kernel": torch.zeros(N_SAMPLES, N_SAMPLES, dtype=torch.float64)}
    print("\nhard case: the same search with K = 0 and 36 random S_l of equal trace (no spread)")
    compare_with_brute_force(args.repeats, {**hard_common, "sigma": sigma, "top": 10})

    base, contributions, layer_of, kind_of, num_params = synthetic_kernels(30, args.seed)
    common = {"contributions": contributions, "base_kernel": base, "sigma": sigma, "top": 10}
    count = math.comb(90, 6)
    print(
        f"\n90 candidates (SmolLM2-like: 30 layers x q/k/v, GQA), budget 6: C(90, 6) = {count:,} subsets, "
        f"top 10 (brute force at the rate above: ~{count * per_subset / 3600:.1f} h)"
    )
    exact_s, exact = timed(args.repeats, **common, budget=6, method="exact")
    print(line("exact (branch and bound)", exact_s, exact))
    print(f"  optimum: candidates {exact.ranking[0].indices}")
    for method, width in (("greedy", 1), ("beam", 8)):
        seconds, result = timed(args.repeats, **common, budget=6, method=method, beam_width=width)
        print(line(f"{method} (width {width})", seconds, result))
    limited_s, limited = timed(1, **common, budget=6, method="exact", max_nodes=2)
    print(line("exact, max_nodes=2 (interrupted)", limited_s, limited))

    generator = torch.Generator().manual_seed(args.seed)
    factors = torch.randn(90, N_SAMPLES, RANK, generator=generator, dtype=torch.float64)
    hard = factors @ factors.mT
    hard /= hard.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]
    zero = torch.zeros(N_SAMPLES, N_SAMPLES, dtype=torch.float64)
    print("  hard case (K = 0, 90 S_l of equal trace), budget 6:")
    for name, kw in (
        ("exact, time_limit=2 s", {"method": "exact", "time_limit": 2.0}),
        ("beam (width 8)", {"method": "beam"}),
    ):
        seconds, result = timed(1, contributions=hard, base_kernel=zero, sigma=sigma, top=10, budget=6, **kw)
        print(line(name, seconds, result))

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
        seconds, result = timed(args.repeats, **common, space=space, method="exact")
        print(f"\n90 candidates, {name}: {size:,} subsets, top 10")
        print(line("exact (branch and bound)", seconds, result))

    for objective in ("max_ratio", "max_lambda_max"):
        print(f"\nobjective={objective} (upper-bound branch and bound):")
        small_base, small_parts, *_ = synthetic_kernels(12, args.seed)
        small = {"contributions": small_parts, "base_kernel": small_base, "sigma": sigma, "top": 10,
                 "objective": objective}  # fmt: skip
        screened_s, screened = timed(args.repeats, **small, budget=4, method="exhaustive")
        exact_s, exact = timed(args.repeats, **small, budget=4, method="exact")
        print(line("36 candidates, budget 4: exhaustive", screened_s, screened))
        print(line("36 candidates, budget 4: exact", exact_s, exact))
        same = [e.indices for e in screened.ranking] == [e.indices for e in exact.ranking]
        print(f"  same top 10: {same}")
        seconds, result = timed(args.repeats, **common, budget=6, method="exact", objective=objective)
        print(line("90 candidates, budget 6: exact", seconds, result))


if __name__ == "__main__":
    main()

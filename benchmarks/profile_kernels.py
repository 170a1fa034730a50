"""Profile one kernel pass with the torch profiler: where does an engine's time go?

    .venv/bin/python benchmarks/profile_kernels.py --engine hooks --n 8 --length 128 --json profile.json
    python benchmarks/profile_kernels.py --engine func --device cuda --n 32 --length 512   # on a GPU

The model is ``bench_kernels``' (``harness.build_model``: RoBERTa-base shape by default, random weights, every
flag of its shape), the candidates its q/k/v modules (``--kinds`` to change). One untimed pass warms up, then
one pass runs under ``torch.profiler``. Prints, and writes with ``--json``, the wall time and the operators
with the most self time (CPU; on CUDA also device time), each with its share of the total: the model's own
matmuls against the engine's extra work (probe products, copies, concatenations), which is what an engine
can still remove.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import harness


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_shape_arguments(parser)
    parser.add_argument("--engine", default="hooks", choices=("func", "hooks", "reference"), help="engine [hooks]")
    parser.add_argument("--output-mode", default="trace", choices=("trace", "margin", "loss"), help="[trace]")
    parser.add_argument("--chunk-size", type=int, default=8, help="samples per forward pass [8]")
    parser.add_argument("--kinds", default=None, help="candidate kinds, e.g. q,v or all-linear [q,k,v,qkv]")
    parser.add_argument("--rank", type=int, default=8, help="LoRA r, with lora_alpha = r [8]")
    parser.add_argument("--top", type=int, default=15, help="operators listed [15]")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads [torch default]")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    harness.resolve_shape(args, parser, {}, {})
    if args.kinds is not None and args.kinds != "all-linear":
        args.kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    return args


def profile(args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, profile one ``compute_kernels`` pass, and return the wall time and the top operators."""
    import torch
    from peft import LoraConfig
    from torch.profiler import ProfilerActivity

    from peft_ntk_select import compute_kernels, discover_candidates

    if args.threads:
        torch.set_num_threads(args.threads)
    model, batch = harness.build_model(args)
    candidates = discover_candidates(model, rank=args.rank, kinds=args.kinds)
    config = LoraConfig(r=args.rank, lora_alpha=args.rank, task_type="SEQ_CLS")
    cuda = torch.device(args.device).type == "cuda"

    def run() -> None:
        compute_kernels(model, batch, candidates, config, engine=args.engine, chunk_size=args.chunk_size,
                        output_mode=args.output_mode)  # fmt: skip
        if cuda:
            torch.cuda.synchronize()

    run()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as prof:
        start = time.perf_counter()
        run()
        wall = time.perf_counter() - start
    events = [event for event in prof.key_averages() if event.self_cpu_time_total > 0 or _device_time(event) > 0]
    cpu_total = sum(event.self_cpu_time_total for event in events)
    device_total = sum(_device_time(event) for event in events)
    key = _device_time if cuda else (lambda event: event.self_cpu_time_total)
    rows = [
        {
            "op": event.key,
            "calls": event.count,
            "self_cpu_ms": event.self_cpu_time_total / 1e3,
            "cpu_share": event.self_cpu_time_total / cpu_total if cpu_total else 0.0,
            **(
                {
                    "self_device_ms": _device_time(event) / 1e3,
                    "device_share": _device_time(event) / device_total if device_total else 0.0,
                }
                if cuda
                else {}
            ),
        }  # fmt: skip
        for event in sorted(events, key=key, reverse=True)[: args.top]
    ]
    return {
        "metadata": harness.metadata(args.device),
        "args": vars(args),
        "candidates": len(candidates),
        "wall_s": wall,
        "self_cpu_total_ms": cpu_total / 1e3,
        **({"self_device_total_ms": device_total / 1e3} if cuda else {}),
        "top": rows,
    }


def _device_time(event: Any) -> float:
    """Self device time of a profiler event in microseconds (0 without CUDA)."""
    return float(getattr(event, "self_device_time_total", 0) or getattr(event, "self_cuda_time_total", 0) or 0)


def report(result: dict[str, Any]) -> str:
    args = result["args"]
    cuda = "self_device_total_ms" in result
    lines = [
        f"{args['engine']} engine, {result['candidates']} candidates, n={args['n']}, T={args['length']}, "
        f"{args['arch']} {args['dtype']} on {args['device']}: one pass {result['wall_s']:.3f} s",
        f"{'operator':<56} {'calls':>6} {'self CPU ms':>12} {'share':>6}"
        + (f" {'device ms':>10} {'share':>6}" if cuda else ""),  # fmt: skip
    ]
    for row in result["top"]:
        line = f"{row['op'][:56]:<56} {row['calls']:>6} {row['self_cpu_ms']:>12.1f} {row['cpu_share']:>6.1%}"
        if cuda:
            line += f" {row['self_device_ms']:>10.1f} {row['device_share']:>6.1%}"
        lines.append(line)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    result = profile(args)
    print(report(result), flush=True)
    if args.json:
        harness.write_result(args.json, result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

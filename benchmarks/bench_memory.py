"""Does a selection stay under ``max_memory``? Peak RSS of the kernel pass of a random-weight Llama, per cap.

    .venv/bin/python benchmarks/bench_memory.py            # ~290M-parameter Llama, n = 32, T = 256 (CPU, ~6 min)
    .venv/bin/python benchmarks/bench_memory.py --quick    # tiny model, smoke test (seconds)
    .venv/bin/python benchmarks/bench_memory.py --caps 3GB,none --json memory.json

Each cap runs in its own fresh process (spawned): it builds the model (``harness.build_model``: random
weights, float32, ``LlamaForSequenceClassification`` with 20 layers, hidden 1024, 16 heads, intermediate
2816, vocabulary 32,000, 2 labels: 290M parameters), notes its RSS (the model's own size plus the
interpreter and libraries), then runs ``NTKSelector(model, LoraConfig(r=8), budget=3, kinds=("q", "v"),
max_memory=cap, engine=...).select(batch)`` on n random full-length samples, its peak RSS sampled every
5 ms (``harness.PeakRss``). A tiny selection (2 samples of 8 tokens) runs first, so that the
libraries' one-time set-up (thread pools, kernel caches: about 16 MiB) is not counted. A cap holds when
peak RSS - RSS before <= cap, i.e. the peak stays under the cap plus the model's own size. ``none`` is the
default cap (half the available RAM). Each row gives the plan (samples per forward pass, engine passes,
the plan's estimated peak) and the wall time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness  # the model builder and RSS sampler shared with bench_kernels.py

SHAPE = ["--arch", "llama", "--layers", "20", "--hidden", "1024", "--heads", "16", "--kv-heads", "16",
         "--intermediate", "2816", "--vocab", "32000", "--n", "32", "--length", "256"]  # fmt: skip
QUICK_SHAPE = ["--arch", "llama", "--quick"]
CAPS = "2GB,4GB,8GB,none"
QUICK_CAPS = "2MB,8MB,none"


def measure(shape: list[str], cap: str, engine: str, threads: int | None) -> dict[str, Any]:
    """In this (fresh) process: build the model, then select under ``cap``; RSS figures in bytes."""
    import torch
    from peft import LoraConfig

    from peft_ntk_select import NTKSelector

    if threads:
        torch.set_num_threads(threads)
    args = harness.parse_shape(shape)
    model, batch = harness.build_model(args)
    parameters = sum(p.numel() for p in model.parameters())
    warm = {key: value[:2, :8] if value.dim() == 2 else value[:2] for key, value in batch.items()}
    config = LoraConfig(r=8, lora_alpha=8, task_type="SEQ_CLS")
    # the libraries' one-time set-up, outside the figure
    NTKSelector(model, config, budget=1, kinds=("q",), engine=engine, show_progress=False, num_samples=2).select(warm)
    before = harness.current_rss()
    selector = NTKSelector(model, config, budget=3, kinds=("q", "v"),
                           engine=engine, show_progress=False, num_samples=args.n,
                           max_memory=None if cap == "none" else cap)  # fmt: skip
    start = time.perf_counter()
    with harness.PeakRss() as peak:
        result = selector.select(batch)
    seconds = time.perf_counter() - start
    plan = result.memory_plan
    return {"cap": cap, "engine": engine, "parameters": parameters, "rss_before": before, "peak_rss": peak.peak,
            "added": peak.peak - before, "max_memory": plan["max_memory"], "chunk_size": plan["chunk_size"],
            "passes": len(plan["passes"]), "estimated_peak": plan["estimated_peak"],
            "activation_bytes": plan["activation_bytes"], "seconds": seconds,
            "holds": peak.peak - before <= plan["max_memory"], "top": list(result.ranking[0].modules)}  # fmt: skip


def _child(shape: list[str], cap: str, engine: str, threads: int | None, conn) -> None:
    try:
        conn.send(("ok", measure(shape, cap, engine, threads)))
    except Exception as error:  # noqa: BLE001  (reported by the parent)
        conn.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        conn.close()


def run(shape: list[str], cap: str, engine: str, threads: int | None) -> dict[str, Any]:
    """``measure`` in a fresh spawned process, so that its peak is its own."""
    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(shape, cap, engine, threads, send))
    process.start()
    status, value = receive.recv()
    process.join()
    if status != "ok":
        return {"cap": cap, "engine": engine, "error": value}
    return value


def mib(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def report(rows: Sequence[dict[str, Any]]) -> str:
    """The table printed at the end."""
    lines = ["cap       max_memory MiB  RSS before MiB  peak RSS MiB  added MiB  plan peak MiB  samples/pass  "
             "passes  seconds  added <= cap"]  # fmt: skip
    for row in rows:
        if "error" in row:
            lines.append(f"{row['cap']:8s}  error: {row['error']}")
            continue
        lines.append(f"{row['cap']:8s}  {mib(row['max_memory']):>14s}  {mib(row['rss_before']):>14s}  "
                     f"{mib(row['peak_rss']):>12s}  {mib(row['added']):>9s}  {mib(row['estimated_peak']):>13s}  "
                     f"{row['chunk_size']:>12d}  {row['passes']:>6d}  {row['seconds']:>7.1f}  "
                     f"{'yes' if row['holds'] else 'NO'}")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny Llama and small caps (smoke test)")
    parser.add_argument("--caps", help=f"comma-separated caps ('none' = the default) [{CAPS}; quick {QUICK_CAPS}]")
    parser.add_argument("--shape", help="model shape flags (as bench_kernels.py) instead of the default Llama, e.g. "
                        "'--arch llama --layers 4 --hidden 512 --heads 8 --intermediate 1408 --vocab 32000 --n 16 "
                        "--length 256'")  # fmt: skip
    parser.add_argument("--engine", default="hooks", help="kernel engine [hooks]")
    parser.add_argument("--threads", type=int, help="torch threads per run [torch default]")
    parser.add_argument("--json", type=Path, help="also write the rows, with date, machine and versions, to this file")
    args = parser.parse_args(argv)
    shape = args.shape.split() if args.shape else QUICK_SHAPE if args.quick else SHAPE
    caps = [cap.strip() for cap in (args.caps or (QUICK_CAPS if args.quick else CAPS)).split(",") if cap.strip()]
    rows = []
    for cap in caps:
        rows.append(run(shape, cap, args.engine, args.threads))
        print(report(rows[-1:]).splitlines()[-1], flush=True)
    first = next((row for row in rows if "error" not in row), None)
    if first is not None:
        print(f"\nmodel: random-weight Llama, {first['parameters'] / 1e6:.0f}M parameters, engine {args.engine}; "
              f"shape {' '.join(shape)}")  # fmt: skip
    print(report(rows))
    if args.json:
        harness.write_result(args.json, {"what": "benchmarks/bench_memory.py", **harness.metadata(), "shape": shape,
                                         "engine": args.engine, "threads": args.threads, "rows": rows})  # fmt: skip
    return rows


if __name__ == "__main__":
    main()

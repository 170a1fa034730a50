"""Time the kernel engines against a forward+backward floor and an authors'-style ``jacrev`` baseline.

Run ``python benchmarks/bench_kernels.py`` (RoBERTa-base shape, random weights, n=32, T=128 on CPU) or
``--quick`` (tiny model, smoke test). ``--arch llama --dtype bfloat16 --device cuda`` benchmarks a random
Llama-shaped decoder instead (about 0.8B parameters by default; ``benchmarks/gpu/run_gpu_bench.sh`` runs
both on one GPU). See ``benchmarks/README.md`` for what each row means.

Every item (floor, each engine at each chunk size, the baseline) runs in its own fresh worker process
(peak memory is per item), and the workers are polled round-robin, one measurement each per round, so
that a change of machine load during the run affects every item alike. Only ratios measured side by
side in one run are meaningful on a shared machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import harness

GOAL = 1.3  # the target: every engine within 1.3x of the floor on CPU
KERNEL_GOAL = 1.5  # the adam (SignGD) kernel pass against the lora kernel pass of the same engine
ENGINE_NAMES = ("func", "hooks", "reference")
ALL_ENGINES = (*ENGINE_NAMES, "baseline")
SELECT = "select"  # the whole NTKSelector.select (data -> LoraConfig): asked for by name, not in the default
SELECT_INFO = ("search_s", "optimal", "engine", "plan_peak_mib", "plan_cap_mib", "pick_modules", "pick_params")
QUICK = {"repeats": 2, "reference_n": 4, "baseline_n": 4}  # with the shape of harness.QUICK_SHAPE
DEFAULTS = {"repeats": 3, "reference_n": 8, "baseline_n": 8}  # with the shape of harness.SHAPE_DEFAULTS


@dataclass(frozen=True)
class Item:
    """One timed row: ``kind`` is floor, floor_c, engine or baseline; ``n_run`` the samples it runs."""

    key: str
    kind: str
    label: str
    n_run: int
    engine: str | None = None
    chunk: int | None = None
    kernel: str = "lora"


@dataclass
class Row:
    item: Item
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# ----------------------------------------------------------------------------------------------------------
# arguments


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_shape_arguments(parser)
    parser.add_argument("--rank", type=int, default=8, help="LoRA r, with lora_alpha = r [8]")
    parser.add_argument(
        "--output-mode",
        "--output",
        dest="output",
        default="trace",
        choices=("trace", "margin", "loss"),
        help="per-sample output of the kernel: trace needs one backward per logit, margin and loss one [trace]",
    )
    parser.add_argument("--repeats", type=int, help="timed runs per item; medians are reported [3; quick 2]")
    parser.add_argument("--warmup", type=int, default=0, help="untimed rounds before the timed ones [0]")
    parser.add_argument(
        "--engines",
        default=",".join(ALL_ENGINES),
        help=f"comma-separated subset of {','.join(ALL_ENGINES)} (the floor always runs), and {SELECT}: the whole "
        f"NTKSelector.select at the first chunk size (engine auto, spectra, search, result) [all but {SELECT}]",
    )
    parser.add_argument("--kinds", default=None, help="candidate kinds, e.g. q,v or all-linear [q,k,v,qkv]")
    parser.add_argument("--param-budget", default=None, help=f"{SELECT}: the space, a parameter budget as kinds "
                        "(q,v: PEFT's default placement) or a number; default: --budget modules")  # fmt: skip
    parser.add_argument("--max-memory", default=None, help=f"{SELECT}: NTKSelector's max_memory, e.g. 40GB [None]")
    parser.add_argument("--time-limit", type=float, default=60.0, help=f"{SELECT}: search time limit, s [60]")
    parser.add_argument("--chunk-sizes", default="8,32", help="chunk sizes for the func and hooks engines [8,32]")
    parser.add_argument("--kernels", default="lora", help="kernels per engine row, e.g. lora,adam: each one after "
                        "lora gets its own rows and its cost against the lora row [lora]")  # fmt: skip
    parser.add_argument("--reference-n", type=int, help="samples the reference engine runs (extrapolated) [8]")
    parser.add_argument("--baseline-n", type=int, help="samples the jacrev baseline runs (extrapolated) [8]")
    parser.add_argument("--budget", type=int, default=3, help="modules per subset: the baseline's subset size [3]")
    parser.add_argument(
        "--order",
        default="interleaved",
        choices=("interleaved", "sequential"),
        help="interleaved: one run of every row per round (evens out load drift on a shared CPU); sequential: "
        "all runs of one row, then the next, each worker emptying its CUDA cache when done, so that the GPU "
        "holds one row's working memory at a time [interleaved]",
    )
    parser.add_argument("--threads", type=int, help="torch.set_num_threads in every worker [torch default]")
    parser.add_argument("--no-floor-c", action="store_true", help="skip the informational c-backward floor row")
    parser.add_argument("--json", help="also write the results (runs, medians, machine) to this JSON file")
    args = parser.parse_args(argv)
    harness.resolve_shape(args, parser, DEFAULTS, QUICK)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(args.engines) - {*ALL_ENGINES, SELECT})
    if unknown:
        parser.error(f"unknown engines {unknown}: choose among {(*ALL_ENGINES, SELECT)}")
    if args.kinds is not None:
        args.kinds = "all-linear" if args.kinds == "all-linear" else [k.strip() for k in args.kinds.split(",") if k]
    if args.param_budget is not None:
        text = args.param_budget.strip()
        args.param_budget = int(text) if text.isdigit() else [k.strip() for k in text.split(",") if k.strip()]
    args.chunk_sizes = [int(c) for c in args.chunk_sizes.split(",") if c.strip()]
    args.kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    if args.kernels[:1] != ["lora"] or not set(args.kernels) <= {"lora", "expected", "adam"}:
        parser.error("--kernels must start with lora and list kernels among lora, expected, adam")
    args.reference_n = min(args.reference_n, args.n)
    args.baseline_n = min(args.baseline_n, args.n)
    if args.output == "margin" and args.labels != 2:
        parser.error("--output margin needs --labels 2")
    if args.n < 2 or min(args.reference_n, args.baseline_n) < 1 or args.repeats < 1:
        parser.error("need --n >= 2, --reference-n/--baseline-n >= 1 and --repeats >= 1")
    return args


def outputs_per_sample(args: argparse.Namespace) -> int:
    """c: the outputs whose gradients make the kernel (one backward pass each)."""
    return args.labels if args.output == "trace" else 1


def plan(args: argparse.Namespace) -> list[Item]:
    """The rows of the table, in order."""
    items = [Item("floor", "floor", "floor: fwd + 1 bwd, no weight grads", args.n)]
    if not args.no_floor_c and outputs_per_sample(args) > 1:
        items.append(Item("floor_c", "floor_c", f"floor, {args.labels} bwd (one per logit)", args.n))
    for engine in ENGINE_NAMES:
        if engine not in args.engines:
            continue
        if engine == "reference":
            items.append(Item("reference", "engine", "reference (per-sample loop)", args.reference_n, "reference"))
            continue
        for chunk in args.chunk_sizes:
            items.append(Item(f"{engine}@{chunk}", "engine", f"{engine}, chunk_size={chunk}", args.n, engine, chunk))
            for kernel in args.kernels[1:]:
                label = f"{engine}, chunk_size={chunk}, {kernel}"
                items.append(Item(f"{engine}@{chunk}:{kernel}", "engine", label, args.n, engine, chunk, kernel))
    if "baseline" in args.engines:
        items.append(
            Item("baseline", "baseline", f"authors' jacrev, 1 subset of {args.budget}", args.baseline_n, "baseline")
        )
    if SELECT in args.engines:
        chunk = args.chunk_sizes[0]
        items.append(Item(SELECT, SELECT, f"whole select, chunk_size={chunk}", args.n, SELECT, chunk))
    return items


# ----------------------------------------------------------------------------------------------------------
# the work of one item (runs inside a worker process)


def make_runner(item: Item, args: argparse.Namespace) -> tuple[Callable[[], Any], dict[str, Any]]:
    """Build the model for ``item`` and return (run once, info)."""
    import torch
    from peft import LoraConfig

    from peft_ntk_select import compute_kernels, discover_candidates

    model, batch = harness.build_model(args)
    batch = {key: value[: item.n_run] for key, value in batch.items()}
    candidates = discover_candidates(model, rank=args.rank, kinds=args.kinds)
    info: dict[str, Any] = {"candidates": len(candidates), "parameters": sum(p.numel() for p in model.parameters())}

    if item.kind in ("floor", "floor_c"):
        # The benchmark's own model: no parameter needs a gradient; the backward reaches an input leaf.
        for param in model.parameters():
            param.requires_grad_(False)
        embed = model.get_input_embeddings()
        backward_passes = 1 if item.kind == "floor" else outputs_per_sample(args)

        def run() -> None:
            with torch.enable_grad():
                leaf = embed(batch["input_ids"]).detach().requires_grad_()
                logits = model(inputs_embeds=leaf, attention_mask=batch["attention_mask"]).logits
                if backward_passes == 1:
                    torch.autograd.grad(logits.sum(), leaf)
                    return
                for a in range(backward_passes):
                    torch.autograd.grad(logits[:, a].sum(), leaf, retain_graph=a < backward_passes - 1)

        return run, info

    lora_config = LoraConfig(r=args.rank, lora_alpha=args.rank, task_type="SEQ_CLS")
    if item.kind == "engine":
        chunk = item.chunk or 8

        def run() -> None:
            compute_kernels(
                model,
                batch,
                candidates,
                lora_config,
                engine=item.engine,
                chunk_size=chunk,
                output_mode=args.output,
                kernel=item.kernel,
            )

        return run, info

    if item.kind == SELECT:
        return _select_runner(model, batch, lora_config, item, args, info)
    return _baseline_runner(model, batch, candidates, args, info)


def _select_runner(model, batch, lora_config, item: Item, args: argparse.Namespace, info: dict[str, Any]):
    """The whole selection, data to LoraConfig; each run returns what the table adds: the search's time and
    exactness, the memory plan's estimated peak and the pick's size."""
    from peft_ntk_select import NTKSelector

    space = {"param_budget": args.param_budget} if args.param_budget is not None else {"budget": args.budget}
    selector = NTKSelector(
        model, lora_config, kinds=args.kinds, num_samples=item.n_run, chunk_size=item.chunk, output_mode=args.output,
        max_memory=args.max_memory, time_limit=args.time_limit, show_progress=False, **space,
    )  # fmt: skip

    def run() -> dict[str, Any]:
        result = selector.select(batch)
        plan, best = result.memory_plan or {}, result.ranking[0]
        return {
            "search_s": result.certificate.seconds, "optimal": result.certificate.optimal, "engine": result.engine,
            "plan_peak_mib": plan.get("estimated_peak", math.nan) / 2**20,
            "plan_cap_mib": plan.get("max_memory", math.nan) / 2**20,
            "pick_modules": len(best.modules), "pick_params": best.num_params,
        }  # fmt: skip

    return run, info


def baseline_modules(candidates: Sequence[Any], budget: int) -> list[str]:
    """``budget`` candidates spread over the depth (first, ..., last): one configuration."""
    if budget >= len(candidates):
        return [c.name for c in candidates]
    picks = sorted({round(i * (len(candidates) - 1) / max(budget - 1, 1)) for i in range(budget)})
    return [candidates[i].name for i in picks]


def _baseline_runner(model, batch, candidates, args, info):
    """The authors' style: a real PEFT model on one subset, ``jacrev`` over all its LoRA parameters
    (A and B), one sample at a time; kernel = sum over outputs of J J^T."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.func import functional_call, jacrev

    modules = baseline_modules(candidates, args.budget)
    config = LoraConfig(r=args.rank, lora_alpha=args.rank, task_type="SEQ_CLS", target_modules=modules)
    peft_model = get_peft_model(model, config).eval()
    state = {name: param.detach() for name, param in peft_model.named_parameters()}
    state.update(dict(peft_model.named_buffers()))
    lora = {name: tensor for name, tensor in state.items() if "lora_" in name}
    info.update({"modules": modules, "lora_params": sum(t.numel() for t in lora.values())})

    def outputs(params: dict[str, torch.Tensor], sample: dict[str, torch.Tensor]) -> torch.Tensor:
        kwargs = {"input_ids": sample["input_ids"][None], "attention_mask": sample["attention_mask"][None]}
        logits = functional_call(peft_model, {**state, **params}, args=(), kwargs=kwargs).logits[0]
        if args.output == "trace":
            return logits
        if args.output == "margin":
            return (logits[1] - logits[0]).unsqueeze(0)
        return torch.nn.functional.cross_entropy(logits[None], sample["labels"][None]).unsqueeze(0)

    jacobian = jacrev(outputs)

    def run() -> torch.Tensor:
        rows = []
        for i in range(batch["input_ids"].shape[0]):
            jac = jacobian(lora, {key: value[i] for key, value in batch.items()})  # {name: (c, *shape)}
            rows.append(torch.cat([j.reshape(j.shape[0], -1) for j in jac.values()], dim=1))
        features = torch.stack(rows).double()  # (n, c, P)
        return torch.einsum("icp,jcp->ij", features, features)

    return run, info


def _worker(item: Item, args: argparse.Namespace, conn) -> None:
    """Build, report ready, then time one run per "run" command until "stop"."""
    try:
        import gc
        import warnings

        import torch

        warnings.filterwarnings("ignore")
        os.environ.setdefault("TQDM_DISABLE", "1")
        if args.threads:
            torch.set_num_threads(args.threads)
        cuda = torch.device(args.device).type == "cuda"
        run, info = make_runner(item, args)
        gc.collect()
        info["threads"] = torch.get_num_threads()
        if cuda:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
        else:
            base = harness.current_rss()
        info["base_mib"] = base / 2**20
        conn.send(("ready", info))
        while True:
            command = conn.recv()
            if command == "release":  # --order sequential, after the row's last run: hand the cache back
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
                conn.send(("released", {}))
                continue
            if command != "run":
                break
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                torch.cuda.synchronize()
                wall0, cpu0 = time.perf_counter(), time.process_time()
                extra = run()
                torch.cuda.synchronize()
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                peak = torch.cuda.max_memory_allocated() - base
            else:
                with harness.PeakRss() as meter:
                    wall0, cpu0 = time.perf_counter(), time.process_time()
                    extra = run()
                    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                peak = meter.peak - base
            gc.collect()
            conn.send(("ok", {"wall": wall, "cpu": cpu, "peak_mib": max(peak, 0) / 2**20, "info": extra or {}}))
    except BaseException:  # report anything (MemoryError included) to the parent, which prints it
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


# ----------------------------------------------------------------------------------------------------------
# the parent: workers, rounds, table


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": harness.cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": args.device,
        "loadavg_start": os.getloadavg(),
        "cpu_busy_before_pct": harness.busy_percent(),
    }
    if torch.device(args.device).type == "cuda":
        device = torch.device(args.device)
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30
        info["cuda"] = torch.version.cuda
    return info


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_rounds(items: list[Item], args: argparse.Namespace) -> list[Row]:
    """Start one worker per item, wait until all are built, then poll them round-robin."""
    context = mp.get_context("spawn")
    rows = [Row(item) for item in items]
    workers = []
    for item in items:
        parent, child = context.Pipe()
        process = context.Process(target=_worker, args=(item, args, child), daemon=True)
        process.start()
        child.close()
        workers.append((process, parent))
    try:
        for row, (_, conn) in zip(rows, workers, strict=True):
            status, payload = _receive(conn)
            if status == "ready":
                row.info = payload
                log(f"ready: {row.item.label} (base {payload['base_mib']:.0f} MiB)")
            else:
                row.error = payload
                log(f"FAILED to build {row.item.label}:\n{payload}")
        live = [i for i, row in enumerate(rows) if row.error is None]
        total = args.warmup + args.repeats
        for round_index, index in schedule(live, total, args.order):
            row, (_, conn) = rows[index], workers[index]
            if row.error is not None:
                continue
            conn.send("run")
            status, payload = _receive(conn)
            if status != "ok":
                row.error = payload
                log(f"FAILED {row.item.label}:\n{payload}")
                continue
            timed = round_index >= args.warmup
            tag = "timed" if timed else "warm-up"
            log(
                f"round {round_index + 1}/{total} ({tag}) {row.item.label}: {payload['wall']:.2f} s wall, "
                f"{payload['cpu']:.2f} s CPU, peak +{payload['peak_mib']:.0f} MiB"
            )
            if timed:
                row.walls.append(payload["wall"])
                row.cpus.append(payload["cpu"])
            row.peaks.append(payload["peak_mib"])
            row.info.update(payload["info"])
            if args.order == "sequential" and round_index == total - 1:
                conn.send("release")
                status, payload = _receive(conn)
                if status != "released":
                    row.error = payload
                    log(f"FAILED {row.item.label} (releasing its memory):\n{payload}")
    finally:
        for _, conn in workers:
            try:
                conn.send("stop")
            except (BrokenPipeError, OSError):
                pass
        for process, conn in workers:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
            conn.close()
    return rows


def schedule(live: list[int], total: int, order: str) -> list[tuple[int, int]]:
    """(round, row index) pairs in the order they run.

    ``interleaved``: round by round, each round one run of every row, the starting row rotated each round.
    ``sequential``: all rounds of a row, then the next row (the worker then empties its CUDA cache, so that
    only one row's working memory is held on the GPU at a time).
    """
    if order == "sequential":
        return [(round_index, index) for index in live for round_index in range(total)]
    pairs = []
    for round_index in range(total):
        shift = round_index % len(live) if live else 0
        pairs.extend((round_index, index) for index in live[shift:] + live[:shift])
    return pairs


def _receive(conn) -> tuple[str, Any]:
    try:
        return conn.recv()
    except EOFError:
        return "error", "the worker process died (killed for memory?)"


def scale_of(item: Item, args: argparse.Namespace) -> float:
    """Linear extrapolation factor from the samples run to n."""
    return args.n / item.n_run


def summarize(rows: list[Row], args: argparse.Namespace) -> dict[str, Any]:
    """Medians, extrapolations, ratios to the floor (ratio of medians and median of per-round ratios)."""
    floor = next(row for row in rows if row.item.kind == "floor")
    floor_wall = statistics.median(floor.walls) if floor.walls else math.nan
    floor_min = min(floor.walls) if floor.walls else math.nan
    out = []
    for row in rows:
        entry: dict[str, Any] = {"key": row.item.key, "label": row.item.label, "n_run": row.item.n_run}
        entry.update({k: v for k, v in row.info.items() if k in ("modules", "lora_params", "threads", *SELECT_INFO)})
        if row.error or not row.walls:
            entry["error"] = (row.error or "no timed run").strip().splitlines()[-1]
            if row.error:
                entry["error_detail"] = row.error
            out.append(entry)
            continue
        scale = scale_of(row.item, args)
        walls = [w * scale for w in row.walls]
        entry.update(
            {
                "extrapolated_from_n": row.item.n_run if scale != 1 else None,
                "wall_s": statistics.median(walls),
                "wall_min_s": min(walls),
                "wall_runs_s": walls,
                "cpu_s": statistics.median(row.cpus) * scale,
                "peak_mib": max(row.peaks),
                "x_floor": statistics.median(walls) / floor_wall,
                "x_floor_min": min(walls) / floor_min,
            }
        )
        paired = [w / f for w, f in zip(walls, floor.walls, strict=False)]  # a failed floor run shortens it
        entry["x_floor_per_round"] = statistics.median(paired) if paired else math.nan
        out.append(entry)
    walls = {entry["key"]: entry.get("wall_s") for entry in out}
    for entry in out:  # a kernel's cost against the lora kernel pass of the same engine and chunk size
        plain = walls.get(entry["key"].split(":")[0])
        if ":" in entry["key"] and entry.get("wall_s") and plain:
            entry["x_lora"] = entry["wall_s"] / plain
        if entry["key"] == SELECT and entry.get("wall_s"):  # the whole select against its engine's kernel pass
            passes = [walls.get(f"{engine}@{args.chunk_sizes[0]}") for engine in ("func", "hooks")]
            kernel_pass = walls.get(f"{entry.get('engine')}@{args.chunk_sizes[0]}") or min(filter(None, passes),
                                                                                        default=None)  # fmt: skip
            if kernel_pass:
                entry["x_kernel_pass"] = entry["wall_s"] / kernel_pass
    return {"floor_s": floor_wall, "rows": out}


def _num(seconds: float) -> str:
    """Seconds with about three significant digits."""
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.2f}" if seconds < 100 else f"{seconds:.1f}"


def _fmt_time(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


def report(summary: dict[str, Any], args: argparse.Namespace, machine: dict[str, Any], candidates: int) -> str:
    lines = []
    weights = "random weights" + ("" if args.dtype == "float32" else f", {args.dtype}")
    kv = f" ({args.kv_heads} key/value)" if args.arch == "llama" else ""
    params = summary.get("parameters")
    lines.append(
        f"{harness.model_class_name(args)} ({weights}): {args.layers} layers, hidden {args.hidden}, "
        f"{args.heads} heads{kv}, intermediate {args.intermediate}, {args.labels} labels"
        + (f", {params / 1e6:.1f}M parameters" if params else "")
        + f"; {candidates} q/k/v candidates; "
        f"n={args.n}, T={args.length}, LoRA r={args.rank}, output={args.output!r}; device {args.device}"
    )
    lines.append(
        f"machine: {machine['nproc']} CPUs ({machine['cpu_model']}), torch {machine['torch']}, transformers "
        f"{machine['transformers']}, peft {machine['peft']}; {machine['date']}; load average at start "
        f"{machine['loadavg_start'][0]:.2f}, at end {machine.get('loadavg_end', (math.nan,))[0]:.2f}"
        + (
            f"; GPU {machine['gpu']} ({machine.get('gpu_memory_gib', math.nan):.0f} GiB), CUDA {machine.get('cuda')}"
            if "gpu" in machine
            else ""
        )
    )
    threads = sorted({e.get("threads") for e in summary["rows"] if e.get("threads")})
    lines.append(
        f"torch threads per worker: {', '.join(map(str, threads)) or '?'}; median of {args.repeats} timed run(s) "
        f"per row ({args.warmup} warm-up round(s)"
        + ("; rows run one after another" if args.order == "sequential" else "")
        + "); memory: peak above"
    )
    lines.append("the worker's own footprint after building the model (" + ("max_memory_allocated" if "gpu" in machine
                 else "RSS") + "); rows marked * ran fewer samples and are scaled linearly to n")  # fmt: skip
    busy = machine["other_cpu_pct"]
    lines.append(
        f"CPU used by other processes: {machine['cpu_busy_before_pct']:.0f}% of the machine in the 2 s before "
        f"the run, {busy:.0f}% during it (hypervisor steal {machine['steal_pct']:.0f}%)"
    )
    if "gpu" not in machine and max(busy, machine["cpu_busy_before_pct"]) > 10:
        lines.append(
            "WARNING: other processes share the CPU. Multi-threaded ops then wait for descheduled OpenMP peers, "
            "which penalises the engines' many small ops more than the floor's few large ones; compare with "
            "--threads 1, and trust only ratios."
        )
    lines.append("")
    header = (
        f"{'row':<40} {'wall (s)':>9} {'min':>8} {'CPU (s)':>9} {'x floor':>8} {'x/round':>8} {'x min':>6} "
        f"{'peak MiB':>9}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for entry in summary["rows"]:
        label = entry["label"]
        if entry.get("error"):
            lines.append(f"{label:<40} FAILED: {entry['error']}")
            continue
        if entry.get("extrapolated_from_n"):
            label = f"{label} *n={entry['extrapolated_from_n']}"
        lines.append(
            f"{label:<40} {_num(entry['wall_s']):>9} {_num(entry['wall_min_s']):>8} {_num(entry['cpu_s']):>9} "
            f"{entry['x_floor']:>8.2f} {entry['x_floor_per_round']:>8.2f} {entry['x_floor_min']:>6.2f} "
            f"{entry['peak_mib']:>9.0f}"
        )
    lines.append("")
    lines.extend(verdicts(summary, args))
    return "\n".join(lines)


def verdicts(summary: dict[str, Any], args: argparse.Namespace) -> list[str]:
    rows = {entry["key"]: entry for entry in summary["rows"] if not entry.get("error")}
    lines = []
    cpu = args.device == "cpu"
    where = " (CPU)." if cpu else " (the goal is stated for CPU)."
    lines.append(f"Goal: every engine within {GOAL}x of the floor{where}")
    best: dict[str, dict[str, Any]] = {}
    for engine in ENGINE_NAMES:
        candidates = [e for k, e in rows.items() if k == engine or (k.startswith(f"{engine}@") and ":" not in k)]
        if not candidates:
            continue
        best[engine] = min(candidates, key=lambda e: e["wall_s"])
        entry = best[engine]
        met = entry["x_floor"] <= GOAL
        lines.append(
            f"  {entry['label']:<28} {entry['x_floor']:5.2f}x floor (per-round {entry['x_floor_per_round']:.2f}x, "
            f"fastest runs {entry['x_floor_min']:.2f}x): " + ("MEETS" if met else "does NOT meet") + f" {GOAL}x"
        )
    if "floor_c" in rows:
        bound = rows["floor_c"]["x_floor"]
        lines.append(
            f"  note: output='trace' needs one backward per logit; the {args.labels}-backward floor alone is "
            f"{bound:.2f}x the 1-backward floor"
        )
    for engine in ("func", "hooks"):
        sizes = sorted((e["wall_s"], k) for k, e in rows.items() if k.startswith(f"{engine}@") and ":" not in k)
        if len(sizes) > 1:
            (fast, fast_key), (slow, slow_key) = sizes[0], sizes[-1]
            lines.append(
                f"Chunk size, {engine}: chunk_size={fast_key.split('@')[1]} is faster ({_fmt_time(fast)} vs "
                f"{_fmt_time(slow)} at chunk_size={slow_key.split('@')[1]}, {slow / fast:.2f}x)"
                + (" - under 5%: a tie within noise" if slow / fast < 1.05 else "")
            )
    if SELECT in rows:
        entry = rows[SELECT]
        lines.append(
            f"Whole select ({entry.get('engine')} engine, data to LoraConfig): {_fmt_time(entry['wall_s'])}"
            + (f", {entry['x_kernel_pass']:.2f}x its kernel pass" if "x_kernel_pass" in entry else "")
            + f"; search {_fmt_time(entry['search_s'])} ({'optimal' if entry['optimal'] else 'not proven optimal'})"
            f"; pick {entry['pick_modules']} modules, {entry['pick_params']:,} LoRA parameters; memory plan: cap "
            f"{entry['plan_cap_mib']:.0f} MiB, estimated peak {entry['plan_peak_mib']:.0f} MiB, measured peak "
            f"{entry['peak_mib']:.0f} MiB"
        )
    for entry in rows.values():
        if "x_lora" in entry:
            met = entry["x_lora"] <= KERNEL_GOAL
            lines.append(f"Kernel cost: {entry['label']} takes {entry['x_lora']:.2f}x its lora row: "
                         + ("MEETS" if met else "does NOT meet") + f" the {KERNEL_GOAL}x goal")  # fmt: skip
    if "baseline" in rows and best:
        base = rows["baseline"]
        fastest = min(best.values(), key=lambda e: e["wall_s"])
        subsets = math.comb(summary.get("candidates") or 0, args.budget)
        lines.append(
            f"Per configuration: the authors'-style jacrev kernel of one {args.budget}-module subset "
            f"({base.get('lora_params', '?')} LoRA parameters) takes {_fmt_time(base['wall_s'])} at n={args.n}"
            + (f" (extrapolated from n={base['extrapolated_from_n']})" if base.get("extrapolated_from_n") else "")
            + f"; one {fastest['label']} pass ({_fmt_time(fastest['wall_s'])}) gives all {summary.get('candidates')}"
            f" S_l, hence all {subsets} subsets of {args.budget}."
        )
        if subsets:
            lines.append(
                f"  exhaustive search: baseline {_fmt_time(base['wall_s'])} x {subsets} = "
                f"{_fmt_time(base['wall_s'] * subsets)} vs one engine pass {_fmt_time(fastest['wall_s'])} "
                f"({base['wall_s'] * subsets / fastest['wall_s']:.0f}x); per configuration the engine costs "
                f"{_fmt_time(fastest['wall_s'] / subsets)} vs {_fmt_time(base['wall_s'])} "
                f"(one configuration alone: engine/baseline = {fastest['wall_s'] / base['wall_s']:.2f})"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table (stdout) and progress (stderr); return the results."""
    args = parse_args(argv)
    import torch

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here")
    machine = machine_info(args)
    items = plan(args)
    log(f"{len(items)} rows, {args.warmup} warm-up + {args.repeats} timed round(s); workers: one process per row")
    started = time.perf_counter()
    with harness.OtherLoad() as other:
        rows = run_rounds(items, args)  # joins every worker, so their CPU time is counted as ours
    machine["other_cpu_pct"], machine["steal_pct"] = other.other_pct, other.steal_pct
    machine["loadavg_end"] = os.getloadavg()
    machine["elapsed_s"] = time.perf_counter() - started
    summary = summarize(rows, args)
    summary["candidates"] = next((row.info.get("candidates") for row in rows if row.info), 0)
    summary["parameters"] = next((row.info.get("parameters") for row in rows if row.info), None)
    text = report(summary, args, machine, summary["candidates"])
    print(text, flush=True)
    log(f"total {machine['elapsed_s']:.0f} s")
    result = {
        "metadata": harness.metadata(args.device),
        "machine": machine,
        "args": {k: v for k, v in vars(args).items()},
        **summary,
        "report": text,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2, default=str)
    return result


if __name__ == "__main__":
    main()

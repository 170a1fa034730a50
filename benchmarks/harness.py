"""What the benchmark scripts share: the random-weight model they measure, how they measure a process, and the
metadata every committed result file carries.

Imported as ``import harness`` by the scripts in this folder (``python benchmarks/x.py`` puts the folder on
``sys.path``):

- ``add_shape_arguments`` / ``resolve_shape`` / ``parse_shape``: the model and batch flags (``--arch --dtype
  --layers --hidden --heads --kv-heads --intermediate --vocab --labels --n --length --seed --device --quick``);
- ``build_model``: a random-weight ``RobertaForSequenceClassification`` or ``LlamaForSequenceClassification`` of
  that shape and a random full-length batch (no padding);
- ``PeakRss`` and ``current_rss``: peak resident memory of this process during a block (5 ms psutil sampler,
  plus ``ru_maxrss`` when the all-time peak rose inside the block);
- ``OtherLoad`` and ``busy_percent``: CPU time used by other processes during a run (a shared machine);
- ``metadata``: date, machine and versions (python, torch, transformers, peft, peft_ntk_select, git commit),
  and ``write_result`` to write a result file with it;
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ARCHS = ("roberta", "llama")
DTYPES = ("float32", "bfloat16", "float16")
# RoBERTa-base's shape; --quick: a tiny model and batch (explicit flags win)
SHAPE_DEFAULTS = {"layers": 12, "hidden": 768, "heads": 12, "intermediate": None, "vocab": 50265, "n": 32,
                  "length": 128, "kv_heads": None}  # fmt: skip
QUICK_SHAPE = {"layers": 2, "hidden": 64, "heads": 4, "intermediate": 128, "vocab": 1000, "n": 8, "length": 16,
               "kv_heads": 2}  # fmt: skip
# --arch llama without --quick: a TinyLlama-like shape, 16 layers (48 q/k/v candidates), about 0.79B parameters
LLAMA_SHAPE = {"layers": 16, "hidden": 2048, "heads": 32, "kv_heads": 8, "intermediate": 5632, "vocab": 32000}


# ----------------------------------------------------------------------------------------------------------
# the measured model


def add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the model and its batch (``resolve_shape`` fills the defaults afterwards)."""
    parser.add_argument("--quick", action="store_true", help="tiny model and batch (smoke test); explicit flags win")
    parser.add_argument(
        "--arch",
        default="roberta",
        choices=ARCHS,
        help="RobertaForSequenceClassification or LlamaForSequenceClassification (pad_token_id 0), random "
        "weights; llama's shape defaults to 16 layers, hidden 2048, 32 heads, 8 kv heads, intermediate 5632, "
        "vocab 32000 [roberta]",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=DTYPES,
        help="dtype of the model's weights; the kernels' probes run in float32 for half models [float32]",
    )
    parser.add_argument("--layers", type=int, help="encoder layers [12; quick 2]")
    parser.add_argument("--hidden", type=int, help="hidden size [768; quick 64]")
    parser.add_argument("--heads", type=int, help="attention heads [12; quick 4]")
    parser.add_argument("--kv-heads", type=int, help="key/value heads, llama only [heads; llama 8; quick 2]")
    parser.add_argument("--intermediate", type=int, help="MLP size [4 x hidden; quick 128]")
    parser.add_argument("--vocab", type=int, help="vocabulary size [50265; quick 1000]")
    parser.add_argument("--labels", type=int, default=2, help="num_labels of the classifier (logits c) [2]")
    parser.add_argument("--n", type=int, help="samples in the kernel [32; quick 8]")
    parser.add_argument("--length", type=int, help="tokens per sample T [128; quick 16]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the batch and the LoRA A [0]")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N [cpu]")


def resolve_shape(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    defaults: dict[str, Any] | None = None,
    quick: dict[str, Any] | None = None,
) -> argparse.Namespace:
    """Fill the flags left unset: the shape defaults (llama's for ``--arch llama``), ``--quick``'s, and the
    caller's own ``defaults``/``quick`` for its other flags; checks heads against kv-heads."""
    arch = LLAMA_SHAPE if args.arch == "llama" else {}
    base = {**SHAPE_DEFAULTS, **(defaults or {}), **arch, **({**QUICK_SHAPE, **(quick or {})} if args.quick else {})}
    for key, value in base.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.intermediate is None:
        args.intermediate = 4 * args.hidden
    if args.kv_heads is None or args.arch != "llama":
        args.kv_heads = args.heads
    if args.heads % args.kv_heads:
        parser.error(f"--heads {args.heads} must be a multiple of --kv-heads {args.kv_heads}")
    return args


def parse_shape(argv: Sequence[str]) -> argparse.Namespace:
    """Only the shape flags, e.g. ``["--arch", "llama", "--quick"]``."""
    parser = argparse.ArgumentParser(prog="shape")
    add_shape_arguments(parser)
    return resolve_shape(parser.parse_args(list(argv)), parser)


def model_class_name(args: argparse.Namespace) -> str:
    return "LlamaForSequenceClassification" if args.arch == "llama" else "RobertaForSequenceClassification"


def build_model(args: argparse.Namespace):
    """Random-weight model (``--arch``, ``--dtype``) of the configured shape, in eval mode, and a random full
    batch of ``--n`` sequences of ``--length`` tokens (input_ids, attention_mask of ones, labels)."""
    import torch

    torch.manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    if args.arch == "llama":
        from transformers import LlamaConfig, LlamaForSequenceClassification

        config = LlamaConfig(
            vocab_size=args.vocab,
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            num_key_value_heads=args.kv_heads,
            intermediate_size=args.intermediate,
            num_labels=args.labels,
            max_position_embeddings=args.length + 8,
            pad_token_id=0,  # the batch holds no pad token; decoder classifiers need the id all the same
        )
        # Built in place, in its dtype: a 1B model's float32 init on the CPU would take most of a minute.
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with torch.device(args.device):
                model = LlamaForSequenceClassification(config)
        finally:
            torch.set_default_dtype(previous)
        model = model.eval()
    else:
        from transformers import RobertaConfig, RobertaForSequenceClassification

        config = RobertaConfig(
            vocab_size=args.vocab,
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            intermediate_size=args.intermediate,
            num_labels=args.labels,
            max_position_embeddings=args.length + 2 + 8,  # RoBERTa positions start at pad_token_id + 1
        )
        model = RobertaForSequenceClassification(config).eval().to(args.device)
        if dtype != torch.float32:
            model = model.to(dtype)
    generator = torch.Generator().manual_seed(args.seed + 1)
    input_ids = torch.randint(3, args.vocab, (args.n, args.length), generator=generator)
    labels = torch.randint(0, args.labels, (args.n,), generator=generator)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    return model, {key: value.to(args.device) for key, value in batch.items()}


# ----------------------------------------------------------------------------------------------------------
# measuring a process


class PeakRss:
    """Peak resident memory of this process during a block: a 5 ms psutil sampler, and ru_maxrss when the
    process's all-time peak rose inside the block."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.005)

    def __enter__(self) -> PeakRss:
        self.maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if maxrss > self.maxrss_before:
            self.peak = max(self.peak, maxrss)


def current_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def busy_percent(seconds: float = 2.0) -> float:
    """System-wide CPU use (percent of all CPUs) over ``seconds`` while this process idles: other load."""
    import psutil

    return psutil.cpu_percent(interval=seconds)


class OtherLoad:
    """CPU time that processes other than this one and its joined children used during a block.

    System-wide busy time (/proc/stat through psutil) minus this process's and its joined children's
    user+system time; hypervisor steal reported apart. A shared machine makes timings noisy; this says how much.
    """

    @staticmethod
    def _now() -> tuple[float, float, float, float]:
        import psutil

        times = psutil.cpu_times()
        busy = sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))
        ours = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            ours += usage.ru_utime + usage.ru_stime
        return time.perf_counter(), busy, ours, getattr(times, "steal", 0.0)

    def __enter__(self) -> OtherLoad:
        self.start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        wall, busy, ours, steal = (b - a for a, b in zip(self.start, end, strict=True))
        capacity = wall * (os.cpu_count() or 1)
        self.other_pct = 100 * max(busy - ours, 0.0) / capacity
        self.steal_pct = 100 * steal / capacity


# ----------------------------------------------------------------------------------------------------------
# metadata of a result file


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "?"


def _git_commit(folder: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def metadata(device: str = "cpu") -> dict[str, Any]:
    """Date (local, with offset), machine and versions, for a result file."""
    import peft
    import psutil
    import torch
    import transformers

    import peft_ntk_select

    package_root = Path(peft_ntk_select.__file__).resolve().parents[1]
    info: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu_model": cpu_model(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
            "device": device,
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "peft_ntk_select": getattr(peft_ntk_select, "__version__", "?"),
        },
        "git_commit": _git_commit(package_root),
        "loadavg_start": list(os.getloadavg()),
    }
    if torch.device(device).type == "cuda":
        index = torch.device(device)
        info["machine"]["gpu"] = torch.cuda.get_device_name(index)
        info["machine"]["gpu_memory_gib"] = torch.cuda.get_device_properties(index).total_memory / 2**30
        info["versions"]["cuda"] = torch.version.cuda
    return info


def write_result(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return path


def record_main(
    description: str | None,
    default: Path,
    record: Callable[[Path], dict[str, Any]],
    show: Callable[[dict[str, Any]], str],
    argv: Sequence[str] | None = None,
) -> None:
    """Entry point of a record script: ``record(path)`` writes the result file (``--output``, default ``default``)
    and returns it; ``--print`` only reads it; then ``show(payload)`` is printed."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    shown = default.relative_to(Path(__file__).resolve().parents[1])
    parser.add_argument("--output", type=Path, default=default, help=f"result file [{shown}]")
    parser.add_argument("--print", action="store_true", help="only print the tables from the result file")
    args = parser.parse_args(argv)
    payload = json.loads(args.output.read_text()) if args.print else record(args.output)
    print(show(payload))


def run_benchmark(main: Callable[[], Any], prog: str, loggers: Sequence[str], error: type[Exception]) -> None:
    """A benchmark package's ``__main__``: INFO logging for ``loggers``, ``main()``, and ``error`` (the benchmark's
    "cannot run as asked") or the library's typed errors (bad data, model or settings) as one line
    ``<prog>: error: ...`` on stderr with exit status 1."""
    import logging
    import sys

    from peft_ntk_select.errors import NTKSelectError

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in loggers:
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        main()
    except (error, NTKSelectError) as failure:
        sys.stderr.write(f"{prog}: error: {failure}\n")
        raise SystemExit(1) from None

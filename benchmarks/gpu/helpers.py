"""Helpers of ``run_gpu_bench.sh``: ``check`` (the Python environment) and ``recap`` (one table of all results).

``python benchmarks/gpu/helpers.py check [--cpu-ok]``: print the versions of what the benchmark imports,
compare them with the project's requirements (pyproject.toml), show the GPU; exit 2 naming every missing
package, or 3 when no CUDA device is usable (unless ``--cpu-ok``). Needs nothing outside the repo.

``python benchmarks/gpu/helpers.py recap DIR``: one compact table from every ``bench_kernels.py --json``
file in DIR: per row, median wall time, peak memory above the model, and the ratio to the floor.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NEEDED = ("torch", "transformers", "peft", "accelerate", "numpy", "tqdm", "psutil")


def _requirements() -> dict[str, str]:
    """{name: specifier} of the project's dependencies, from pyproject.toml (empty if unreadable)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return {}
    try:
        data = tomllib.loads((REPO / "pyproject.toml").read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for line in data.get("project", {}).get("dependencies", []):
        name = line.split(";")[0].strip()
        cut = next((i for i, ch in enumerate(name) if ch in "<>=!~ ["), len(name))
        out[name[:cut].strip().lower()] = name[cut:].strip()
    return out


def check(cpu_ok: bool) -> int:
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    requirements = _requirements()
    versions: dict[str, str] = {}
    missing = []
    for name in NEEDED:
        try:
            module = importlib.import_module(name)
        except Exception as error:  # ImportError, or a broken install raising anything
            missing.append(f"{name} ({type(error).__name__}: {error})")
            continue
        versions[name] = getattr(module, "__version__", "?")
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version
    except ImportError:
        SpecifierSet = None  # noqa: N806
    for name, version in versions.items():
        spec = requirements.get(name, "")
        verdict = ""
        if spec and SpecifierSet is not None:
            try:
                ok = Version(version.split("+")[0]) in SpecifierSet(spec)
                verdict = "ok" if ok else f"OUTSIDE the project's range {spec} (the run goes on)"
            except Exception:
                verdict = "?"
        print(f"  {name:<13} {version:<16} {('required ' + spec) if spec else '':<26} {verdict}")
    if missing:
        print("MISSING Python packages (nothing can be installed on this machine):")
        for line in missing:
            print(f"  - {line}")
        return 2
    try:
        import peft_ntk_select
        from peft_ntk_select import compute_kernels, discover_candidates  # noqa: F401
    except Exception as error:
        print(f"MISSING: peft_ntk_select does not import from {REPO}: {type(error).__name__}: {error}")
        return 2
    print(f"  peft_ntk_select from {Path(peft_ntk_select.__file__).parent}")

    import torch

    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    print(f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}")
    if not torch.cuda.is_available():
        print("no CUDA device is usable by torch" + (" (smoke run: CPU is fine)" if cpu_ok else ""))
        return 0 if cpu_ok else 3
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        print(
            f"cuda:{index} {props.name}, {props.total_memory / 2**30:.1f} GiB, capability {props.major}.{props.minor}, "
            f"{props.multi_processor_count} SMs, bf16 {torch.cuda.is_bf16_supported()}"
        )
    x = torch.randn(1024, 1024, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    print(f"cuda sanity: bf16 matmul ok ({float((x @ x).float().abs().mean()):.2f})")
    print(f"TF32 matmul allowed: {torch.backends.cuda.matmul.allow_tf32} (float32 rows run in full float32)")
    return 0


def _mib(value: float) -> str:
    return f"{value / 1024:.2f} GiB" if value >= 1024 else f"{value:.0f} MiB"


def recap(folder: str) -> int:
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        print(f"no results in {folder}")
        return 0
    print(f"{'run / row':<58} {'wall (s)':>9} {'x floor':>8} {'peak above model':>17}")
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            print(f"{path.name}: unreadable ({error})")
            continue
        args = data.get("args", {})
        machine = data.get("machine", {})
        params = data.get("parameters")
        print(
            f"{path.stem}: {args.get('arch', 'roberta')} {args.get('dtype', 'float32')}, "
            f"{(params or 0) / 1e6:.1f}M params, {data.get('candidates')} candidates, n={args.get('n')}, "
            f"T={args.get('length')}, {machine.get('gpu', machine.get('device'))}, {machine.get('elapsed_s', 0):.0f} s"
        )
        for row in data.get("rows", []):
            label = row["label"] + (f" *n={row['extrapolated_from_n']}" if row.get("extrapolated_from_n") else "")
            if row.get("error"):
                print(f"  {label:<56} FAILED: {row['error']}")
                continue
            print(f"  {label:<56} {row['wall_s']:>9.3f} {row['x_floor']:>8.2f} {_mib(row['peak_mib']):>17}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        return check(cpu_ok="--cpu-ok" in argv[1:])
    if argv[:1] == ["recap"] and len(argv) == 2:
        return recap(argv[1])
    print(__doc__)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

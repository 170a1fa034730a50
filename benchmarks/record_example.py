"""Record what ``examples/train_with_trainer.py`` prints (examples/README.md, "Measured") in one result file.

    .venv/bin/python benchmarks/record_example.py            # writes examples/results/train_with_trainer.json (~6 min)
    .venv/bin/python benchmarks/record_example.py --print    # the README's table from that file

Runs the example three times with its defaults (1,024 train / 512 held-out reviews, 2 epochs, seed 0), each in a
fresh process, timed (wall clock, imports included):

1. as is: trains the selector's pick (subset #0);
2. ``--subset-rank -1``: trains the other end of the ranking (Algorithm 2 as printed);
3. ``--compare-default``: the pick again, then PEFT's usual placement (query and value in every layer).

From each run's output it keeps the trained subset, the trainable parameters (LoRA + head, as PEFT prints them),
the held-out accuracy, the selection time the script prints and the total wall time; with date, machine and
versions.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "train_with_trainer.py"
RESULT = ROOT / "examples" / "results" / "train_with_trainer.json"
RUNS = {"pick": [], "lowest": ["--subset-rank", "-1"], "compare_default": ["--compare-default"]}


def parse(output: str) -> dict[str, Any]:
    """Trained subsets, trainable parameters, accuracies and the selection time from the example's stdout."""
    accuracies = dict(re.findall(r"eval accuracy \((.+?)\): ([0-9.]+)", output))
    return {
        "subsets": re.findall(r"training subset #(-?\d+): (\[.*?\])", output),
        "trainable_params": [int(p.replace(",", "")) for p in re.findall(r"trainable params: ([0-9,]+)", output)],
        "accuracy": {name: float(value) for name, value in accuracies.items()},
        "selection_s": float(re.search(r"subsets ranked by \w+ \((\d+) s\)", output).group(1)),
        "subsets_ranked": int(re.search(r"(\d+) subsets ranked by", output).group(1)),
        "objective": re.search(r"subsets ranked by (\w+)", output).group(1),
        "printed_total_s": float(re.search(r"total time (\d+) s", output).group(1)),
    }


def run(arguments: list[str]) -> dict[str, Any]:
    import peft_ntk_select

    package_root = str(Path(peft_ntk_select.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]).rstrip(":")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(SCRIPT), *arguments], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"train_with_trainer.py {' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    return {"argv": ["examples/train_with_trainer.py", *arguments], "wall_s": seconds, **parse(done.stdout)}


def record(path: Path) -> dict[str, Any]:
    payload: dict[str, Any] = {"what": "examples/README.md: train_with_trainer.py with its defaults",
                               **harness.metadata(), "runs": {}}  # fmt: skip
    for name, arguments in RUNS.items():
        payload["runs"][name] = run(arguments)
        print(f"{name}: {payload['runs'][name]['wall_s']:.0f} s, {payload['runs'][name]['accuracy']}", flush=True)
    harness.write_result(path, payload)
    print(f"wrote {path}")
    return payload


def table(payload: dict[str, Any]) -> str:
    runs = payload["runs"]
    rows = [
        ("pick", runs["pick"], 0),
        ("lowest", runs["lowest"], 0),
        ("PEFT default (query + value)", runs["compare_default"], 1),
    ]
    lines = ["| run | trained subset | LoRA + head parameters | held-out accuracy |", "| --- | --- | --- | --- |"]
    for label, entry, index in rows:
        subset = entry["subsets"][0][1] if index == 0 else "query, value in every layer"
        accuracy = list(entry["accuracy"].values())[index]
        lines.append(f"| {label} | {subset} | {entry['trainable_params'][index]:,} | {accuracy:.3f} |")
    lines.append(
        f"\npick run: {runs['pick']['wall_s']:.0f} s wall, selection {runs['pick']['selection_s']:.0f} s; "
        f"--compare-default: {runs['compare_default']['wall_s']:.0f} s; {payload['date']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    harness.record_main(__doc__, RESULT, record, table, argv)


if __name__ == "__main__":
    main()

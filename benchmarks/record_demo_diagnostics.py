"""Record the demo's trust diagnostics (README, "How much to trust a pick") in one result file.

    .venv/bin/python benchmarks/record_demo_diagnostics.py           # writes results/demo_diagnostics.json (~4 min)
    .venv/bin/python benchmarks/record_demo_diagnostics.py --print   # the README's tables from that file

Runs, each in a fresh process and timed (wall clock, model loading included), on the embedded MiniLM and the
real reviews (offline):

0. ``peft-ntk-select select --output DIR``: the demo (``make demo``), for its time;
1. ``peft-ntk-select select --stability 5 --linearity --output DIR``: the demo selection (budget 3 of 18 q/k/v
   candidates, all 816 subsets, default objective), then 5 reruns per kernel (``lora``, ``expected``) and axis
   (init seeds, sample draws), then the linearity check with 3 models per radius;
2. ``peft-ntk-select select --objective min_ratio --stability 5 --output DIR``: the same reruns for the other end
   of the ranking (Algorithm 2 as printed);
3. ``peft-ntk-select linearity --json``: the linearity check alone, with its defaults (32 samples, radii
   0, 0.5, 1, 2, 4, 5 models per radius, every weight but the input embeddings perturbed).

From the files the first writes (result.json, stability.json, linearity.json) and the curve the second prints,
it keeps the stability reports, both linearity curves, and the spectra behind "the head dominates":
lambda_max(K), lambda_max(S_C) of the pick and what S_C adds to lambda_max(K), with the date, machine and versions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "demo_diagnostics.json"
STABILITY_RUNS = 5


def _command(arguments: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """``python -m peft_ntk_select ARGS`` with the package this process imports; (completed, wall seconds)."""
    import peft_ntk_select

    package_root = str(Path(peft_ntk_select.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]).rstrip(":")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "peft_ntk_select", *arguments], cwd=cwd, env=env,
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"peft-ntk-select {' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    return done, seconds


def short_names(result) -> dict[str, str]:
    return {c.name: f"L{c.layer}.{c.kind}" for c in result.candidates}


def stability_rows(reports: list[dict[str, Any]], short: dict[str, str]) -> list[dict[str, Any]]:
    """One row per report: the README's stability table."""
    rows = []
    for report in reports:
        picks = [tuple(pick) for pick in report["picks"]]
        best = max(set(picks), key=picks.count)
        rows.append({
            "kernel": report["kernel"], "axis": report["axis"], "runs": len(report["seeds"]),
            "mean_tau": report["mean_tau"], "min_tau": report["min_tau"], "top1_agreement": report["top1_agreement"],
            "best_subset": " ".join(sorted((short[m] for m in best), key=_order)), "best_count": picks.count(best),
        })  # fmt: skip
    return rows


def _order(name: str) -> tuple[int, str]:
    layer, kind = name[1:].split(".")
    return int(layer), kind


def linearity_rows(curve: dict[str, Any]) -> dict[str, Any]:
    """The README's linearity table: L_avg and L_upper relative to L_avg at the first radius."""
    first = curve["l_avg"][0]
    return {
        "radii": curve["radii"],
        "l_avg_relative": [value / first for value in curve["l_avg"]],
        "l_upper_relative": [value / first for value in curve["l_upper"]],
        "l_avg_0": first,
        "weight_norm": curve["weight_norm"],
        "models_per_radius": len(curve["per_model"][0]),
        "samples": curve.get("num_samples", curve.get("n_samples")),
    }


def head_spectra(result) -> dict[str, Any]:
    """lambda_max of the base kernel K and of the pick's own kernel S_C (float64)."""
    import torch

    position = {c.name: i for i, c in enumerate(result.candidates)}
    pick = [position[m] for m in result.ranking[0].modules]
    contributions = result.contributions[pick].sum(0)
    per_module = [float(torch.linalg.eigvalsh(result.contributions[i])[-1]) for i in pick]
    top = result.ranking[0]
    return {
        "lambda_max_K": float(torch.linalg.eigvalsh(result.base_kernel)[-1]),
        # what S_C adds to the top eigenvalue: lambda_max(K + S_C + sigma I) - lambda_max(K + sigma I)
        "lambda_max_increase": float((top.ratio - 1) * top.lambda_max / top.ratio),
        "trace_K_over_n": float(result.base_kernel.trace() / result.base_kernel.shape[0]),
        "lambda_max_S_C": float(torch.linalg.eigvalsh(contributions)[-1]),
        "lambda_max_S_l_of_pick": per_module,
        "lambda_max_S_l_largest": float(torch.linalg.eigvalsh(result.contributions)[:, -1].max()),
        "median_trace_S_l_over_n": float(
            result.contributions.diagonal(dim1=1, dim2=2).sum(-1).median() / result.base_kernel.shape[0]
        ),  # fmt: skip
    }


def record(path: Path) -> dict[str, Any]:
    from peft_ntk_select import SelectionResult

    payload: dict[str, Any] = {"what": "README 'How much to trust a pick': the demo's stability and linearity",
                               **harness.metadata()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        demo_args = ["select", "--output", str(Path(tmp) / "demo")]
        _, demo_s = _command(demo_args, Path(tmp))
        print(f"select (the demo): {demo_s:.1f} s", flush=True)
        out, low = Path(tmp) / "out", Path(tmp) / "min_ratio"
        select_args = ["select", "--stability", str(STABILITY_RUNS), "--linearity", "--output", str(out)]
        _, select_s = _command(select_args, Path(tmp))
        print(f"select --stability {STABILITY_RUNS} --linearity: {select_s:.1f} s", flush=True)
        low_args = ["select", "--objective", "min_ratio", "--stability", str(STABILITY_RUNS), "--output", str(low)]
        _, low_s = _command(low_args, Path(tmp))
        print(f"select --objective min_ratio --stability {STABILITY_RUNS}: {low_s:.1f} s", flush=True)
        low_reports = json.loads((low / "stability.json").read_text())
        low_short = short_names(SelectionResult.load(low))
        linearity_args = ["linearity", "--json"]
        done, linearity_s = _command(linearity_args, Path(tmp))
        print(f"linearity: {linearity_s:.1f} s", flush=True)
        curve = json.loads(done.stdout.strip().splitlines()[-1])
        result = SelectionResult.load(out)
        reports = json.loads((out / "stability.json").read_text())
        select_curve = json.loads((out / "linearity.json").read_text())
    short = short_names(result)
    payload["commands"] = [
        {"argv": ["peft-ntk-select", *demo_args[:-1], "DIR"], "wall_s": demo_s},
        {"argv": ["peft-ntk-select", *select_args[:-1], "DIR"], "wall_s": select_s},
        {"argv": ["peft-ntk-select", *linearity_args], "wall_s": linearity_s},
        {"argv": ["peft-ntk-select", *low_args[:-1], "DIR"], "wall_s": low_s},
    ]
    payload["selection"] = {
        "pick": [short[m] for m in result.ranking[0].modules],
        "objective": result.objective,
        "subsets": len(result.ranking),
        "candidates": len(result.candidates),
        "samples": len(result.sample_indices),
    }
    payload["stability"] = stability_rows(reports, short)
    payload["stability_reports"] = reports
    payload["stability_min_ratio"] = stability_rows(low_reports, low_short)
    payload["stability_min_ratio_picks"] = [
        {"kernel": r["kernel"], "axis": r["axis"], "picks": [" ".join(sorted((low_short[m] for m in pick), key=_order))
                                                             for pick in r["picks"]]}
        for r in low_reports
    ]  # fmt: skip
    payload["linearity"] = linearity_rows(curve)
    payload["linearity_curve"] = curve
    payload["linearity_in_select"] = linearity_rows(select_curve)
    payload["head"] = head_spectra(result)
    harness.write_result(path, payload)
    print(f"wrote {path}")
    return payload


def tables(payload: dict[str, Any]) -> str:
    """The README's two tables and the figures quoted beside them, from a recorded file."""
    lines = ["| kernel | varied | runs | mean τ | min τ | top-1 agreement | best subset |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    varied = {("lora", "init"): "init (A and head)", ("expected", "init"): "init (head only)"}
    for row in payload["stability"]:
        lines.append(
            f"| `{row['kernel']}` | {varied.get((row['kernel'], row['axis']), 'sample draw')} | {row['runs']} | "
            f"{row['mean_tau']:.3f} | {row['min_tau']:.3f} | {row['top1_agreement']:.2f} | "
            f"{row['best_subset']} in {row['best_count']}/{row['runs']} |"
        )
    lin = payload["linearity"]
    lines += ["", "| r | " + " | ".join(f"{r:g}" for r in lin["radii"]) + " |",
              "| --- " * (len(lin["radii"]) + 1) + "|",
              "| L_avg / L_avg(0) | " + " | ".join(f"{v:.3f}" for v in lin["l_avg_relative"]) + " |",
              "| L_upper / L_avg(0) | " + " | ".join(f"{v:.3f}" for v in lin["l_upper_relative"]) + " |"]  # fmt: skip
    demo_s, select_s, linearity_s, _ = (command["wall_s"] for command in payload["commands"])
    head = payload["head"]
    lines += ["", f"demo: {demo_s:.0f} s; select --stability --linearity: {select_s:.0f} s; "
              f"linearity: {linearity_s:.0f} s; "
              f"L_avg(0) = {lin['l_avg_0']:.3g}; ||theta0|| = {lin['weight_norm']:.0f}; "
              f"lambda_max(K) = {head['lambda_max_K']:.3g}; lambda_max(S_C) = {head['lambda_max_S_C']:.2g}, adds "
              f"{head['lambda_max_increase']:.1g} to lambda_max(K); "
              f"{payload['date']}"]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    harness.record_main(__doc__, RESULT, record, tables, argv)


if __name__ == "__main__":
    main()

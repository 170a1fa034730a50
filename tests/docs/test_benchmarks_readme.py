"""benchmarks/README.md: every figure is read from a committed result file."""

from __future__ import annotations

import math
import re

from tests.docs.figures import RESULTS, ROOT, check, find, load, read, section, table

README = read("benchmarks/README.md")
GPU = ROOT / "benchmarks" / "gpu" / "results"
GPU_ROWS = {"floor: fwd + 1 bwd": "floor", "2-backward floor": "floor_c", "func, chunk 32": "func@32",
            "hooks, chunk 8": "hooks@8", "hooks, chunk 32": "hooks@32",
            "authors' jacrev, ONE subset of 3 (n=2, scaled)": "baseline"}  # fmt: skip


def _gpu(name: str) -> dict:
    run = load(GPU / f"{name}_h100_2026-11-26.json")
    return {**run, "by_key": {row["key"]: row for row in run["rows"]}}


def test_the_gpu_table_is_the_h100_files():
    rows = table(section(README, "### Measured on a GPU"), "model")
    prefix, output = None, None
    for model, out, label, wall, x_floor, peak in rows:
        if model:
            prefix = "roberta_fp32" if model.startswith("RoBERTa") else "llama_bf16"
        output = out or output
        run = _gpu(prefix + ("_margin" if output == "margin" else ""))
        row = run["by_key"][GPU_ROWS[label]]
        check(wall, row["wall_s"], label)
        check(x_floor, row["x_floor"], label)
        check(peak, row["peak_mib"] / 1024, label)
        if model:
            params, candidates = find(model, r"(\d+)M\b.*?(\d+) candidates")
            check(params, run["parameters"] / 1e6, model)
            assert int(candidates) == run["candidates"]
    assert len(rows) == 14


def test_the_gpu_prose_is_the_h100_files():
    text = section(README, "### Measured on a GPU")
    summary = (GPU / "h100_2026-11-26_summary.txt").read_text()
    steps = [int(s) for s in re.findall(r"^=== \w+: ok, (\d+) s$", summary, flags=re.M)]
    assert find(text, r"four steps of (\d+), (\d+), (\d+) and (\d+) s") == tuple(map(str, steps))
    roberta, llama = _gpu("roberta_fp32"), _gpu("llama_bf16")
    machine = roberta["machine"]
    cpus, torch, transformers, peft = find(text, r"One lent H100 \((\d+) CPUs, torch (\S+), transformers (\S+), "
                                           r"peft ([\d.]+)\)")  # fmt: skip
    assert (int(cpus), torch, transformers, peft) == (machine["nproc"], machine["torch"], machine["transformers"],
                                                      machine["peft"])  # fmt: skip
    r_pass, l_pass = find(text, r"one hooks pass, ([\d.]+) s \(RoBERTa-base shape, T = 512\) or ([\d.]+) s")
    check(r_pass, roberta["by_key"]["hooks@32"]["wall_s"], "roberta hooks@32")
    check(l_pass, llama["by_key"]["hooks@32"]["wall_s"], "llama hooks@32")
    r_sub, l_sub = find(text, r"([\d,]+) subsets of 3 for\s+RoBERTa, ([\d,]+) for the Llama")
    assert (int(r_sub.replace(",", "")), int(l_sub.replace(",", ""))) == (math.comb(36, 3), math.comb(48, 3))
    r_base, l_base, r_h, l_h = find(text, r"costs ([\d.]+) s and ([\d.]+) s per\s+subset on the same GPU: ([\d.]+) h "
                                    r"and ([\d.]+) h")  # fmt: skip
    for printed, run in ((r_base, roberta), (l_base, llama)):
        check(printed, run["by_key"]["baseline"]["wall_s"], "baseline")
    check(r_h, roberta["by_key"]["baseline"]["wall_s"] * math.comb(36, 3) / 3600, "roberta hours")
    check(l_h, llama["by_key"]["baseline"]["wall_s"] * math.comb(48, 3) / 3600, "llama hours")
    trace_r, trace_l, margin_r, margin_l = find(text, r"hooks ([\d.]+)× and ([\d.]+)× with trace,\s+([\d.]+)× and "
                                                r"([\d.]+)× with margin")  # fmt: skip
    check(trace_r, roberta["by_key"]["hooks@32"]["x_floor"], "roberta trace")
    check(trace_l, llama["by_key"]["hooks@32"]["x_floor"], "llama trace")
    check(margin_r, _gpu("roberta_fp32_margin")["by_key"]["hooks@8"]["x_floor"], "roberta margin")
    check(margin_l, _gpu("llama_bf16_margin")["by_key"]["hooks@8"]["x_floor"], "llama margin")
    low, high, mem_low, mem_high = find(text, r"\(([\d.]+)–([\d.]+)× for hooks\) at ([\d.]+)–([\d.]+)× the memory")
    speed = [run["by_key"]["hooks@8"]["wall_s"] / run["by_key"]["hooks@32"]["wall_s"] for run in (roberta, llama)]
    memory = [run["by_key"]["hooks@32"]["peak_mib"] / run["by_key"]["hooks@8"]["peak_mib"] for run in (roberta, llama)]
    check(low, min(speed), "chunk speed-up")
    check(high, max(speed), "chunk speed-up")
    check(mem_low, min(memory), "chunk memory")
    check(mem_high, max(memory), "chunk memory")


def _memory_rows() -> dict[str, dict]:
    return {row["cap"]: row for row in load(RESULTS / "bench_memory_llama290m_cpu.json")}


def _mib(value: float) -> float:
    return value / 2**20


def test_the_memory_table_is_the_bench_memory_file():
    rows = _memory_rows()
    text = section(README, "## `bench_memory.py`")
    printed = table(text, "cap")
    assert [row[0].split(" (")[0] for row in printed] == ["2 GB", "4 GB", "8 GB", "default: half the available RAM"]
    (needed,) = find(printed[0][4], r"([\d.]+) GB needed for one sample")
    check(needed, float(re.search(r"about ([\d.e+]+) bytes", rows["2GB"]["error"]).group(1)) / 1e9, "2 GB")
    assert "InvalidConfigError" in printed[0][7] and rows["2GB"]["error"].startswith("InvalidConfigError")
    for cells, cap in zip(printed[1:], ("4GB", "8GB", "none"), strict=True):
        row = rows[cap]
        (cap_mib,) = find(cells[0], r"\(([\d,]+) MiB\)")
        check(cap_mib, _mib(row["max_memory"]), cap)
        for cell, key in zip(cells[1:5], ("rss_before", "peak_rss", "added", "estimated_peak"), strict=True):
            check(cell, _mib(row[key]), f"{cap} {key}")
        assert int(cells[5]) == row["chunk_size"]
        check(cells[6], row["seconds"], f"{cap} seconds")
        assert cells[7] == ("yes" if row["holds"] else "no")
    provenance = load(RESULTS / "provenance_transcribed.json")["files"][
        "benchmarks/results/bench_memory_llama290m_cpu.json"
    ]
    date, hour = find(text, r"Measured (\d{4}-\d\d-\d\d)\n(\d\d:\d\d) UTC")
    assert provenance["date"].startswith(f"{date} {hour} UTC")


def test_the_memory_prose_is_the_bench_memory_file():
    rows = [row for row in _memory_rows().values() if "error" not in row]
    text = section(README, "## `bench_memory.py`")
    (activations,) = find(text, r"The plan measured ([\d.]+) GB of saved activations per sample")
    check(activations, rows[0]["activation_bytes"] / 1e9, "activations")
    low, high = find(text, r"so it stays ([\d.]+)–([\d.]+)× above what was measured")
    factors = [row["estimated_peak"] / row["added"] for row in rows]
    check(low, min(factors), "factor")
    check(high, max(factors), "factor")
    (one,) = find(text, r"one sample at a time \(([\d,]+) MiB added\)")
    check(one, _mib(next(row for row in rows if row["chunk_size"] == 1)["added"]), "one sample")
    fast, slow = find(text, r"\((\d+)–(\d+) s on 2 cores\)")
    check(fast, min(row["seconds"] for row in rows), "fastest")
    check(slow, max(row["seconds"] for row in rows), "slowest")


def _summary(name: str) -> dict:
    return load(RESULTS / f"compare_picks_minilm_{name}" / "summary.json")


def _objective(summary: dict, name: str) -> dict:
    return next(row for row in summary["objectives"] if row["objective"] == name)


def _baseline(summary: dict, start: str) -> dict:
    return next(row for row in summary["baselines"] if row["baseline"].startswith(start))


def _ratio_rho(summary: dict) -> dict:
    return next(c for c in summary["correlations"] if c["score"] == "ratio" and c["outcome"] == "eval_accuracy")


def test_the_committed_compare_picks_runs_are_described_by_their_summaries():
    text = section(README, "## `compare_picks.py`")
    pattern = (r"{name}/`.*?(\d+) placements\s+×\s+(\d) seeds, (\d+) runs, (\d+) min.*?ρ = ([+\-][\d.]+) "
               r"\[([+\-][\d.]+), ([+\-][\d.]+)\]")  # fmt: skip
    for name in ("reviews", "convention_party"):
        summary = _summary(name)
        placements, seeds, runs, minutes, *rho = find(text, pattern.format(name=f"compare_picks_minilm_{name}"))
        assert (int(placements), int(seeds)) == (len(summary["placements"]), len(summary["config"]["seeds"]))
        assert int(runs) == summary["fine_tuning_seconds"]["runs"]
        seconds = summary["fine_tuning_seconds"]
        check(minutes, (seconds["train_total"] + seconds["eval_total"]) / 60, name)
        for printed, key in zip(rho, ("spearman", "spearman_low", "spearman_high"), strict=True):
            check(printed, _ratio_rho(summary)[key], f"{name} {key}")
    reviews = _summary("reviews")
    low, random, high, default, head, selection, run = find(
        text, r"lowest-ratio pick\s+([\d.]+) against ([\d.]+) for the median random subset, ([\d.]+) for the "
        r"highest-ratio pick.*?([\d.]+) for PEFT's default \(4× the parameters\), ([\d.]+) for head-only; selection "
        r"([\d.]+) s against\s+(\d+) s per fine-tuning run")  # fmt: skip
    party = _summary("convention_party")
    p_low, p_random, p_high, p_default, p_head = find(
        text, r"lowest-ratio pick ([\d.]+), median random ([\d.]+), highest-ratio pick ([\d.]+), PEFT's default "
        r"([\d.]+),\s+head-only ([\d.]+)")  # fmt: skip
    for printed, summary in (((low, random, high, default, head), reviews),
                             ((p_low, p_random, p_high, p_default, p_head), party)):  # fmt: skip
        values = (_objective(summary, "min_ratio")["pick_accuracy"], _baseline(summary, "random")["accuracy"],
                  _objective(summary, "max_ratio")["pick_accuracy"], _baseline(summary, "default")["accuracy"],
                  _baseline(summary, "head only")["accuracy"])  # fmt: skip
        for cell, value in zip(printed, values, strict=True):
            check(cell, value, "compare_picks accuracy")
    check(selection, reviews["times"]["lora"], "selection")
    check(run, reviews["fine_tuning_seconds"]["train_mean"], "one run")
    lowest, highest = find(text, r"every\s+budget-3 subset lies within ([\d.]+)-([\d.]+)\.")
    size = party["subsets"][0]["lora_params"]
    accuracies = [s["eval_accuracy"] for s in party["subsets"] if s["lora_params"] == size and s.get("eval_accuracy")]
    assert float(lowest) <= min(accuracies) and max(accuracies) <= float(highest)


SEARCH = RESULTS / "bench_search_synthetic_cpu.json"


def test_the_search_table_is_the_bench_search_file():
    run = load(SEARCH)
    text = section(README, "## `bench_search.py`")
    rows = table(text, "regime")
    assert len(rows) == len(run["rows"])
    for cells, row in zip(rows, run["rows"], strict=True):
        regime, case, objective, method, seconds, nodes, solved, certificate = cells
        assert (regime, case, objective) == (row["regime"], row["case"], f"`{row['objective']}`")
        assert row["method"].endswith(method)
        check(seconds, row["seconds"], f"{case} {method}")
        assert (int(nodes.replace(",", "")), int(solved.replace(",", ""))) == (row["nodes"], row["evaluated"])
        assert certificate.startswith("optimal") == row["optimal"]
        if "gap" in certificate:
            check(certificate.split("gap ")[1], row["gap"], f"{case} {method} gap")
        assert ("time limit" in certificate) == (row["stopped"] == "time_limit")
    exhaustive, brute = find(text, r"returns the exact top 10 in ([\d.]+) s\), \*\*not met\*\* by solving\s+every "
                             r"subset's eigenproblem \(([\d.]+) s\)")  # fmt: skip
    check(exhaustive, run["rows"][1]["seconds"], "exhaustive")
    check(brute, run["rows"][0]["seconds"], "brute force")
    (limit,) = find(text, r"with K = 0 `max_ratio` did \*\*not\*\* close within (\d+) s")
    causal = [r for r in run["rows"] if r["regime"].startswith("causal") and r["objective"] == "max_ratio"]
    assert not causal[0]["optimal"] and causal[0]["stopped"] == "time_limit" and f"={limit} s" in causal[0]["method"]
    (gap,) = find(text, r"Its certificate's gap is (\d+)")
    check(gap, causal[0]["gap"], "gap")
    (beam,) = find(text, r"beam search found the same best\s+subset in ([\d.]+) s")
    check(beam, causal[1]["seconds"], "beam")
    assert causal[1]["top"][0] == causal[0]["top"][0]
    date = run["date"][:10]
    assert f"Measured {date} on {run['machine']['nproc']} shared cores (`{run['machine']['cpu_model']}`" in text
    (load_start,) = find(text, r"load average ([\d.]+) at the start")
    check(load_start, run["loadavg_start"][0], "load average")

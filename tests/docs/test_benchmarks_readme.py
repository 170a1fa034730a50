"""benchmarks/README.md: every figure is read from a committed result file."""

from __future__ import annotations

import math
import re

from tests.docs.figures import RESULTS, ROOT, check, code_blocks, find, load, read, section, table

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
    date, hour = find(text, r"Measured (\d{4}-\d\d-\d\d) (\d\d:\d\d) UTC")
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
    text = section(README, "## `compare_picks`")
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


KERNELS = [RESULTS / "bench_kernels_cpu_threads1.json", RESULTS / "bench_kernels_cpu_margin_threads1.json",
           RESULTS / "bench_kernels_cpu_adam_threads1.json"]  # fmt: skip


def test_the_cpu_kernel_tables_are_the_recorded_reports():
    """Each table is the printed report of its run, line for line; the runs' headers are their metadata."""
    text = section(README, "## `bench_kernels.py`")
    blocks = [block for block in code_blocks(text) if block.startswith("row ")]
    assert len(blocks) == len(KERNELS)
    for block, path in zip(blocks, KERNELS, strict=True):
        run = load(path)
        report = run["report"].splitlines()
        for line in block.rstrip().splitlines():
            assert line in report, f"{path.name}: {line!r} is not in the recorded report"
        rows = {row["label"]: row for row in run["rows"]}
        for line in block.splitlines()[2:]:
            if not line.strip():
                break
            label, wall, *_ = re.split(r"\s{2,}", line.strip())
            check(wall, rows[label.split(" *n=")[0]]["wall_s"], label)
        pattern = r"(\d\d:\d\d) UTC, other\s+processes (\d+)% of the CPU during the run, (\d+) s in total"
        hour, other, total = re.findall(pattern, re.sub(r"\s+", " ", text))[KERNELS.index(path)]
        assert run["machine"]["date"][11:16] == hour
        check(other, run["machine"]["other_cpu_pct"], "other load")
        check(total, run["machine"]["elapsed_s"], "elapsed")
    run = load(KERNELS[0])
    (ratio,) = find(text, r"the slowest run of the floor, under the heaviest load,\s+took ([\d.]+)× its median")
    floor = next(row for row in run["rows"] if row["key"] == "floor")
    check(ratio, max(floor["wall_runs_s"]) / floor["wall_s"], "slowest floor run")
    meta = run["metadata"]
    machine = find(text, r"Machine: (\d+) CPUs \(`/proc/cpuinfo`: \"(.+?)\"\), (\d+) GiB, Python (\S+), torch\s+(\S+), "
                   r"transformers (\S+), peft (\S+); runs of (\d{4}-\d\d-\d\d)")  # fmt: skip
    assert machine[0] == str(meta["machine"]["nproc"]) and machine[1] == meta["machine"]["cpu_model"]
    check(machine[2], meta["machine"]["memory_gib"], "memory")
    assert machine[3:7] == tuple(meta["versions"][k] for k in ("python", "torch", "transformers", "peft"))
    assert meta["date"].startswith(machine[7])


def test_what_the_kernel_figures_say_is_the_recorded_runs():
    trace, margin = ({row["key"]: row for row in load(path)["rows"]} for path in KERNELS[:2])
    text = section(README, "### What the figures say")
    engines = [trace[key] for key in ("func@8", "func@32", "hooks@8", "hooks@32")]
    best = min(engines, key=lambda row: row["wall_s"])
    label, x_best, x_two = find(text, r"the fastest\s+engine, (.+?), is at ([\d.]+)×\..*?the 2-backward floor alone is "
                                r"([\d.]+)× the floor")  # fmt: skip
    assert label == best["label"]
    check(x_best, best["x_floor"], "fastest engine")
    check(x_two, trace["floor_c"]["x_floor"], "2-backward floor")
    func, hooks, cpu_floor, cpu_two = find(
        text, r"chunk 8 take ([\d.]+)× and ([\d.]+)× the 2-backward floor\. By process CPU time, which the "
        r"other\s+load disturbs less, the fastest engine costs ([\d.]+)× the floor and ([\d.]+)× the 2-backward "
        r"floor")  # fmt: skip
    check(func, trace["func@8"]["x_floor"] / trace["floor_c"]["x_floor"], "func vs 2-backward floor")
    check(hooks, trace["hooks@8"]["x_floor"] / trace["floor_c"]["x_floor"], "hooks vs 2-backward floor")
    check(cpu_floor, best["cpu_s"] / trace["floor"]["cpu_s"], "CPU time vs floor")
    check(cpu_two, best["cpu_s"] / trace["floor_c"]["cpu_s"], "CPU time vs 2-backward floor")
    m_func, m_hooks = find(
        text, r"With a one-backward output \(`margin`\), func and hooks take ([\d.]+)× and ([\d.]+)×"
    )
    check(m_func, margin["func@8"]["x_floor"], "func, margin")
    check(m_hooks, margin["hooks@8"]["x_floor"], "hooks, margin")
    mem_func, mem_hooks, peak_func, peak_hooks, t_func, t_hooks = find(
        text, r"chunk 32 needs ([\d.]+)× \(func\) and ([\d.]+)× \(hooks\) the peak memory of chunk 8\s+\(([\d,]+) and "
        r"([\d,]+) MiB at chunk 8\); its time is ([\d.]+)× \(func\) and ([\d.]+)× \(hooks\)")  # fmt: skip
    check(mem_func, trace["func@32"]["peak_mib"] / trace["func@8"]["peak_mib"], "func memory")
    check(mem_hooks, trace["hooks@32"]["peak_mib"] / trace["hooks@8"]["peak_mib"], "hooks memory")
    check(peak_func, trace["func@8"]["peak_mib"], "func peak")
    check(peak_hooks, trace["hooks@8"]["peak_mib"], "hooks peak")
    check(t_func, trace["func@32"]["wall_s"] / trace["func@8"]["wall_s"], "func chunk time")
    check(t_hooks, trace["hooks@32"]["wall_s"] / trace["hooks@8"]["wall_s"], "hooks chunk time")
    (reference,) = find(text, r"it costs ([\d.]+)× the fastest batched engine")
    check(reference, trace["reference"]["wall_s"] / best["wall_s"], "reference")
    baseline, engine, subsets, again, hours = find(
        text, r"one engine pass \(([\d.]+) s\s+against ([\d.]+) s\).*?scores all ([\d,]+) subsets of 3, where\s+the "
        r"baseline would need ([\d,]+) separate kernels, about (\d+) h")  # fmt: skip
    check(baseline, trace["baseline"]["wall_s"], "baseline")
    check(engine, best["wall_s"], "engine pass")
    count = math.comb(load(KERNELS[0])["candidates"], 3)
    assert int(subsets.replace(",", "")) == int(again.replace(",", "")) == count
    check(hours, trace["baseline"]["wall_s"] * count / 3600, "hours")
    cpu_trace, cpu_margin = find(
        section(README, "### Measured on a GPU"), r"against ([\d.]+)× and ([\d.]+)× on 2 shared"
    )
    check(cpu_trace, trace["hooks@8"]["x_floor"], "CPU hooks, trace")
    check(cpu_margin, margin["hooks@8"]["x_floor"], "CPU hooks, margin")


def test_the_profile_paragraph_is_the_profile_files():
    text = section(README, "### Where the time goes")

    def shares(engine):
        data = load(RESULTS / f"profile_kernels_cpu_{engine}.json")
        assert (data["args"]["n"], data["args"]["length"], data["args"]["threads"]) == (8, 128, 1)
        share = {row["op"]: row["cpu_share"] for row in data["top"]}
        model = share.get("aten::mm", 0) + share.get("aten::addmm", 0)
        return 100 * model, 100 * sum(share.get(op, 0) for op in ("aten::copy_", "aten::cat", "aten::bmm"))

    model_hooks, model_func, extra_hooks, extra_func = find(
        text, r"take (\d+) % \(hooks\) and (\d+) % \(func\) of the self CPU time.*?`aten::bmm`\) (\d+) % and (\d+) %"
    )
    (hooks_model, hooks_extra), (func_model, func_extra) = shares("hooks"), shares("func")
    assert (int(model_hooks), int(model_func)) == (round(hooks_model), round(func_model))
    assert (int(extra_hooks), int(extra_func)) == (round(hooks_extra), round(func_extra))

"""README.md: every figure is read from a committed result file (benchmarks/results/, benchmarks/gpu/results/)."""

from __future__ import annotations

import csv
import inspect
import math
import statistics

import pytest

from benchmarks.equal_params.decide import decide, defaults_of
from benchmarks.equal_params.readme import AGREEMENT, HEADROOM
from benchmarks.equal_params.readme import RESULTS as RESULTS_BLOCK
from peft_ntk_select import NTKSelector
from tests.docs.figures import RESULTS, check, close, find, load, read, section, table
from tests.docs.figures import tables as tables_of

README = read("README.md")
REVIEWS = RESULTS / "compare_picks_minilm_reviews"
PARTY = RESULTS / "compare_picks_minilm_convention_party"
RESULTS_ROOT = RESULTS.parent.parent  # the repository root


def _summary(folder):
    return load(folder / "summary.json")


def _objective(summary, name):
    return next(row for row in summary["objectives"] if row["objective"] == name)


def _baseline(summary, start):
    return next(row for row in summary["baselines"] if row["baseline"].startswith(start))


def _correlation(summary, score):
    return next(c for c in summary["correlations"] if c["score"] == score and c["outcome"] == "eval_accuracy")


def _budget_subsets(summary):
    """Every trained subset of the budget (3 modules), best held-out accuracy first."""
    size = summary["subsets"][0]["lora_params"]
    rows = [s for s in summary["subsets"] if s["lora_params"] == size and s.get("eval_accuracy") is not None]
    return sorted(rows, key=lambda s: -s["eval_accuracy"])


def _minutes(summary):
    seconds = summary["fine_tuning_seconds"]
    return (seconds["train_total"] + seconds["eval_total"]) / 60


def test_the_first_lines_are_the_two_make_commands():
    assert README.splitlines()[3:5] == [
        "make demo   # fresh machine: sets up .venv, ranks LoRA placements for real MiniLM on real movie reviews "
        "(offline)",
        "make test   # fresh machine: sets up .venv and runs the test suite",
    ]


def test_usage_quotes_the_ratio_spearman_of_the_demo_task():
    (rho,) = find(README, r"ranked the others well \(Spearman ([+\-−][\d.]+) with held-out accuracy\)")
    check(rho, _correlation(_summary(REVIEWS), "ratio")["spearman"], "Spearman")


def test_which_objective_prose_matches_both_tasks():
    text = section(README, "### Which objective")
    reviews, party = _summary(REVIEWS), _summary(PARTY)
    best = [_objective(s, "max_ratio") for s in (reviews, party)]
    (mean,) = find(text, r"best mean ρ \(([+\-][\d.]+)\)")
    check(mean, statistics.mean(row["spearman"] for row in best), "mean rho of max_ratio")
    wins = find(text, r"every seed of both tasks \((\d)/(\d), (\d)/(\d)\)")
    assert wins == tuple(str(v) for row in best for v in (row["wins_over_median_random"], row["seeds"]))
    (risk_mean,) = find(text, r"close\s+behind \(([+\-][\d.]+), same picks\)")
    check(risk_mean, statistics.mean(_objective(s, "min_risk")["spearman"] for s in (reviews, party)), "min_risk")
    assert all(_objective(s, "min_risk")["pick"] == _objective(s, "max_ratio")["pick"] for s in (reviews, party))
    loo_party, loo_place, loo_reviews, best_random = find(
        text, r"convention_party, ([\d.]+); (\w+) on reviews, ([\d.]+) against ([\d.]+) for the best random one"
    )
    party_best = _budget_subsets(party)[0]
    assert "pick:min_loo_error" in party_best["roles"]
    check(loo_party, party_best["eval_accuracy"], "min_loo_error pick, convention_party")
    order = [s["key"] for s in _budget_subsets(reviews)]
    place = order.index(_objective(reviews, "min_loo_error")["pick"])
    assert loo_place == ["first", "second", "third", "fourth"][place]
    check(loo_reviews, _objective(reviews, "min_loo_error")["pick_accuracy"], "min_loo_error pick, reviews")
    randoms = [s for s in _budget_subsets(reviews) if s["roles"] == "random"]
    check(best_random, randoms[0]["eval_accuracy"], "best random subset, reviews")
    margins = find(text, r"median random subset are small \(([+\-][\d.]+) and ([+\-][\d.]+)\)")
    for printed, row in zip(margins, best, strict=True):
        check(printed, row["pick_accuracy"] - row["median_random_accuracy"], "margin over random")
    rhos = find(text, r"points the wrong way on both tasks\*\* \(ρ ([+\-−][\d.]+) and ([+\-−][\d.]+)\)")
    for printed, summary in zip(rhos, (reviews, party), strict=True):
        check(printed, _objective(summary, "min_ratio")["spearman"], "min_ratio rho")
    heads = find(text, r"head alone \(([\d.]+) against ([\d.]+); ([\d.]+) against ([\d.]+)\)")
    for i, summary in enumerate((reviews, party)):
        check(heads[2 * i], _objective(summary, "min_ratio")["pick_accuracy"], "min_ratio pick")
        check(heads[2 * i + 1], _baseline(summary, "head only")["accuracy"], "head only")


def test_the_reproduce_line_gives_both_tasks_fine_tuning_minutes():
    text = section(README, "### Which objective")
    first, second = find(text, r"Reproduce \((\d+) and (\d+) minutes of fine-tuning and evaluation")
    check(first, _minutes(_summary(REVIEWS)), "reviews minutes")
    check(second, _minutes(_summary(PARTY)), "convention_party minutes")


def _pick(name):
    return lambda s: (_objective(s, name)["pick_accuracy"], _objective(s, name)["pick_accuracy_std"])


def _base(start):
    return lambda s: (_baseline(s, start)["accuracy"], _baseline(s, start)["accuracy_std"])


PLACEMENTS = {
    "lowest ratio": _pick("min_ratio"),
    "**highest ratio": _pick("max_ratio"),
    "pick of `max_alignment`": _pick("max_alignment"),
    "random subsets": _base("random"),
    "PEFT `find_kappa": _base("PEFT KappaTune"),
    "first layers": _base("first layers"),
    "last layers": _base("last layers"),
    "PEFT default": _base("default"),
    "head only": _base("head only"),
}


def test_does_the_pick_help_table_is_the_reviews_summary():
    summary = _summary(REVIEWS)
    rows = table(section(README, "### Does the pick help?"), "placement")
    assert len(rows) == len(PLACEMENTS)
    for (placement, _, accuracy), (start, measured) in zip(rows, PLACEMENTS.items(), strict=True):
        assert placement.startswith(start), placement
        mean, std = (part.strip("* ") for part in accuracy.split("±"))
        value, spread = measured(summary)
        check(mean, value, placement)
        check(std, spread, placement)
    (rank,) = find(rows[2][0], r"\(rank (\d+)\)")
    assert int(rank) == _objective(summary, "max_alignment")["pick_rank"]
    assert [int(r[1].replace(",", "")) for r in rows] == [18432] * 7 + [_baseline(summary, "default")["lora_params"], 0]


SCORES = {
    "spectral ratio": "ratio",
    "λmax(S_C), expected kernel": "expected_objective_max_lambda_max",
    "kernel-target alignment": "objective_max_alignment",
    "kernel-ridge training risk": "risk",
    "leave-one-out regression error": "objective_min_loo_error",
    "Theorem 1 upper bound": "risk_upper",
    "κ(K + S_C + σI)": "kappa",
    "effective rank of S_C": "objective_max_effective_rank",
}


def test_the_correlation_table_is_the_reviews_summary():
    summary = _summary(REVIEWS)
    rows = table(section(README, "### Does the pick help?"), "score (over the 18 ranked and random subsets)")
    for (label, rho, tau), (start, score) in zip(rows, SCORES.items(), strict=False):
        assert label.startswith(start), label
        measured = _correlation(summary, score)
        for cell, name in ((rho, "spearman"), (tau, "kendall")):
            point, low, high = find(cell, r"([+\-−][\d.]+)\** \[([+\-−][\d.]+), ([+\-−][\d.]+)\]")
            for printed, key in ((point, name), (low, f"{name}_low"), (high, f"{name}_high")):
                check(printed, measured[key], f"{label} {key}")
    label, value, _ = rows[-1]
    assert label == "leave-one-out kernel-regression accuracy"
    (loo,) = find(value, r"undefined: ([\d.]+) for every subset")
    (value,) = {s["accuracy"] for s in summary["subsets"] if s["accuracy"] is not None}
    check(loo, value, "LOO accuracy")


def test_does_the_pick_help_prose():
    text = section(README, "### Does the pick help?")
    summary = _summary(REVIEWS)
    runs, minutes = find(text, r"816 subsets\), (\d+) runs, (\d+) min on 2 CPU cores")
    assert int(runs) == summary["fine_tuning_seconds"]["runs"]
    check(minutes, _minutes(summary), "minutes")
    low, best = _objective(summary, "min_ratio"), _objective(summary, "max_ratio")
    random, head = _baseline(summary, "random"), _baseline(summary, "head only")
    rho, pick, below, wins, above = find(
        text,
        r"with ρ = ([+\-][\d.]+).*?trained: ([\d.]+), ([\d.]+) below the median random subset \((\d) wins in 3\s+"
        r"seeds\) and only ([\d.]+) above",
    )
    check(rho, _correlation(summary, "ratio")["spearman"], "rho")
    check(pick, low["pick_accuracy"], "lowest-ratio pick")
    check(below, random["accuracy"] - low["pick_accuracy"], "below random")
    assert int(wins) == low["wins_over_median_random"]
    check(above, low["pick_accuracy"] - head["accuracy"], "above head only")
    high, won, seeds, *per_seed = find(
        text, r"highest-ratio subset \(([\d.]+)\) beat the median\s+random subset in (\d) of (\d) seeds "
        r"\(([+\-][\d.]+), ([+\-][\d.]+), ([+\-][\d.]+)\)")  # fmt: skip
    check(high, best["pick_accuracy"], "highest-ratio pick")
    assert (int(won), int(seeds)) == (best["wins_over_median_random"], best["seeds"])
    with open(REVIEWS / "runs.csv") as handle:
        runs_csv = list(csv.DictReader(handle))
    for seed, printed in enumerate(per_seed):
        at_seed = [r for r in runs_csv if int(r["seed"]) == seed]
        randoms = [float(r["eval_accuracy"]) for r in at_seed if r["roles"] == "random"]
        mine = next(float(r["eval_accuracy"]) for r in at_seed if r["key"] == best["pick"])
        check(printed, mine - statistics.median(randoms), f"seed {seed}")
    (default,) = find(text, r"PEFT's default placement \(([\d.]+) with 4× the parameters\)")
    check(default, _baseline(summary, "default")["accuracy"], "default")
    strongest, weakest = find(text, r"lower is better, ρ ([+\-−][\d.]+) to ([+\-−][\d.]+)\)")
    rhos = [_correlation(summary, s)["spearman"] for s in ("risk", "risk_upper", "kappa", "objective_min_loo_error")]
    check(strongest, max(rhos), "weakest of the four")
    check(weakest, min(rhos), "strongest of the four")
    (rank_rho,) = find(text, r"points the wrong way \(ρ ([+\-−][\d.]+)\)")
    check(rank_rho, _correlation(summary, "objective_max_effective_rank")["spearman"], "effective rank")
    lora_s, expected_s, run_s, all_runs, all_minutes, every = find(
        text, r"selection took ([\d.]+) s \(`lora`\) and ([\d.]+) s \(`expected`\) for all 816 subsets; one "
        r"fine-tuning\s+run took (\d+) s, the (\d+) runs (\d+) min \(training and evaluation\), and training every "
        r"subset once\s+would take about ([\d.]+) h")  # fmt: skip
    check(lora_s, summary["times"]["lora"], "lora selection")
    check(expected_s, summary["times"]["expected"], "expected selection")
    check(run_s, summary["fine_tuning_seconds"]["train_mean"], "one run")
    assert int(all_runs) == summary["fine_tuning_seconds"]["runs"]
    check(all_minutes, _minutes(summary), "all runs")
    check(every, summary["selection"]["ranked_subsets"] * summary["fine_tuning_seconds"]["train_mean"] / 3600, "all")


def test_the_memory_bullet_is_the_bench_memory_file():
    rows = {row["cap"]: row for row in load(RESULTS / "bench_memory_llama290m_cpu.json") if "error" not in row}
    measured = [rows[cap] for cap in ("4GB", "8GB", "none")]
    *added, low, high = find(
        README, r"the selection added ([\d,]+), ([\d,]+) and ([\d,]+) MiB to the process, ([\d.]+)–([\d.]+)× below"
    )
    for printed, row in zip(added, measured, strict=True):
        check(printed, row["added"] / 2**20, row["cap"])
    factors = [row["estimated_peak"] / row["added"] for row in measured]
    check(low, min(factors), "smallest factor")
    check(high, max(factors), "largest factor")


def test_the_h100_sentence_is_the_gpu_file():
    run = load("benchmarks/gpu/results/llama_bf16_h100_2026-11-26.json")
    hooks = next(row for row in run["rows"] if row["key"] == "hooks@32")
    params, seconds, candidates = find(README, r"one pass over a (\d+)M-parameter Llama in bf16 \(n = 32,\s+T = 512\) "
                                       r"takes ([\d.]+) s and gives all (\d+) S_l")  # fmt: skip
    check(params, run["parameters"] / 1e6, "parameters")
    check(seconds, hooks["wall_s"], "hooks, chunk 32")
    assert int(candidates) == run["candidates"]


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_close_reads_the_printed_precision(value):
    assert close("0.86", 0.862) and close("1,407", 1407.4) and close("5e-5", 5.4e-5) and close("−0.80", -0.7952)
    assert not close("0.86", 0.8651) and not close("+0.012", 0.0115 - 1e-9) and not math.isnan(value)
    assert close("0.653", 0.6535) and not close("0.654", 0.6535)  # a boundary: the file's own rounding counts


def test_the_search_section_states_the_regime_of_each_timing():
    run = load(RESULTS / "bench_search_synthetic_cpu.json")
    text = section(README, "### Search spaces and search")

    def row(regime, case, objective, method=""):
        return next(r for r in run["rows"] if r["regime"].startswith(regime) and r["case"] == case
                    and r["objective"] == objective and method in r["method"])  # fmt: skip

    (date,) = find(text, r"2 shared cores, (\d{4}-\d\d-\d\d);")
    assert run["date"].startswith(date)
    count, low, high, lam = find(text, r"\*\*A classifier\*\*.*?C\(90, 6\) = (\d+) million subsets of a\s+SmolLM2-like "
                                 r"model are searched exactly in ([\d.]+) s \(`min_ratio`\), ([\d.]+) s \(`max_ratio`\)"
                                 r" and (\d+) s")  # fmt: skip
    assert int(count) == math.comb(90, 6) // 10**6
    check(low, row("classifier", "C(90,6)", "min_ratio", "exact")["seconds"], "min_ratio C(90,6)")
    check(high, row("classifier", "C(90,6)", "max_ratio", "exact")["seconds"], "max_ratio C(90,6)")
    check(lam, row("classifier", "C(90,6)", "max_lambda_max", "exact")["seconds"], "max_lambda_max C(90,6)")
    subsets, top, every = find(text, r"top 10 of C\(36, 4\) = ([\d,]+)\s+subsets in ([\d.]+) s, against ([\d.]+) s")
    assert int(subsets.replace(",", "")) == math.comb(36, 4)
    check(top, row("classifier", "C(36,4)", "min_ratio", "exhaustive")["seconds"], "exhaustive top 10")
    check(every, row("classifier", "C(36,4)", "min_ratio", "brute")["seconds"], "brute force")
    closed, limit, nodes, beam = find(text, r"\*\*A causal LM\*\*.*?still closed \(optimal, ([\d.]+) s\).*?stopped at "
                                      r"the\s+(\d+) s time limit after ([\d,]+) nodes, not proven optimal.*?same best "
                                      r"subset in\s+([\d.]+) s")  # fmt: skip
    low_lm = row("causal", "C(90,6)", "min_ratio", "exact")
    assert low_lm["optimal"]
    check(closed, low_lm["seconds"], "causal min_ratio")
    high_lm = row("causal", "C(90,6)", "max_ratio", "exact")
    assert (
        not high_lm["optimal"] and high_lm["stopped"] == "time_limit" and f"time_limit={limit} s" in high_lm["method"]
    )
    assert int(nodes.replace(",", "")) == high_lm["nodes"]
    (gap,) = find(text, r"the certificate's gap is (\d+)")
    check(gap, high_lm["gap"], "gap")
    check(beam, row("causal", "C(90,6)", "max_ratio", "beam")["seconds"], "beam")


DEMO = RESULTS / "demo_diagnostics.json"
VARIED = {("lora", "init"): "init (A and head)", ("lora", "samples"): "sample draw",
          ("expected", "init"): "init (head only)", ("expected", "samples"): "sample draw"}  # fmt: skip


def _command(payload, *argv):
    return next(c for c in payload["commands"] if c["argv"][1:1 + len(argv)] == list(argv)
                and ("--objective" in c["argv"]) == ("--objective" in argv))  # fmt: skip


def test_the_demo_time_is_the_recorded_demo_run():
    payload = load(DEMO)
    (seconds,) = find(README, r"The demo took (\d+) s on 2 cores shared with other work")
    check(seconds, _command(payload, "select", "--output")["wall_s"], "demo")


def test_the_stability_table_is_the_recorded_run():
    payload = load(DEMO)
    text = section(README, "### How much to trust a pick")
    rows = table(text, "kernel")
    assert len(rows) == len(payload["stability"])
    for (kernel, varied, runs, mean, low, top1, best), row in zip(rows, payload["stability"], strict=True):
        assert (kernel, varied, int(runs)) == (f"`{row['kernel']}`", VARIED[row["kernel"], row["axis"]], row["runs"])
        check(mean, row["mean_tau"], f"{kernel} {varied} mean tau")
        check(low, row["min_tau"], f"{kernel} {varied} min tau")
        check(top1, row["top1_agreement"], f"{kernel} {varied} top-1")
        assert best == f"{row['best_subset']} in {row['best_count']}/{row['runs']}"
    seconds, date = find(text, r"`peft-ntk-select select --stability 5 --linearity --output out/`, (\d+) s on 2 "
                         r"shared cores, (\d{4}-\d\d-\d\d)\)")  # fmt: skip
    check(seconds, _command(payload, "select", "--stability")["wall_s"], "stability run")
    assert payload["date"].startswith(date)
    (floor,) = find(text, r"τ ≥ ([\d.]+) everywhere")
    assert float(floor) <= min(row["min_tau"] for row in payload["stability"]) < float(floor) + 0.01


def test_the_min_ratio_stability_sentence_is_the_recorded_run():
    payload = load(DEMO)
    text = section(README, "### How much to trust a pick")
    lora = next(r for r in payload["stability_min_ratio"] if (r["kernel"], r["axis"]) == ("lora", "init"))
    expected = next(r for r in payload["stability_min_ratio"] if (r["kernel"], r["axis"]) == ("expected", "init"))
    changed, runs, top1 = find(text, r"the `lora` pick changed with the draw of\s+A in (\w+) of (\w+) seeds \(top-1 "
                               r"agreement ([\d.]+)")  # fmt: skip
    words = ["none", "one", "two", "three", "four", "five"]
    assert words.index(runs) == lora["runs"] and words.index(changed) == lora["runs"] - lora["best_count"]
    check(top1, lora["top1_agreement"], "min_ratio lora top-1")
    assert expected["top1_agreement"] == 1.0
    (seconds,) = find(text, r"\(`--objective min_ratio`, same command, (\d+) s\)")
    check(seconds, _command(payload, "select", "--objective")["wall_s"], "min_ratio stability run")


def test_the_linearity_table_and_figures_are_the_recorded_curve():
    payload = load(DEMO)
    curve = payload["linearity"]
    text = section(README, "### How much to trust a pick")
    rows = table(text, "r")
    header = next(t for t in tables_of(text) if t[0][0] == "r")[0]
    assert [float(r) for r in header[1:]] == curve["radii"]
    for cells, key in zip(rows, ("l_avg_relative", "l_upper_relative"), strict=True):
        for printed, value in zip(cells[1:], curve[key], strict=True):
            check(printed, value, f"{cells[0]}")
    (norm,) = find(text, r"flat out to r = 1 \(‖θ0‖ = (\d+) over the perturbed weights\)")
    check(norm, curve["weight_norm"], "weight norm")
    assert all(abs(v - 1) < 0.01 for r, v in zip(curve["radii"], curve["l_upper_relative"], strict=True) if r <= 1)
    samples, models, seconds, first = find(text, r"\(`peft-ntk-select linearity`: (\d+) samples, (\d+) models per "
                                           r"radius, (\d+) s; L_avg\(0\) =\s+([\d.]+)\.\)")  # fmt: skip
    assert (int(samples), int(models)) == (curve["samples"], curve["models_per_radius"])
    check(seconds, _command(payload, "linearity")["wall_s"], "linearity run")
    check(first, curve["l_avg_0"], "L_avg(0)")
    share, under = find(text, r"Perturbations of (\d+)% of ‖θ0‖ change the model's sensitivity by under (\d+)%")
    radius = curve["radii"][-2]
    check(share, 100 * radius / curve["weight_norm"], "radius as a share of the norm")
    assert (
        max(abs(v - 1) for r, v in zip(curve["radii"], curve["l_upper_relative"], strict=True) if r <= radius)
        < int(under) / 100
    )


def test_the_head_dominance_figures_are_the_recorded_kernels():
    head = load(DEMO)["head"]
    text = section(README, "### How much to trust a pick")
    k, s_c, increase = find(text, r"λmax\(K\) ≈ (\d+)\s+against ≈ ([\d.e\-]+) for λmax\(S_C\) of the pick, which\s+"
                            r"raises\s+λmax\(K \+ S_C\)\s+by only ≈ ([\d.e\-]+)\)")  # fmt: skip
    check(k, head["lambda_max_K"], "lambda_max(K)")
    check(s_c, head["lambda_max_S_C"], "lambda_max(S_C)")
    check(increase, head["lambda_max_increase"], "increase")
    (power,) = find(section(README, "### Which objective"), r"dominates every S_l \(about 10(³|⁴)×\)")
    factor = head["lambda_max_K"] / head["lambda_max_S_l_largest"]
    assert {"³": 3, "⁴": 4}[power] == math.floor(math.log10(factor))


def _equal_params_folders(block=RESULTS_BLOCK) -> tuple[str, list[str]]:
    """The README's equal-parameter section and the result folders the start marker of ``block`` names."""
    text = section(README, "### Equal parameters")
    folders = block.folders_in(text)
    assert folders and all(folder.startswith("benchmarks/results/equal_params_") for folder in folders)
    return text, folders


@pytest.mark.parametrize("block", [RESULTS_BLOCK, AGREEMENT, HEADROOM], ids=["results", "agreement", "headroom"])
def test_the_equal_parameter_blocks_are_what_decide_and_agreement_print_from_the_committed_folders(block):
    """Each README block between its markers is ``decide --markdown`` (tables, the rule's verdict, the paired
    statistics) or ``agreement --markdown`` on the folders its start marker names, verbatim, from the committed
    runs.csv and placement_scores.json files."""
    text, folders = _equal_params_folders(block)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(RESULTS_ROOT)  # the folders are named relative to the repository root
        assert block.current(text) == block.text(folders)


def test_the_library_defaults_are_what_the_registered_rule_picks_from_the_committed_results():
    """Until the study's verdict is final the defaults stay today's (pick:attention: lora kernel, q/k/v kinds, one
    rank); a final verdict that changes them fails this test until NTKSelector's defaults follow it."""
    _, folders = _equal_params_folders()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(RESULTS_ROOT)
        _, verdict, _ = decide(folders)
    chosen = verdict.defaults if verdict.status == "final" else defaults_of("pick:attention")
    defaults = {name: p.default for name, p in inspect.signature(NTKSelector).parameters.items()}
    assert defaults["kernel"] == chosen["kernel"]
    assert defaults["kinds"] is None and chosen["kinds"] == "attention"  # None: the attention kinds q, k, v, qkv
    assert defaults["ranks"] is None and chosen["ranks"] is None


def test_the_errors_table_lists_every_typed_error_with_its_builtin_base():
    import peft_ntk_select
    from peft_ntk_select import NTKSelectError

    typed = [getattr(peft_ntk_select, name) for name in peft_ntk_select.__all__]
    typed = [value for value in typed if isinstance(value, type)]
    errors = {error.__name__: error for error in typed if issubclass(error, NTKSelectError)}
    errors.pop("NTKSelectError")
    rows = {row[0].strip("`"): row[1].strip("`") for row in table(section(README, "## Errors"), "error")}
    assert set(rows) == set(errors)
    for name, base in rows.items():
        assert base in {cls.__name__ for cls in errors[name].__mro__[1:]}, name


def test_the_auto_engine_sentence_is_the_h100_files():
    ratios = []
    for path in sorted((RESULTS.parent / "gpu" / "results").glob("*_h100_*.json")):
        rows = {row["key"]: row["wall_s"] for row in load(path)["rows"] if "wall_s" in row}
        ratios += [rows[key] / rows["hooks" + key[4:]] for key in rows if key.startswith("func@")]
    assert len(ratios) == 6 and min(ratios) > 1  # hooks faster in every measured case
    low, high = find(README, r"faster than `func` in every measured case, by ([\d.]+)–([\d.]+)× at the same chunk")
    check(low, min(ratios), "the smallest speed-up")
    check(high, max(ratios), "the largest speed-up")


def test_the_agreement_prose_holds_in_the_committed_files():
    """README: the highest score goes to pick:ranks, which gives most modules rank 2 (every scored folder)."""
    _, folders = _equal_params_folders(AGREEMENT)
    for folder in map(RESULTS_ROOT.joinpath, folders):
        scores = load(folder / "placement_scores.json")["scores"]
        for budget in ("P", "P/4"):
            mine = {key: value["score"] for key, value in scores.items() if key.startswith(f"{budget}:")}
            assert max(mine, key=mine.get) == f"{budget}:pick:ranks", (folder, budget)
            with (folder / "runs.csv").open() as handle:
                modules = next(row["modules"] for row in csv.DictReader(handle) if row["key"] == f"{budget}:pick:ranks")
            ranks = [name.partition("@")[2] or "8" for name in modules.split(";")]
            assert 2 * ranks.count("2") > len(ranks), (folder, budget, modules)


def test_a_modules_lora_kernel_is_proportional_to_alpha_squared_over_its_rank():
    """README: with lora_alpha fixed, S_l of a rank-r' adapter is about alpha^2 / r' (A's entries do not depend
    on r'), so rank 2 gives about 4 times the kernel of rank 8: the mean over modules and two models."""
    from peft import LoraConfig

    from tests.helpers import make_batch, make_model

    for family in ("bert", "llama"):
        model = make_model(family)
        config = LoraConfig(r=8, lora_alpha=8, task_type="SEQ_CLS")
        result = NTKSelector(model, config, kinds="all-linear", ranks=(2, 8), param_budget=10**9, num_samples=6,
                             search="beam").select(make_batch(6))  # fmt: skip
        traces: dict[str, dict[int, float]] = {}
        for candidate, contribution in zip(result.candidates, result.contributions, strict=True):
            traces.setdefault(candidate.name, {})[candidate.rank] = float(contribution.trace())
        ratios = [by_rank[2] / by_rank[8] for by_rank in traces.values()]
        assert 3.0 < sum(ratios) / len(ratios) < 5.5, (family, ratios)


def test_the_plain_words_on_equal_parameters_hold_in_the_committed_results():
    """README's opening and "In plain words": the verdict over all 24 cells is final and keeps today's defaults; on
    test the default pick loses to default in 17 of 24 cells and on each MiniLM task; it beats the median random
    placement in most cells, KappaTune on every MiniLM task and budget, and both at P/4 on reviews and
    debate_party; on convention_party nothing beats head-only by more than 0.02; on SmolLM2 it is level with the
    median random placement (within 0.005)."""
    from benchmarks.equal_params.decide import MINILM_TASKS, task_tables

    text, folders = _equal_params_folders()
    assert "**In plain words:** at equal parameters, the selector does not beat PEFT's default placement." in text
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(RESULTS_ROOT)
        cells, verdict, report = decide(folders)
    assert verdict.status == "final" and verdict.winner == "pick:attention" and not verdict.change_defaults
    assert len(verdict.cells) == 24 and "over the 24 cells of four tasks and two models" in " ".join(text.split())
    assert report.arm == "pick:attention" and not report.goal_met
    versus_default = report.paired[0]
    assert versus_default.against == "default" and (versus_default.losses, versus_default.cells) == (17, 24)
    assert "loses to q and v in every layer in 17 of 24 cells and on each MiniLM task" in " ".join(text.split())
    assert abs(report.vs_random["smollm2_reviews"]) < 0.005
    assert all(report.vs_default[task] < 0 for task in MINILM_TASKS)
    opening = " ".join(README.split())
    assert (
        "its pick does not beat PEFT's default placement (q and v in every layer), and on average neither does the "
        "best on validation of 19 placements tried, but it usually beats" in opening
    )
    versus_random = report.paired[1]
    assert versus_random.against.startswith("median random") and 2 * versus_random.wins > versus_random.cells
    tables = task_tables(cells)
    for task in MINILM_TASKS:
        for budget in ("P", "P/4"):
            rows = {row["arm"]: row["test_mean"] for row in tables[task][budget]}
            assert rows["pick:attention"] > rows["kappa"], (task, budget)
    for task in ("reviews", "debate_party"):
        rows = {row["arm"].split(" (")[0]: row["test_mean"] for row in tables[task]["P/4"]}
        assert rows["pick:attention"] > max(rows["random"], rows["kappa"]), task
    for budget in ("P", "P/4"):
        rows = {row["arm"]: row["test_mean"] for row in tables["convention_party"][budget]}
        assert max(rows.values()) - rows["head_only"] < 0.02, budget


def test_the_follow_up_prose_holds_in_the_committed_results():
    """ "In plain words" on follow-up 1: final, does not help; v and o in every layer chosen for every task and
    budget (the selections' picks, read from selection.json); it lost on validation in 13 of 24 cells, and on test
    on two of the four tasks, winning on convention_party and smollm2_reviews."""
    import json
    from pathlib import Path

    from benchmarks.equal_params.decide import MINILM_TASKS, apply_follow_up, compare_on_test, load_cells

    text, folders = _equal_params_folders()
    assert "it chose v and o for every task and budget, which lost to q and v on validation in 13 of 24 cells" in (
        " ".join(text.split())
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(RESULTS_ROOT)
        cells = load_cells(folders)
        picks = [json.loads((Path(folder) / "selection.json").read_text()) for folder in folders]
    follow_up = apply_follow_up(cells)
    assert follow_up.status == "final" and not follow_up.helps and len(follow_up.cells) == 24
    assert follow_up.losses == 13 and follow_up.mean_d < 0
    value_and_output = {
        "minilm": ({"self.value", "output.dense"}, 6),
        "smollm2": ({"self_attn.v_proj", "self_attn.o_proj"}, 30),
    }
    for folder, record in zip(folders, picks, strict=True):
        names, layers = value_and_output[Path(folder).name.split("_")[2]]  # equal_params_<model>_<task>
        for budget in ("P", "P/4"):
            modules = record[f"pick:kinds@{budget}"]["top"]
            assert {name.rsplit(".", 2)[-2] + "." + name.rsplit(".", 1)[-1] for name in modules} == names
            assert len(modules) == 2 * layers  # two kinds in every layer
    on_test = compare_on_test(cells, "pick:kinds")
    tasks = [*MINILM_TASKS, "smollm2_reviews"]
    assert [task for task in tasks if on_test.vs_default[task] > 0] == ["convention_party", "smollm2_reviews"]


def test_the_headroom_prose_holds_in_the_committed_results():
    """ "How much room does placement leave?": 19 arms per task and budget; the arm best on validation does no
    better than default on test on average and is above it in a minority of task-budgets; the best arm on test beats
    default by a few points at most; validation splits of 150 to 300 examples."""
    import json

    from benchmarks.equal_params.decide import load_cells
    from benchmarks.equal_params.headroom import headroom

    text, folders = _equal_params_folders(HEADROOM)
    prose = " ".join(text.split())
    assert "every arm trained at every seed (19 arms: every random placement, head-only and `pick:kinds` included)" in (
        prose
    )
    assert "does no better than PEFT's default on test, and the best placement on test beats it by a few points" in (
        prose
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(RESULTS_ROOT)
        cells = load_cells(folders)
    rows = headroom(cells)
    assert len(rows) == 8 and {row.arms for row in rows} == {19}
    assert statistics.fmean(row.val_best_gain for row in rows) <= 0
    assert 2 * sum(row.val_best_gain > 0 for row in rows) < len(rows)
    assert 0 < max(row.test_best_gain for row in rows) < 0.05
    sizes = [json.loads((RESULTS_ROOT / folder / "summary.json").read_text())["sizes"]["val"] for folder in folders]
    assert (min(sizes), max(sizes)) == (150, 300) and "validation split of 150 to 300 examples" in prose


def test_the_status_is_complete_and_both_verdicts_are_final_over_all_24_cells():
    """README status: every folder the results block names is complete (SmolLM2's included, as registered), so
    the rule and follow-up 1 are final over the MiniLM tasks' 18 cells and SmolLM2's 6; SmolLM2's 185 runs took
    6 minutes of training each."""
    from benchmarks.equal_params.decide import apply_follow_up, apply_rule, load_cells

    text, folders = _equal_params_folders()
    prose = " ".join(text.split())
    assert "**Status, 2026-12-02: complete.**" in prose and "both verdicts below are final over 24 cells" in prose
    assert "benchmarks/results/equal_params_smollm2_reviews" in folders
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(RESULTS_ROOT)
        cells = load_cells(folders)
    assert all(task.counted and not task.missing for task in cells.tasks.values()), cells.tasks
    verdict, follow_up = apply_rule(cells), apply_follow_up(cells)
    assert (verdict.status, follow_up.status) == ("final", "final")
    assert sum(cell.startswith("smollm2_reviews ") for cell in verdict.cells) == 6 and len(verdict.cells) == 24
    assert sorted(follow_up.cells) == sorted(verdict.cells)
    seconds = _summary(RESULTS_ROOT / "benchmarks/results/equal_params_smollm2_reviews")["fine_tuning_seconds"]
    assert seconds["runs"] == 185 and round(seconds["train_mean"] / 60) == 6
    assert "SmolLM2's 185 runs of a 135M model took 6 minutes of training each on 2 cores" in prose


def test_the_smollm2_sentence_holds_in_the_committed_results():
    """ "In plain words": SmolLM2 at P is the one task-budget where every pick beats default on test, by 0.003 to
    0.015; every linear module at rank 1 does best (+0.021) with two thirds of default's parameters, yet on
    validation every one of them but pick:kinds is below default on average."""
    from benchmarks.equal_params.decide import load_cells, task_tables

    text, folders = _equal_params_folders()
    prose = " ".join(text.split())
    assert "SmolLM2 at P is the one place where q and v in every layer looked weak" in prose
    assert "on test every pick beat it (by 0.003 to 0.015) and every linear module at rank 1 did best (+0.021" in prose
    assert "on validation all of them except `pick:kinds` scored below it on average" in prose
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(RESULTS_ROOT)
        cells = load_cells(folders)
    tables = task_tables(cells)

    def every_pick_beats_default(table):
        means = {row["arm"]: row["test_mean"] for row in table}
        return all(mean > means["default"] for arm, mean in means.items() if arm.startswith("pick:"))

    weak = [(task, budget) for task, by_budget in tables.items() for budget, table in by_budget.items()
            if every_pick_beats_default(table)]  # fmt: skip
    assert sum(map(len, tables.values())) == 8 and weak == [("smollm2_reviews", "P")]
    rows = {row["arm"]: row for row in tables["smollm2_reviews"]["P"]}
    default = rows["default"]["test_mean"]
    picks = {arm: rows[arm]["test_mean"] - default for arm in rows if arm.startswith("pick:")}
    assert len(picks) == 6 and (round(min(picks.values()), 3), round(max(picks.values()), 3)) == (0.003, 0.015)
    lora = {arm: row["test_mean"] for arm, row in rows.items() if arm not in ("head_only",)}
    assert max(lora, key=lora.get) == "all_linear" and round(lora["all_linear"] - default, 3) == 0.021
    p_cells = [cell for cell in cells.scores if cell[:2] == ("smollm2_reviews", "P")]
    assert len(p_cells) == 3  # seeds 0, 1, 2
    for cell in p_cells:  # rank 1 in all 7 linear modules of 30 layers: two thirds of q, v at rank 8
        scores = cells.scores[cell]
        assert (scores["all_linear"].lora_params, scores["default"].lora_params) == (305_280, 460_800)

    def validation_gain(arm):
        return statistics.fmean(
            cells.scores[c][arm].val_accuracy - cells.scores[c]["default"].val_accuracy for c in p_cells
        )

    below = {arm for arm in [*picks, "all_linear"] if validation_gain(arm) < 0}
    assert below == set(picks) - {"pick:kinds"} | {"all_linear"}

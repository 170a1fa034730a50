"""examples/README.md: the measured accuracies, parameters and times are the recorded runs of the example."""

from __future__ import annotations

from tests.docs.figures import ROOT, check, find, load, read, section, table

README = read("examples/README.md")
RUNS = ROOT / "examples" / "results" / "train_with_trainer.json"


def _short(subset: str) -> str:
    """ "['bert.encoder.layer.3.attention.self.value', ...]" -> "v3, ..." (the README's names)."""
    names = [name.strip(" '") for name in subset.strip("[]").split(",")]
    kinds = {"query": "q", "key": "k", "value": "v"}
    return ", ".join(f"{kinds[n.rsplit('.', 1)[1]]}{n.split('.')[3]}" for n in names)


def test_the_measured_table_is_the_recorded_runs():
    payload = load(RUNS)
    runs = payload["runs"]
    text = section(README, "### Measured")
    rows = table(text, "trained placement")
    assert len(rows) == 3
    pick, lowest, default = rows
    for (placement, params, accuracy), run, index in ((pick, runs["pick"], 0), (lowest, runs["lowest"], 0),
                                                      (default, runs["compare_default"], 1)):  # fmt: skip
        assert int(params.replace(",", "")) == run["trainable_params"][index]
        check(accuracy, list(run["accuracy"].values())[index], placement)
    (rank, subset) = runs["pick"]["subsets"][0]
    assert rank == "0" and pick[0].startswith("NTK subset #0") and pick[0].endswith(_short(subset))
    (rank, subset) = runs["lowest"]["subsets"][0]
    assert lowest[0].startswith(f"NTK subset #{rank},") and lowest[0].endswith(_short(subset))
    (ranked,) = find(README, r"the ranking of all\s+(\d+) subsets")
    assert int(ranked) == runs["pick"]["subsets_ranked"] and int(rank) == runs["pick"]["subsets_ranked"] - 1
    assert runs["compare_default"]["accuracy"]["NTK subset #0"] == runs["pick"]["accuracy"]["NTK subset #0"]


def test_the_times_are_the_recorded_runs():
    payload = load(RUNS)
    runs = payload["runs"]
    text = section(README, "### Measured")
    date, wall, selection, both = find(
        text, r"Recorded (\d{4}-\d\d-\d\d).*?`\.venv/bin/python examples/train_with_trainer\.py` took (\d+) s wall "
        r"\(ranking printed after (\d+) s.*?`--compare-default`, which adds a\s+second training run, took "
        r"(\d+) s")  # fmt: skip
    assert payload["date"].startswith(date)
    check(wall, runs["pick"]["wall_s"], "example wall time")
    check(selection, runs["pick"]["selection_s"], "selection")
    check(both, runs["compare_default"]["wall_s"], "compare-default wall time")
    (load_start,) = find(text, r"load average ([\d.]+) when it started")
    check(load_start, payload["loadavg_start"][0], "load average")


def test_the_equal_parameter_caveat_holds_in_the_committed_study():
    """ "PEFT's default placement trained better than the pick on two of three tasks, these reviews included":
    at P/4 (q and v at r = 2), mean test accuracy of default against pick:attention in the committed folders."""
    from benchmarks.equal_params.decide import MINILM_TASKS, load_cells, task_tables

    assert "trained better than the pick on two of three tasks, these reviews included" in " ".join(README.split())
    folders = [ROOT / "benchmarks" / "results" / f"equal_params_minilm_{task}" for task in MINILM_TASKS]
    tables = task_tables(load_cells(folders))
    better = []
    for task in MINILM_TASKS:
        rows = {row["arm"]: row for row in tables[task]["P/4"]}
        assert rows["default"]["lora_params"] == rows["pick:attention"]["lora_params"], task
        if rows["default"]["test_mean"] > rows["pick:attention"]["test_mean"]:
            better.append(task)
    assert len(better) == 2 and "reviews" in better, better

"""The command line: help, JSON output, written files, one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from peft import LoraConfig

from peft_ntk_select.cli.commands import build_parser, main

OPTIONS = ["--model", "--data", "--text-column", "--text-pair-column", "--label-column", "--num-samples", "--budget",
           "--kinds", "--layers", "--sigma", "--engine", "--output-mode", "--seed", "--device", "--output", "--json",
           "--debug", "--r", "--lora-alpha", "--max-length", "--top", "--param-budget", "--layers-per-pick",
           "--kind-sets", "--search", "--init-seed", "--kernel", "--head", "--stability", "--linearity", "--objective",
           "--base", "--max-memory", "--ranks"]  # fmt: skip


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "title", "sentiment"])
        for i in range(12):
            writer.writerow([f"review number {i} was {'great' if i % 2 else 'awful'}", f"film {i}", i % 2])
    return path


def run(capsys, *args):
    status = main(["select", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_help_lists_every_option():
    text = build_parser()._subparsers._group_actions[0].choices["select"].format_help()
    for option in OPTIONS:
        assert option in text
    assert "(default: 32)" in text


@pytest.mark.parametrize("command", ["select", "linearity"])
def test_help_gives_each_default_once_and_never_none(command):
    """An option whose help states its default gets no second "(default: ...)"; unset options and flags get none."""
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    text = " ".join(parser.format_help().split())
    assert "(default: None)" not in text and "(default: False)" not in text
    for action in parser._actions:
        help_text = " ".join(parser._get_formatter()._expand_help(action).split()) if action.help else ""
        assert help_text.count("(default") <= 1, (action.option_strings, help_text)
    assert "(default: 0.0001)" in text or command == "linearity"


def test_module_entry_point_prints_help():
    done = subprocess.run([sys.executable, "-m", "peft_ntk_select", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "select" in done.stdout


def test_json_output_parses_and_files_load(capsys, model_dir, csv_file, tmp_path):
    out = tmp_path / "out"
    status, stdout, _ = run(capsys, "--model", model_dir, "--data", csv_file, "--text-column", "review",
                            "--label-column", "sentiment", "--num-samples", 6, "--budget", 2, "--output", out,
                            "--json")  # fmt: skip
    assert status == 0
    summary = json.loads(stdout)
    assert len(summary["picked"]) == 2 and len(summary["ranking"]) == 10
    assert summary["default_placement"]["num_params"] == 4 * 8 * (16 + 16)
    assert set(LoraConfig.from_pretrained(out).target_modules) == set(summary["picked"])
    assert {p.name for p in out.iterdir()} >= {"adapter_config.json", "result.json", "report.png"}


def test_text_pairs_and_options_reach_the_selector(capsys, model_dir, csv_file):
    status, stdout, _ = run(capsys, "--model", model_dir, "--data", csv_file, "--text-column", "review",
                            "--text-pair-column", "title", "--label-column", "sentiment", "--num-samples", 4,
                            "--budget", 1, "--kinds", "q,v", "--layers", "1", "--engine", "hooks",
                            "--output-mode", "margin", "--sigma", "0.01", "--json")  # fmt: skip
    summary = json.loads(stdout)
    assert status == 0
    assert sorted(entry["modules"][0] for entry in summary["ranking"]) == [
        "bert.encoder.layer.1.attention.self.query",
        "bert.encoder.layer.1.attention.self.value",
    ]


def test_table_output_shows_ranking_and_default(capsys, model_dir, csv_file):
    status, stdout, _ = run(capsys, "--model", model_dir, "--data", csv_file, "--text-column", "review",
                            "--label-column", "sentiment", "--num-samples", 4, "--budget", 1, "--top", 3)  # fmt: skip
    assert status == 0
    assert "#0" in stdout and "#2" in stdout and "#3" not in stdout and "default" in stdout and "picked:" in stdout


def test_stability_linearity_kernel_and_head_options_reach_the_output(capsys, model_dir, csv_file, tmp_path):
    out = tmp_path / "out"
    status, stdout, _ = run(capsys, "--model", model_dir, "--data", csv_file, "--text-column", "review",
                            "--label-column", "sentiment", "--num-samples", 6, "--budget", 1, "--kernel", "expected",
                            "--head", "probe", "--init-seed", 3, "--stability", 2, "--linearity", "--output", out,
                            "--json")  # fmt: skip
    assert status == 0
    summary = json.loads(stdout)
    assert (summary["kernel"], summary["head"], summary["head_fit"]["layer"]) == ("expected", "probe", "classifier")
    assert [(r["kernel"], r["axis"]) for r in summary["stability"]] == [
        ("lora", "init"), ("lora", "samples"), ("expected", "init"), ("expected", "samples"),
    ]  # fmt: skip
    assert len(summary["linearity"]["radii"]) == 5
    assert {p.name for p in out.iterdir()} >= {"stability.json", "linearity.json", "report.png"}
    assert json.loads((out / "result.json").read_text())["init_seed"] == 3


def test_table_output_prints_the_stability_table_and_the_linearity_curve(capsys, model_dir, csv_file):
    status, stdout, _ = run(capsys, "--model", model_dir, "--data", csv_file, "--text-column", "review",
                            "--label-column", "sentiment", "--num-samples", 4, "--budget", 1, "--stability", 2,
                            "--linearity")  # fmt: skip
    assert status == 0
    assert "LOO acc" in stdout and "mean tau" in stdout and "L_upper" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stability", 1], "at least 2 runs"),
        (["--label-column", "stars"], "column 'stars' not in the data"),
        (["--budget", 0], "budget=0 must be an integer"),
        (["--num-samples", 1], "num_samples=1 must be an integer >= 2"),
        (["--max-memory", "lots"], "max_memory='lots': pass a positive number of bytes"),
        (["--max-memory", "1kB"], "max_memory=1000 bytes cannot hold the kernel pass of one sample"),
        (["--data", "missing.csv"], "does not exist"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line(capsys, model_dir, csv_file, args, message):
    base = {"--model": model_dir, "--data": csv_file, "--text-column": "review", "--label-column": "sentiment"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    status, _, stderr = run(capsys, *[item for pair in base.items() for item in pair])
    assert status != 0
    assert message in stderr and len(stderr.strip().splitlines()) == 1


def test_unknown_model_path_exits_with_one_line(capsys, csv_file, tmp_path):
    status, _, stderr = run(capsys, "--model", tmp_path / "no_such_model", "--data", csv_file,
                            "--text-column", "review", "--label-column", "sentiment")  # fmt: skip
    assert status != 0
    assert "cannot load model" in stderr and "no such folder" in stderr and len(stderr.strip().splitlines()) == 1


def test_argument_type_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["select", "--budget", "three"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_structured_space_and_search_options(capsys, model_dir, csv_file):
    status, stdout, _ = run(capsys, "--model", model_dir, "--data", csv_file, "--text-column", "review",
                            "--label-column", "sentiment", "--num-samples", 4, "--layers-per-pick", 1,
                            "--kind-sets", "q+v,k", "--search", "exact", "--top", 3, "--json")  # fmt: skip
    summary = json.loads(stdout)
    assert status == 0 and summary["space"].startswith("Structured")
    assert summary["certificate"]["search"] == "exact" and summary["certificate"]["optimal"]
    assert len(summary["ranking"]) == 3


def test_param_budget_option_bounds_every_subset(capsys, model_dir, csv_file):
    status, stdout, _ = run(capsys, "--model", model_dir, "--data", csv_file, "--text-column", "review",
                            "--label-column", "sentiment", "--num-samples", 4, "--param-budget", 512,
                            "--json")  # fmt: skip
    summary = json.loads(stdout)
    assert status == 0 and all(entry["num_params"] <= 512 for entry in summary["ranking"])


LINEARITY_OPTIONS = ["--model", "--data", "--text-column", "--text-pair-column", "--label-column", "--max-length",
                     "--radii", "--num-models", "--num-samples", "--perturb", "--kinds", "--seed", "--output",
                     "--json", "--debug"]  # fmt: skip


def run_linearity(capsys, model_dir, csv_file, *args):
    source = ["--model", model_dir, "--data", csv_file, "--text-column", "review", "--label-column", "sentiment"]
    status = main(["linearity", *map(str, source), *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_linearity_help_lists_every_option():
    text = build_parser()._subparsers._group_actions[0].choices["linearity"].format_help()
    for option in LINEARITY_OPTIONS:
        assert option in text
    assert "(default: 0,0.5,1,2,4)" in text and "{all,candidates}" in text


def test_linearity_json_output_and_files(capsys, model_dir, csv_file, tmp_path):
    out = tmp_path / "curve"
    status, stdout, _ = run_linearity(capsys, model_dir, csv_file, "--radii", "0,1", "--num-models", 2,
                                      "--num-samples", 4, "--output", out, "--json")  # fmt: skip
    assert status == 0
    curve = json.loads(stdout)
    assert curve["radii"] == [0.0, 1.0] and len(curve["per_model"][0]) == 2 and curve["num_samples"] == 4
    assert json.loads((out / "linearity.json").read_text()) == curve
    assert (out / "linearity.png").stat().st_size > 0


def test_linearity_table_perturbs_only_the_chosen_candidate_kinds(capsys, model_dir, csv_file):
    status, stdout, _ = run_linearity(capsys, model_dir, csv_file, "--radii", "0,2", "--num-models", 1,
                                      "--num-samples", 3, "--perturb", "candidates", "--kinds", "q")  # fmt: skip
    assert status == 0
    assert "perturb=candidates, 2 weights" in stdout and "L_upper" in stdout and "flat:" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--radii", "0,-1"], "negative or not finite"),
        (["--num-models", 0], "num_models=0 must be an integer >= 1"),
        (["--kinds", "q"], "add --perturb candidates"),
    ],
)
def test_linearity_bad_arguments_exit_non_zero_with_one_line(capsys, model_dir, csv_file, args, message):
    status, _, stderr = run_linearity(capsys, model_dir, csv_file, "--num-samples", 3, *args)
    assert status != 0
    assert message in stderr and len(stderr.strip().splitlines()) == 1


def test_linearity_radii_must_be_numbers(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["linearity", "--radii", "0,big"])
    assert exit_info.value.code == 2
    assert "comma-separated numbers" in capsys.readouterr().err


def test_objective_and_base_options_reach_the_ranking(capsys, model_dir, csv_file):
    status, stdout, _ = run(capsys, "--model", model_dir, "--data", csv_file, "--text-column", "review",
                            "--label-column", "sentiment", "--num-samples", 6, "--budget", 2, "--objective",
                            "max_alignment", "--base", "none", "--json")  # fmt: skip
    assert status == 0
    summary = json.loads(stdout)
    assert (summary["objective"], summary["base"]) == ("max_alignment", "none")
    scores = [entry["score"] for entry in summary["ranking"]]
    assert scores == sorted(scores, reverse=True)


def test_param_budget_option_takes_a_placement(capsys, model_dir, csv_file):
    status, stdout, _ = run(capsys, "--model", model_dir, "--data", csv_file, "--text-column", "review",
                            "--label-column", "sentiment", "--num-samples", 4, "--kinds", "all-linear",
                            "--param-budget", "q,v", "--json")  # fmt: skip
    summary = json.loads(stdout)
    # the tiny BERT of model_dir: 2 layers, q and v of 16 -> 16 at r = 8: 2 x 2 x 8 x 32 = 1,024
    assert status == 0 and summary["space"] == "ParamBudget(max_params=1,024)"
    assert all(entry["num_params"] <= 1024 for entry in summary["ranking"])


def test_ranks_option_allocates_one_rank_per_module(capsys, model_dir, csv_file):
    status, stdout, _ = run(capsys, "--model", model_dir, "--data", csv_file, "--text-column", "review",
                            "--label-column", "sentiment", "--num-samples", 4, "--kinds", "all-linear",
                            "--param-budget", "q,v", "--ranks", "4,8,16")  # fmt: skip
    assert status == 0 and "one candidate per module" in stdout
    picked = stdout.strip().splitlines()[-1]
    assert picked.startswith("picked: ") and "(r=" in picked
    assert any(line.startswith("default ") for line in stdout.splitlines())  # q, v at r = 8, one of the ranks

"""Every failure of the command line is one line on stderr and a non-zero exit status (Ctrl-C: 130); label
values are normalised; labels are optional where the run needs none; --output is checked before the work."""

from __future__ import annotations

import csv
import json
import logging
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch

import peft_ntk_select.cli.commands as commands
from peft_ntk_select.cli.commands import main
from peft_ntk_select.cli.loading import TokenizedTexts, label_key, read_rows
from peft_ntk_select.errors import InvalidInputError
from tests.conftest import save_tiny_classifier


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Good and bad data files, one per kind of problem."""
    folder = tmp_path_factory.mktemp("data")
    with (folder / "good.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([f"review number {i} was {'great' if i % 2 else 'awful'}", i % 2] for i in range(12))
    (folder / "latin1.csv").write_bytes("text,label\ncaf\xe9 cr\xe8me,1\nok,0\n".encode("latin-1"))
    lines = {
        "array_row.jsonl": ['{"text": "a", "label": 1}', "[1, 2]"],
        "number_row.jsonl": ['{"text": "a", "label": 1}', "3"],
        "broken.jsonl": ['{"text": "a", "label": 1}', '{"text": "b", '],
        "null_text.jsonl": ['{"text": "a", "label": 1}', '{"text": null, "label": 0}'],
        "number_text.jsonl": ['{"text": "a", "label": 1}', '{"text": 7, "label": 0}'],
        "list_label.jsonl": ['{"text": "a", "label": 1}', '{"text": "b", "label": [0, 1]}'],
        "no_labels.jsonl": [json.dumps({"text": f"review number {i}"}) for i in range(8)],
        "null_labels.jsonl": [json.dumps({"text": f"review number {i}", "label": None}) for i in range(4)],
        # 1, "1", " 1 ", 1.0 are one class, 0 and "0" the other; null and "" are left out (4 rows)
        "mixed_labels.jsonl": [
            json.dumps({"text": f"review number {i}", "label": value})
            for i, value in enumerate([1, "1", " 1 ", 1.0, None, "", 0, "0"] * 2)
        ],
    }
    for name, rows in lines.items():
        (folder / name).write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def three_label_dir(tmp_path_factory):
    """A tiny BERT classifier whose trained head has 3 outputs."""
    return save_tiny_classifier(tmp_path_factory.mktemp("three_labels"), num_labels=3)


def run(capsys, *args):
    status = main(["select", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def run_subprocess(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "peft_ntk_select", "select", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


# arguments: refused by the parser, before anything is loaded (one line, status 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--r", "0"], "argument --r: expected an integer >= 1"),
        (["--max-length", "-1"], "argument --max-length: expected an integer >= 1"),
        (["--top", "0"], "argument --top: expected an integer >= 1"),
        (["--device", "meta"], "device='meta' holds no data"),
        (["--device", "nonsense"], "device='nonsense' is not a torch device"),
        (["--init-seed", str(2**70)], "seed 1180591620717411303424 is out of range"),
        (["--seed", "-1"], "seed -1 is out of range"),
    ],
)
def test_bad_argument_values_are_one_line_and_status_2(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["select", *args])
    assert exit_info.value.code == 2
    assert message in one_line(capsys.readouterr().err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_device_this_machine_lacks_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["select", "--device", "cuda"])
    assert exit_info.value.code == 2
    assert "device='cuda' cannot be used by this torch build" in one_line(capsys.readouterr().err)


def test_linearity_checks_its_seed_and_max_length_too(capsys):
    for args in (["--seed", str(2**63)], ["--max-length", "0"]):
        with pytest.raises(SystemExit):
            main(["linearity", *args])
        one_line(capsys.readouterr().err)


# data: each kind of bad file gets its own message (one line, status 1)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("latin1.csv", "is not UTF-8 text (byte 0xe9 at offset 14): save it as UTF-8"),
        ("array_row.jsonl", "line 2 of {path} is a JSON array, not an object"),
        ("number_row.jsonl", "line 2 of {path} is a JSON number, not an object"),
        ("broken.jsonl", "line 2 of {path} is not JSON"),
        ("null_text.jsonl", "row 2, column 'text': the text is missing (null)"),
        ("number_text.jsonl", "row 2, column 'text': the text is a number (7), not text"),
        ("list_label.jsonl", "row 2, column 'label': the label is an array ([0, 1]), not a class"),
        ("null_labels.jsonl", "no row has a label in column 'label' (all 4 are null or empty)"),
    ],
)
def test_bad_data_files_are_one_line_naming_the_problem(capsys, model_dir, data_dir, name, message):
    path = data_dir / name
    status, _, stderr = run(capsys, "--model", model_dir, "--data", path, "--num-samples", 2)
    assert status == 1
    assert message.format(path=path) in one_line(stderr)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "latin1.csv"], "is not UTF-8 text"),
        (["--data", "number_row.jsonl"], "is a JSON number, not an object"),
        (["--model", "three_labels"], "has a trained classification head with 3 outputs but the data has 2 label "
                                      "values: use data with 3 classes"),
    ],
)  # fmt: skip
def test_a_real_process_prints_one_line_and_no_traceback(model_dir, three_label_dir, data_dir, args, message):
    sources = {"--model": model_dir, "--data": data_dir / "good.csv"}
    option, value = args
    sources[option] = three_label_dir if value == "three_labels" else data_dir / value
    done = run_subprocess(*[item for pair in sources.items() for item in pair], "--num-samples", 2)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("peft-ntk-select: error: ") and message in line


# every CLI case of issue 15, each in a real process (slow: an interpreter per case; CI runs them)

ISSUE_CASES = [
    (["--data", "latin1.csv"], 1, "is not UTF-8 text"),
    (["--data", "array_row.jsonl"], 1, "is a JSON array, not an object"),
    (["--data", "null_text.jsonl"], 1, "the text is missing (null)"),
    (["--data", "number_text.jsonl"], 1, "the text is a number (7), not text"),
    (["--data", "list_label.jsonl"], 1, "the label is an array ([0, 1]), not a class"),
    (["--model", "three_labels"], 1, "has a trained classification head with 3 outputs"),
    (["--r", "0"], 2, "argument --r: expected an integer >= 1"),
    (["--max-length", "-1"], 2, "argument --max-length: expected an integer >= 1"),
    (["--device", "meta"], 2, "device='meta' holds no data"),
    (["--device", "cuda:99" if torch.cuda.is_available() else "cuda"], 2, "argument --device"),
    (["--init-seed", str(2**70)], 2, "is out of range"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "status", "message"), ISSUE_CASES)
def test_each_listed_failure_is_one_line_and_a_nonzero_exit_in_a_real_process(
    model_dir, three_label_dir, data_dir, args, status, message
):
    sources = {"--model": model_dir, "--data": data_dir / "good.csv"}
    option, value = args
    if option in sources:
        sources[option] = three_label_dir if value == "three_labels" else data_dir / value
        args = []
    done = run_subprocess(*[item for pair in sources.items() for item in pair], "--num-samples", 2, *args)
    assert done.returncode == status
    assert message in one_line(done.stderr)


# labels: normalised, optional where not needed


def test_label_values_equal_as_numbers_are_one_class():
    assert {label_key(value, "row") for value in (1, "1", " 1 ", 1.0, True, "1.0", "01")} == {1}
    assert label_key(" fresh ", "row") == "fresh" and label_key(0.5, "row") == 0.5
    assert [label_key(value, "row") for value in (None, "", "  ", float("nan"))] == [None] * 4


def test_long_integer_labels_stay_distinct():
    assert label_key("12345678901234567891", "row") != label_key("12345678901234567890", "row")


def test_a_byte_order_mark_is_skipped(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("text,label\nok,1\n".encode("utf-8-sig"))
    assert read_rows(str(path)) == [{"text": "ok", "label": "1"}]


def test_label_ids_follow_numeric_order_then_text():
    rows = [{"text": "t", "label": value} for value in ("10", 2, "b", 1, "a")]
    texts = TokenizedTexts(rows, None, text_column="text", label_column="label")
    assert texts.label_names == ["1", "2", "10", "a", "b"]
    assert texts.labels == [2, 1, 4, 0, 3]


def test_rows_without_a_label_are_left_out_with_their_count(caplog):
    rows = [{"text": f"t{i}", "label": value} for i, value in enumerate([1, None, "", "0", 1.0])]
    with caplog.at_level(logging.WARNING):
        texts = TokenizedTexts(rows, None, text_column="text", label_column="label")
    assert (len(texts), texts.kept, texts.dropped, texts.label_names) == (3, [0, 3, 4], 2, ["0", "1"])
    assert "2 of 5 rows have no label in column 'label'" in caplog.text


@pytest.mark.parametrize("label", [[1], {"a": 1}])
def test_a_list_or_dict_label_is_refused_naming_the_row(label):
    rows = [{"text": "a", "label": 0}, {"text": "b", "label": label}]
    with pytest.raises(InvalidInputError, match="row 2, column 'label'"):
        TokenizedTexts(rows, None, text_column="text", label_column="label")


def test_mixed_label_values_fit_a_two_label_checkpoint(capsys, caplog, model_dir, data_dir):
    # without normalisation: 6 classes, and the 2-output head of model_dir would not load
    status, stdout, _ = run(capsys, "--model", model_dir, "--data", data_dir / "mixed_labels.jsonl",
                            "--num-samples", 4, "--budget", 1, "--head", "probe", "--json")  # fmt: skip
    assert status == 0 and json.loads(stdout)["head"] == "probe"
    assert "4 of 16 rows have no label in column 'label' (null or empty): left out" in caplog.text


@pytest.mark.parametrize("model", ["model_dir", "three_label_dir"])
def test_data_without_labels_runs_with_the_checkpoints_head(request, capsys, data_dir, model):
    status, stdout, stderr = run(capsys, "--model", request.getfixturevalue(model), "--data",
                                 data_dir / "no_labels.jsonl", "--num-samples", 4, "--budget", 1, "--json")  # fmt: skip
    assert status == 0 and stderr == ""
    assert json.loads(stdout)["objective"] == "max_ratio"


@pytest.mark.parametrize(
    "args", [["--head", "probe"], ["--objective", "min_risk"], ["--objective", "min_loo_error"],
             ["--output-mode", "loss"]],
)  # fmt: skip
def test_a_run_that_needs_labels_names_label_column(capsys, model_dir, data_dir, args):
    status, _, stderr = run(capsys, "--model", model_dir, "--data", data_dir / "no_labels.jsonl", *args)
    assert status == 1
    line = one_line(stderr)
    assert f"{' '.join(args)} needs class labels" in line and "--label-column" in line


# --output: checked before the model is loaded


@pytest.fixture
def no_model(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before --output was checked")

    monkeypatch.setattr(commands, "load_classifier", refuse)


@pytest.mark.parametrize(
    ("existing", "output", "message"),
    [
        ("out", "out", "is a file, not a folder"),
        ("file", "file/out", "is a file, not a folder"),
        ("user/notes.txt", "user", "did not write (notes.txt)"),
    ],
    ids=["file", "parent-is-a-file", "user-folder"],
)
@pytest.mark.parametrize("command", ["select", "linearity"])
def test_an_unusable_output_fails_before_the_model_loads(capsys, no_model, model_dir, data_dir, tmp_path, command,
                                                         existing, output, message):  # fmt: skip
    (tmp_path / existing).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / existing).write_text("the user's")
    out = tmp_path / output
    status = main([command, "--model", str(model_dir), "--data", str(data_dir / "good.csv"), "--output", str(out)])
    assert status == 1
    assert message in one_line(capsys.readouterr().err)


def test_an_earlier_outputs_files_are_replaced(capsys, model_dir, data_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stability.json").write_text("[]")
    (out / "linearity.json").write_text("{}")
    status, _, _ = run(capsys, "--model", model_dir, "--data", data_dir / "good.csv", "--num-samples", 4,
                       "--budget", 1, "--output", out)  # fmt: skip
    assert status == 0
    assert {p.name for p in out.iterdir()} == {"adapter_config.json", "result.json", "report.png"}


# anything else: one line with its type, --debug for the traceback; Ctrl-C: "interrupted", 130


class Failing:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __call__(self, *args, **kwargs):
        warnings.warn("a library warning", UserWarning, stacklevel=1)
        raise self.error


def test_an_unexpected_error_is_one_line_with_its_type(capsys, monkeypatch, model_dir, data_dir):
    monkeypatch.setattr(commands, "NTKSelector", Failing(ZeroDivisionError("boom\nsecond line")))
    status, _, stderr = run(capsys, "--model", model_dir, "--data", data_dir / "good.csv")
    assert status == 1
    assert one_line(stderr) == (
        "peft-ntk-select: error: ZeroDivisionError: boom (rerun with --debug for the traceback)"
    )


def test_debug_raises_and_routes_warnings_through_logging(capsys, caplog, monkeypatch, model_dir, data_dir):
    monkeypatch.setattr(commands, "NTKSelector", Failing(ZeroDivisionError("boom")))
    with caplog.at_level(logging.WARNING), pytest.raises(ZeroDivisionError):
        run(capsys, "--model", model_dir, "--data", data_dir / "good.csv", "--debug")
    assert any(r.name == "py.warnings" and "a library warning" in r.getMessage() for r in caplog.records)


def test_keyboard_interrupt_is_one_line_and_status_130(capsys, monkeypatch, model_dir, data_dir):
    monkeypatch.setattr(commands, "NTKSelector", Failing(KeyboardInterrupt()))
    status, _, stderr = run(capsys, "--model", model_dir, "--data", data_dir / "good.csv")
    assert (status, one_line(stderr)) == (130, "peft-ntk-select: interrupted")


ANNOUNCED = textwrap.dedent(
    """
    import sys
    from peft_ntk_select.cli import main
    from peft_ntk_select.selector import NTKSelector

    original = NTKSelector._select

    def announced(self, *args, **kwargs):
        print("running", flush=True)
        return original(self, *args, **kwargs)

    NTKSelector._select = announced
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_ctrl_c_during_a_real_selection_is_one_line_and_status_130(model_dir, data_dir, tmp_path):
    out = tmp_path / "out"
    args = ["select", "--model", model_dir, "--data", data_dir / "good.csv", "--num-samples", 12, "--stability", 20,
            "--output", out]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", ANNOUNCED, *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert process.stdout.readline() == "running\n"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert one_line(stderr) == "peft-ntk-select: interrupted"
    assert not out.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
@pytest.mark.parametrize("launcher", ["peft-ntk-select", "python -m peft_ntk_select"])
def test_ctrl_c_while_the_command_line_starts_is_one_line_and_status_130(launcher):
    # The package imports torch, transformers and peft only on first use, so the interrupt lands in the
    # command line's own import (or, on a fast machine, in main): one line, status 130 either way. Under
    # `python -m`, CPython itself may instead end the process by SIGINT after our handler returned 130: a
    # KeyboardInterrupt raised inside a nested PyRun_* call (compiled extensions run Python code that way while
    # torch imports) sets its "unhandled interrupt" flag, which runpy's exit path honours. A shell reports
    # that death as status 130 too; the installed command, which users run, exits with 130 itself.
    script = Path(sys.executable).with_name("peft-ntk-select")
    command = [str(script)] if launcher == "peft-ntk-select" else [sys.executable, "-m", "peft_ntk_select"]
    process = subprocess.Popen([*command, "select", "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    try:
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    statuses = {130} if launcher == "peft-ntk-select" else {130, -signal.SIGINT}
    assert process.returncode in statuses, stderr
    assert one_line(stderr) == "peft-ntk-select: interrupted"


def test_a_model_path_that_does_not_exist_is_named_and_a_hub_name_keeps_transformers_reason(tmp_path, monkeypatch):
    """Paths (absolute, relative under an existing folder, ./x) are 'no such folder'; an org/name that is no local
    path keeps transformers' reason (given here, not fetched: this machine is offline)."""
    from peft_ntk_select.cli.loading import _cannot_load, load_tokenizer

    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    import transformers

    def network(*args, **kwargs):
        raise AssertionError("transformers was asked (offline, it would wait on the network)")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", network)
    for missing in (str(tmp_path / "nothing"), "models/nothing", "./nothing", "a/b/c"):
        with pytest.raises(InvalidInputError, match="no such folder"):
            load_tokenizer(missing)
    error = _cannot_load("some-org/some-model", OSError("We couldn't connect to the hub\nmore"))
    assert str(error) == "cannot load model 'some-org/some-model': We couldn't connect to the hub"

"""Fuzz: random bad (and good) arguments and batches for ``NTKSelector`` end in a result or in a typed error
(``NTKSelectError``), never another exception, and the model is unchanged either way (issue 15, item 9).
Bounded to a few seconds: a tiny model, few examples."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peft import LoraConfig

from peft_ntk_select import NTKSelectError, NTKSelector
from peft_ntk_select.cli.commands import main

from .helpers import VOCAB, make_model, model_snapshot

MODEL = make_model("bert")
BEFORE = model_snapshot(MODEL)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

ODD_NUMBERS = st.one_of(
    st.integers(-3, 3), st.just(2**70), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.text(max_size=3),
)  # fmt: skip

# Per option: values a user may well pass (first) and odd ones (second). Each example corrupts a few options.
OPTIONS = {
    "budget": (st.integers(1, 3), ODD_NUMBERS),
    "num_samples": (st.integers(2, 6), ODD_NUMBERS),
    "sigma": (st.sampled_from([1e-4, 1.0]), st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(1e12))),
    "seed": (st.integers(0, 2**40), ODD_NUMBERS),
    "init_seed": (st.integers(0, 5), ODD_NUMBERS),
    "chunk_size": (st.integers(1, 8), ODD_NUMBERS),
    "top": (st.integers(1, 5), ODD_NUMBERS),
    "kinds": (st.sampled_from([None, "all-linear", ("q", "v"), ("k",), ("o", "up")]),
              st.one_of(st.text(max_size=3), st.lists(st.sampled_from(["qv", "", 1, "gate", "qkv"]), max_size=2))),
    "layers": (st.sampled_from([None, (0,), (0, 1)]),
               st.lists(st.one_of(st.integers(-2, 3), st.floats(0, 2), st.text(max_size=1)), max_size=3)),
    "modules": (st.sampled_from([None, ("bert.encoder.layer.0.attention.self.query",)]),
                st.lists(st.sampled_from(["bert.pooler.dense", "nope", "bert", "classifier"]), max_size=2)),
    "engine": (st.sampled_from(["auto", "func", "hooks", "reference"]), st.sampled_from(["jax", "", None])),
    "output_mode": (st.sampled_from([None, "trace", "margin", "loss"]), st.sampled_from(["logits", 1])),
    "kernel": (st.sampled_from(["lora", "expected", "adam"]), st.sampled_from(["sgd", None])),
    "objective": (st.sampled_from(["max_ratio", "min_ratio", "min_risk", "max_alignment", "min_loo_error"]),
                  st.sampled_from(["best", None])),
    "head": (st.sampled_from(["init", "probe"]), st.sampled_from(["new", None])),
    "base": (st.sampled_from(["head", "none"]), st.sampled_from(["all", None])),
    "search": (st.sampled_from(["auto", "exact", "greedy", "beam", "exhaustive"]), st.sampled_from(["random", 1])),
    "dtype": (st.sampled_from([None, torch.float32, torch.float64]), st.sampled_from([torch.int64, "float32"])),
    "device": (st.sampled_from([None, "cpu"]), st.sampled_from(["meta", "cuda:7", "tpu", 3])),
    "max_memory": (st.sampled_from([None, 10**9, "8GB"]), st.one_of(st.integers(-5, 10), st.sampled_from(["lots"]))),
}  # fmt: skip
SPACES = {
    "param_budget": (st.sampled_from([10**5, ("q", "v")]), st.one_of(ODD_NUMBERS, st.just(["x"]))),
    "ranks": (st.sampled_from([None, (1, 2), (2, 4, 8)]), st.one_of(st.lists(st.integers(-1, 4)), st.text(max_size=2))),
}  # fmt: skip
CONFIG_FIELDS = {
    "r": (st.sampled_from([1, 2, 4]), st.sampled_from([0, -1, 2.5])),
    "lora_alpha": (st.sampled_from([1, 2, 8.0]), st.sampled_from([0, -1, math.nan])),
    "rank_pattern": (st.sampled_from([{}, {"query": 4}]), st.sampled_from([{"query": 0}, {"value": "a"}])),
    "exclude_modules": (st.sampled_from([None, ["value"]]), st.sampled_from([["query", "key", "value"]])),
    "layers_to_transform": (st.sampled_from([None, [1]]), st.sampled_from([[7]])),
}  # fmt: skip


@st.composite
def settings_of(draw: st.DrawFn, fields: dict) -> dict:
    """A few fields drawn from their usual values and a few (at most two) from their odd ones."""
    names = draw(st.lists(st.sampled_from(sorted(fields)), max_size=5, unique=True))
    odd = set(draw(st.lists(st.sampled_from(names), max_size=2, unique=True))) if names else set()
    return {name: draw(fields[name][name in odd]) for name in names}


@st.composite
def selector_options(draw: st.DrawFn) -> dict:
    """Selector keywords; a parameter-budget space (with or without ranks) in a third of the examples."""
    options = draw(settings_of(OPTIONS))
    if draw(st.integers(0, 2)) == 0:
        options.pop("budget", None)
        options.update(draw(settings_of(SPACES)))
    return options


@st.composite
def batches(draw: st.DrawFn) -> dict[str, torch.Tensor]:
    """A batch with random sizes, dtypes and values: id ranges past the vocabulary, odd label shapes, NaN."""
    n, length = draw(st.sampled_from([4, 6, 0, 1])), draw(st.sampled_from([5, 9, 0]))
    high = draw(st.sampled_from([VOCAB, VOCAB + 5]))
    low = draw(st.sampled_from([2, -2]))
    ids = torch.randint(low, high, (n, length), generator=torch.Generator().manual_seed(draw(st.integers(0, 9))))
    batch = {"input_ids": ids.to(draw(st.sampled_from([torch.long, torch.int32, torch.float32])))}
    if draw(st.integers(0, 3)) > 0:
        mask_length = draw(st.sampled_from([length, max(length - 1, 0)]))
        batch["attention_mask"] = torch.ones(n, mask_length, dtype=torch.long)
    label_kind = draw(st.sampled_from(["classes", "none", "big", "nan", "onehot", "short"]))
    if label_kind == "classes":
        batch["labels"] = torch.arange(n) % 2
    elif label_kind == "big":
        batch["labels"] = torch.arange(n) + 1
    elif label_kind == "nan":
        batch["labels"] = torch.full((n,), math.nan)
    elif label_kind == "onehot":
        batch["labels"] = torch.nn.functional.one_hot(torch.arange(n) % 2, 2)
    elif label_kind == "short":
        batch["labels"] = torch.zeros(max(n - 1, 0), dtype=torch.long)
    return batch


@FUZZ
@given(options=selector_options(), batch=batches(), fields=settings_of(CONFIG_FIELDS))
def test_random_arguments_and_batches_give_a_result_or_a_typed_error_and_leave_the_model_unchanged(
    options, batch, fields
):
    try:
        config = LoraConfig(**{"r": 2, "lora_alpha": 2, "task_type": "SEQ_CLS", **fields})
        NTKSelector(MODEL, config, show_progress=False, **options).select(batch)
    except NTKSelectError:
        pass
    assert model_snapshot(MODEL) == BEFORE


CLI_VALUES = {
    "--budget": st.sampled_from(["1", "2", "0", "-1", "x", "2.5", str(2**70)]),
    "--num-samples": st.sampled_from(["4", "1", "0", "many"]),
    "--r": st.sampled_from(["2", "0", "-3", "1.5"]),
    "--lora-alpha": st.sampled_from(["2", "0", "nan", "-1"]),
    "--sigma": st.sampled_from(["1e-4", "0", "-1", "inf", "nan", "1e12"]),
    "--seed": st.sampled_from(["0", "-1", str(2**70)]),
    "--max-length": st.sampled_from(["16", "0", "-1", "100000"]),
    "--kinds": st.sampled_from(["q,v", "qv", "all-linear", ",", "o,up"]),
    "--layers": st.sampled_from(["0", "a", "0.5", "9"]),
    "--engine": st.sampled_from(["hooks", "jax"]),
    "--output-mode": st.sampled_from(["trace", "margin", "loss", "logits"]),
    "--objective": st.sampled_from(["max_ratio", "min_risk", "best"]),
    "--device": st.sampled_from(["cpu", "meta", "cuda:7", "tpu"]),
    "--param-budget": st.sampled_from(["5000", "q,v", "x", "-3"]),
    "--ranks": st.sampled_from(["1,2", "0", "a"]),
    "--label-column": st.sampled_from(["label", "missing", "text"]),
    "--text-column": st.sampled_from(["text", "label", "missing"]),
    "--data": st.sampled_from(["good.csv", "bad.jsonl", "latin1.csv", "missing.csv"]),
}


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_data")
    rows = ["text,label"] + [f"review number {i} is {'good' if i % 2 else 'bad'},{i % 2}" for i in range(8)]
    (folder / "good.csv").write_text("\n".join(rows) + "\n")
    (folder / "bad.jsonl").write_text('{"text": "a", "label": 1}\n[1, 2]\n3\n')
    (folder / "latin1.csv").write_bytes("text,label\ncaf\xe9,1\nna\xefve,0\n".encode("latin-1"))
    return folder


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(arguments=st.dictionaries(st.sampled_from(sorted(CLI_VALUES)), st.none(), max_size=4).flatmap(
    lambda chosen: st.fixed_dictionaries({name: CLI_VALUES[name] for name in chosen})))  # fmt: skip
def test_random_cli_arguments_end_in_a_result_or_one_line_and_a_nonzero_exit(arguments, model_dir, cli_files, capsys):
    arguments = {"--data": "good.csv", "--num-samples": "4", **arguments}
    arguments["--data"] = str(cli_files / arguments["--data"])
    argv = ["select", "--model", str(model_dir), *[part for pair in arguments.items() for part in pair]]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse: a bad argument
        status = exit_.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if status == 0:
        assert captured.out.strip()  # the ranking
    else:
        assert status in (1, 2) and len(captured.err.strip().splitlines()) == 1, (argv, captured.err)

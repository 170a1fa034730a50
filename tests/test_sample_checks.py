"""Samples the model cannot run on get a typed error before any kernel; samples that look wrong, a warning."""

from __future__ import annotations

import logging

import pytest
import torch
from peft import LoraConfig

from peft_ntk_select import InvalidInputError, NTKSelector
from peft_ntk_select.inputs import prepare_samples
from peft_ntk_select.sample_checks import check_samples
from tests.helpers import CAUSAL_LMS, CLASSIFIERS, PAD, VOCAB, make_batch, make_model, model_snapshot

LOGGER = "peft_ntk_select.sample_checks"


def prepared(model, data):
    """The batch the selector hands to ``check_samples``."""
    batch, _ = prepare_samples(data, num_samples=32, seed=0, pad_token_id=model.config.pad_token_id)
    return batch


def warnings_of(caplog):
    return [record for record in caplog.records if record.name == LOGGER and record.levelno >= logging.WARNING]


def token_batch(model, length=7, **kw):
    """A valid right-padded batch of ``length`` tokens; class labels for classifiers, none for causal LMs."""
    labels = model.config.num_labels if type(model).__name__.endswith("ForSequenceClassification") else None
    return make_batch(length=length, labels=labels, **kw)


# --- valid samples ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", [*CLASSIFIERS, *CAUSAL_LMS])
def test_valid_batches_of_every_family_pass_without_warning(family, caplog):
    model = make_model(family)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    check_samples(model, prepared(model, token_batch(model)))
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("family", ["llama_lm", "gpt2_lm"])
def test_token_labels_with_ignored_tokens_pass_on_causal_lms(family, caplog):
    model = make_model(family)
    batch = make_batch(labels=None)
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    batch["labels"][0, 0] = -100
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    check_samples(model, prepared(model, batch))
    assert warnings_of(caplog) == []


def test_ragged_rows_without_attention_mask_pass_without_warning(caplog):
    model = make_model("bert")
    rows = [[5, 6, 7, 8], [5, 6], [9, 10, 11]]
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    check_samples(model, prepared(model, {"input_ids": rows, "labels": [0, 1, 0]}))
    assert warnings_of(caplog) == []


def test_a_regression_head_takes_float_labels():
    model = make_model("bert", num_labels=1)
    check_samples(model, prepared(model, {**make_batch(labels=None), "labels": torch.linspace(-1.5, 2.5, 5)}))


# --- 1. weights on meta -------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_a_model_built_on_meta_is_refused(family):
    with torch.device("meta"):
        model = make_model(family)
    batch = prepared(model, token_batch(model))
    with pytest.raises(InvalidInputError, match=r"weights are on 'meta' \(built with init_empty_weights.*load real"):
        check_samples(model, batch)


def test_meta_weights_under_accelerate_hooks_pass():
    with torch.device("meta"):
        model = make_model("bert")
    model.bert.embeddings._hf_hook = object()  # accelerate's offload hook brings the weights in when it runs
    check_samples(model, prepared(model, token_batch(model)))


# --- 2. dtype of input_ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8, torch.bool])
def test_input_ids_that_are_not_integers_are_refused(family, dtype):
    model = make_model(family)
    batch = token_batch(model)
    batch["input_ids"] = batch["input_ids"].to(dtype)
    with pytest.raises(InvalidInputError, match=rf"input_ids are {dtype}, but token ids must be integers.*\.long\(\)"):
        check_samples(model, prepared(model, batch))


def test_int32_input_ids_pass():
    model = make_model("bert")
    batch = token_batch(model)
    check_samples(model, prepared(model, {**batch, "input_ids": batch["input_ids"].int()}))


# --- 3. token ids outside the vocabulary --------------------------------------------------------------------


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama", "llama_lm"])
@pytest.mark.parametrize("bad", [VOCAB, VOCAB + 6])
def test_token_ids_past_the_vocabulary_are_refused_naming_id_and_size(family, bad):
    model = make_model(family)
    batch = token_batch(model)
    batch["input_ids"][3, 2] = bad
    with pytest.raises(InvalidInputError) as raised:
        check_samples(model, prepared(model, batch))
    message = str(raised.value)
    assert f"token id {bad} (rows [3])" in message
    assert f"vocabulary of {VOCAB}" in message
    assert "tokenizer does not match the model" in message and "resize_token_embeddings" in message


def test_negative_token_ids_are_refused():
    model = make_model("gpt2")
    batch = token_batch(model)
    batch["input_ids"][0, 0] = -1
    with pytest.raises(InvalidInputError, match=r"token id -1 \(rows \[0\]\)"):
        check_samples(model, prepared(model, batch))


def test_ids_of_resized_embeddings_pass():
    model = make_model("bert")
    model.resize_token_embeddings(VOCAB + 8)
    batch = token_batch(model)
    batch["input_ids"][0, 0] = VOCAB + 6  # past config.vocab_size of the checkpoint, inside the embedding
    check_samples(model, prepared(model, batch))


@pytest.mark.parametrize("family", ["llama", "llama_lm"])
def test_a_pad_token_id_outside_the_vocabulary_is_named(family):
    model = make_model(family)
    model.config.pad_token_id = -1  # as in early Llama checkpoints
    with pytest.raises(InvalidInputError, match=r"padded with model.config.pad_token_id=-1.*set model.config"):
        check_samples(model, prepared(model, token_batch(model)))


# --- 4. sequences longer than the positions -----------------------------------------------------------------

ABSOLUTE_POSITIONS = {"bert": 512, "distilbert": 512, "roberta": 38, "gpt2": 40, "gpt2_lm": 40, "opt": 40}


@pytest.mark.parametrize(("family", "limit"), ABSOLUTE_POSITIONS.items())
def test_samples_past_absolute_positions_are_refused_naming_length_and_limit(family, limit):
    model = make_model(family)
    with pytest.raises(InvalidInputError) as raised:
        check_samples(model, prepared(model, token_batch(model, length=limit + 1)))
    message = str(raised.value)
    assert f"{limit + 1} tokens" in message and f"for {limit} positions only" in message
    assert f"truncation=True, max_length={limit}" in message


@pytest.mark.parametrize(("family", "limit"), ABSOLUTE_POSITIONS.items())
def test_the_position_limit_is_where_the_model_stops_running(family, limit):
    model = make_model(family)
    batch = prepared(model, token_batch(model, length=limit, n=2))
    check_samples(model, batch)
    with torch.no_grad():
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    longer = torch.cat([batch["input_ids"], batch["input_ids"][:, :1]], dim=1)
    with pytest.raises((IndexError, RuntimeError)):
        model(input_ids=longer, attention_mask=torch.ones_like(longer))


@pytest.mark.parametrize("family", ["llama", "llama_lm"])
def test_rotary_models_past_their_context_warn_and_pass(family, caplog):
    model = make_model(family, max_position_embeddings=8)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    check_samples(model, prepared(model, token_batch(model, length=9)))
    [record] = warnings_of(caplog)
    assert "9 tokens, more than the 8 positions" in record.getMessage()
    assert "max_length=8" in record.getMessage()


# --- 5. token types -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "config", "bad"), [("bert", {}, 2), ("roberta", {"type_vocab_size": 1}, 1)])
def test_token_types_past_type_vocab_size_are_refused(family, config, bad):
    model = make_model(family, **config)
    batch = token_batch(model)
    batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    batch["token_type_ids"][1, 1] = bad
    with pytest.raises(InvalidInputError, match=rf"token_type_ids hold {bad} \(rows \[1\]\).*type_vocab_size="):
        check_samples(model, prepared(model, batch))


def test_gpt2_token_types_past_its_vocabulary_are_refused():
    model = make_model("gpt2")
    batch = token_batch(model)
    batch["token_type_ids"] = torch.full_like(batch["input_ids"], VOCAB)
    with pytest.raises(InvalidInputError, match=f"token_type_ids hold {VOCAB}.*word embeddings"):
        check_samples(model, prepared(model, batch))


@pytest.mark.parametrize("family", ["llama", "distilbert", "opt"])
def test_models_that_ignore_token_types_pass_any(family):
    model = make_model(family)
    batch = token_batch(model)
    check_samples(model, prepared(model, {**batch, "token_type_ids": torch.full_like(batch["input_ids"], 99)}))


def test_float_token_types_are_refused():
    model = make_model("bert")
    batch = token_batch(model)
    batch["token_type_ids"] = torch.zeros(batch["input_ids"].shape)
    with pytest.raises(InvalidInputError, match="token_type_ids are torch.float32, not integers"):
        check_samples(model, prepared(model, batch))


# --- 6. padding without attention mask ----------------------------------------------------------------------


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama", "llama_lm"])
def test_padded_rows_without_attention_mask_warn(family, caplog):
    model = make_model(family)
    batch = token_batch(model)
    del batch["attention_mask"]  # rows 1 and 2 end in PAD
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    check_samples(model, prepared(model, batch))
    [record] = warnings_of(caplog)
    assert f"rows [1, 2] of input_ids start or end in padding (pad_token_id={PAD})" in record.getMessage()
    assert "pass the tokenizer's attention_mask" in record.getMessage()


def test_an_all_ones_attention_mask_over_padding_warns(caplog):
    model = make_model("bert")
    batch = token_batch(model)
    batch["attention_mask"] = torch.ones_like(batch["attention_mask"])
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    check_samples(model, prepared(model, batch))
    assert len(warnings_of(caplog)) == 1


def test_left_padding_without_attention_mask_warns(caplog):
    model = make_model("llama_lm")
    batch = {"input_ids": torch.tensor([[PAD, PAD, 5, 6], [7, 8, 9, 10], [PAD, 4, 5, 6]])}
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    check_samples(model, prepared(model, batch))
    [record] = warnings_of(caplog)
    assert "rows [0, 2]" in record.getMessage()


def test_decoders_padding_with_eos_warn_only_when_some_rows_end_in_it(caplog):
    model = make_model("gpt2_lm", pad_token_id=0)  # pad = eos = 0
    every_row_ends_in_eos = {"input_ids": torch.tensor([[5, 6, 0], [7, 8, 0]])}
    some_rows_end_in_eos = {"input_ids": torch.tensor([[5, 6, 7], [7, 0, 0]])}
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    check_samples(model, prepared(model, every_row_ends_in_eos))
    assert warnings_of(caplog) == []
    check_samples(model, prepared(model, some_rows_end_in_eos))
    [record] = warnings_of(caplog)
    assert "rows [1]" in record.getMessage()


def test_padding_checks_nothing_without_a_pad_token_id(caplog):
    model = make_model("gpt2_lm", pad_token_id=None)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    check_samples(model, prepared(model, {"input_ids": torch.tensor([[5, 6, 7], [7, 0, 0]])}))
    assert warnings_of(caplog) == []


# --- 7. labels ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_missing_labels_are_refused_when_needed(family):
    model = make_model(family)
    batch = prepared(model, make_batch(labels=None))
    check_samples(model, batch)
    with pytest.raises(InvalidInputError) as raised:
        check_samples(model, batch, needs_labels=True)
    message = str(raised.value)
    assert "needs labels" in message and "add a 'labels' (or 'label') field" in message


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama", "llama_lm"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_labels_with_nan_or_inf_are_refused(family, value):
    model = make_model(family)
    batch = {**make_batch(labels=None), "labels": torch.tensor([0.0, 1.0, value, 0.0, 1.0])}
    with pytest.raises(InvalidInputError, match=r"labels hold NaN or inf \(rows \[2\]\)"):
        check_samples(model, prepared(model, batch))


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_several_labels_per_example_are_refused_for_a_sequence_classifier(family):
    model = make_model(family)
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0, 1]), 2)
    batch = {**make_batch(labels=None), "labels": one_hot}
    with pytest.raises(InvalidInputError, match=r"several values per example.*labels of shape \(n,\).*argmax"):
        check_samples(model, prepared(model, batch))
    with pytest.raises(InvalidInputError, match="several values per example"):
        check_samples(model, {**make_batch(labels=None), "labels": one_hot.float()})  # as given, not padded


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("bad", [2, 7, -1, -100])
def test_class_ids_outside_num_labels_are_refused_naming_value_and_num_labels(family, bad):
    model = make_model(family)
    batch = {**make_batch(labels=None), "labels": torch.tensor([0, 1, bad, 1, 0])}
    with pytest.raises(InvalidInputError) as raised:
        check_samples(model, prepared(model, batch))
    message = str(raised.value)
    assert f"label {bad} (rows [2]) is not a class" in message
    assert "num_labels=2 (class ids 0..1)" in message and "num_labels=..." in message


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_float_class_labels_are_refused_even_when_integral(family):
    model = make_model(family, num_labels=3)
    batch = {**make_batch(labels=None), "labels": torch.tensor([0.0, 1.0, 2.0, 1.0, 0.0])}
    with pytest.raises(InvalidInputError, match=r"float labels are read as regression targets.*labels\.long\(\)"):
        check_samples(model, prepared(model, batch))


@pytest.mark.parametrize("family", ["llama_lm", "gpt2_lm"])
@pytest.mark.parametrize(("bad", "shown"), [(-1, -1), (-5, -5), (VOCAB, VOCAB)])
def test_token_labels_outside_the_vocabulary_are_refused(family, bad, shown):
    model = make_model(family)
    batch = make_batch(labels=None)
    batch["labels"] = batch["input_ids"].clone()
    batch["labels"][4, 3] = bad
    with pytest.raises(InvalidInputError, match=rf"labels hold {shown} \(rows \[4\]\).*-100 for tokens to ignore"):
        check_samples(model, prepared(model, batch))


def test_token_labels_at_padding_are_not_checked():
    model = make_model("llama_lm")
    batch = make_batch(labels=None)
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -7)
    check_samples(model, {**batch})  # the kernels mask them to -100


def test_float_token_labels_are_refused():
    model = make_model("gpt2_lm")
    batch = make_batch(labels=None)
    batch["labels"] = batch["input_ids"].double()
    with pytest.raises(InvalidInputError, match="needs integer token ids"):
        check_samples(model, prepared(model, batch))


# --- through the selector -----------------------------------------------------------------------------------


def _float_ids(batch):
    return {**batch, "input_ids": batch["input_ids"].double()}


def _id_past_vocabulary(batch):
    batch["input_ids"][0, 0] = VOCAB + 1
    return batch


def _nan_label(batch):
    return {**batch, "labels": torch.tensor([0.0, float("nan"), 1.0, 0.0, 1.0])}


def _one_hot_labels(batch):
    return {**batch, "labels": torch.nn.functional.one_hot(batch["labels"], 2)}


def _label_past_num_labels(batch):
    return {**batch, "labels": torch.tensor([0, 1, 2, 1, 0])}


class TestSelectorRefuses:
    """``NTKSelector.select`` refuses bad samples with ``InvalidInputError`` and leaves the model as it was.

    These pass once ``NTKSelector._select`` calls ``check_samples`` right after ``prepare_samples``.
    """

    @pytest.mark.parametrize(
        ("spoil", "message"),
        [
            (_float_ids, "input_ids are torch.float64"),
            (_id_past_vocabulary, f"token id {VOCAB + 1}"),
            (_nan_label, "NaN or inf"),
            (_one_hot_labels, "several values per example"),
            (_label_past_num_labels, "label 2 .* num_labels=2"),
        ],
        ids=["float-ids", "id-past-vocabulary", "nan-label", "one-hot-labels", "label-past-num-labels"],
    )
    def test_bad_samples_are_refused_and_the_model_is_unchanged(self, spoil, message):
        model = make_model("bert").train()
        model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
        before = model_snapshot(model)
        selector = NTKSelector(model, LoraConfig(r=2, lora_alpha=2), budget=1, show_progress=False)
        with pytest.raises(InvalidInputError, match=message):
            selector.select(spoil(make_batch()))
        assert model_snapshot(model) == before

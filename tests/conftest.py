"""Fixtures shared by the test folders (helpers live in ``tests/helpers.py``)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from peft_ntk_select.cli.assets import minilm_path

from .helpers import make_batch


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    return make_batch()


def save_tiny_classifier(folder, num_labels: int = 2):
    """Save a tiny BERT classifier (``num_labels`` outputs) with the real MiniLM tokenizer into ``folder``, like a
    hub model; return the folder."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, num_labels=num_labels)  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny BERT classifier with the real MiniLM tokenizer, saved like a hub model."""
    return save_tiny_classifier(tmp_path_factory.mktemp("model"))

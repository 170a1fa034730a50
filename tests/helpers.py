"""Shared test helpers: tiny config-built models of each family (float64), token batches, a snapshot of a
model's state, and a loader for the benchmark scripts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    OPTConfig,
    OPTForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

VOCAB = 24
PAD = 1


def _bert(**kw):
    return BertForSequenceClassification(
        BertConfig(**{"vocab_size": VOCAB, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                      "intermediate_size": 32, "pad_token_id": PAD, **kw})
    )  # fmt: skip


def _roberta(**kw):
    return RobertaForSequenceClassification(
        RobertaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32, pad_token_id=PAD, max_position_embeddings=40, **kw)
    )  # fmt: skip


def _distilbert(**kw):
    return DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=VOCAB, dim=16, n_layers=2, n_heads=2, hidden_dim=32, pad_token_id=PAD, **kw)
    )


def _llama_config(**kw):
    return LlamaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=32, pad_token_id=PAD, **kw)  # fmt: skip


def _llama(**kw):
    return LlamaForSequenceClassification(_llama_config(**kw))


def _llama_lm(**kw):
    return LlamaForCausalLM(_llama_config(**kw))


def _gpt2_config(**kw):
    return GPT2Config(**{"vocab_size": VOCAB, "n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 40,
                         "pad_token_id": PAD, "bos_token_id": 0, "eos_token_id": 0, **kw})  # fmt: skip


def _gpt2(**kw):
    return GPT2ForSequenceClassification(_gpt2_config(**kw))


def _gpt2_lm(**kw):
    return GPT2LMHeadModel(_gpt2_config(**kw))


def _opt(**kw):
    return OPTForSequenceClassification(
        OPTConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, ffn_dim=32, num_attention_heads=2,
                  word_embed_proj_dim=16, max_position_embeddings=40, pad_token_id=PAD, **kw)
    )  # fmt: skip


CLASSIFIERS = {"bert": _bert, "roberta": _roberta, "distilbert": _distilbert, "llama": _llama, "gpt2": _gpt2,
               "opt": _opt}  # fmt: skip
CAUSAL_LMS = {"llama_lm": _llama_lm, "gpt2_lm": _gpt2_lm}


def make_model(family: str, **kw) -> torch.nn.Module:
    """A tiny randomly initialised model of ``family``, float64, in eval mode, seeded."""
    torch.manual_seed(0)
    model = {**CLASSIFIERS, **CAUSAL_LMS}[family](**kw).double()
    return model.eval()


def make_batch(n: int = 5, length: int = 7, *, labels: int | None = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    """Right-padded token batch with some short rows; ``labels`` classes (None: no labels)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(2, VOCAB, (n, length), generator=generator)
    attention_mask = torch.ones(n, length, dtype=torch.long)
    for row, real in ((1, length - 2), (2, 3)):
        if row < n:
            attention_mask[row, real:] = 0
    input_ids[attention_mask == 0] = PAD
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if labels is not None:
        batch["labels"] = torch.randint(0, labels, (n,), generator=generator)
    return batch


def _raw_bytes(tensor: torch.Tensor) -> bytes:
    """The tensor's bytes, for any dtype (numpy has no bfloat16)."""
    return tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes()


def model_snapshot(model: torch.nn.Module, identity: bool = True) -> dict:
    """Everything select() must leave unchanged: weights (bytes, dtype, device), flags, modes, hooks, module tree,
    and (``identity``; off to compare two models built alike) the very ``nn.Parameter`` objects under every name."""
    return {
        "state": {k: (v.dtype, v.shape, str(v.device), _raw_bytes(v)) for k, v in model.state_dict().items()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "parameters": {
            k: (type(p).__name__, id(p) if identity else None)
            for k, p in model.named_parameters(remove_duplicate=False)
        },  # fmt: skip
        "training": {k: m.training for k, m in model.named_modules()},
        "modules": [(k, type(m).__name__) for k, m in model.named_modules()],
        "hooks": {
            k: (
                dict(m._forward_hooks),
                dict(m._forward_pre_hooks),
                dict(m._backward_hooks),
                dict(m._backward_pre_hooks),
            )
            for k, m in model.named_modules()
        },  # fmt: skip
        "grads": {k: p.grad is None for k, p in model.named_parameters()},
    }


def load_script(path: Path) -> ModuleType:
    """Import a script that is not in a package (benchmarks/...), registered under its file name."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses resolve their module while it executes
    spec.loader.exec_module(module)
    return module

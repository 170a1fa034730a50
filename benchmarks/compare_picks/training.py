"""Fine-tuning one placement with HF ``Trainer``, and the resumable record of runs (``runs.csv``)."""

from __future__ import annotations

import contextlib
import copy
import csv
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from peft_ntk_select.cli.loading import load_classifier

from .choosing import BenchmarkError, Placement

logger = logging.getLogger("compare_picks")

HEAD_MODULES = ("classifier", "score")  # what PEFT's SEQ_CLS task trains in modules_to_save
RUN_FIELDS = ("key", "seed", "roles", "modules", "lora_params", "trainable_params", "steps", "train_loss",
              "final_train_loss", "eval_loss", "eval_accuracy", "train_seconds", "eval_seconds")  # fmt: skip
FINAL_LOSS_FRACTION = 0.1  # final train loss: mean per-step loss over the last 10 % of steps


@dataclass(frozen=True)
class TrainSettings:
    """Hyperparameters shared by every run (only the placement and the seed differ)."""

    epochs: float = 2.0
    batch_size: int = 16
    lr: float = 5e-3
    warmup: float = 0.06
    max_steps: int | None = None
    eval_batch_size: int = 64


def freeze_all_but_head(model: nn.Module) -> nn.Module:
    """Head-only training: only the modules PEFT's SEQ_CLS task trains anyway (``classifier``/``score``)."""
    trained = 0
    for name, param in model.named_parameters():
        param.requires_grad = any(part in HEAD_MODULES for part in name.split(".")[:-1])
        trained += param.numel() if param.requires_grad else 0
    if trained == 0:
        raise BenchmarkError(f"no classification head named one of {HEAD_MODULES}: head-only training is undefined")
    return model


def _accuracy(eval_pred) -> dict[str, float]:  # type: ignore[no-untyped-def]
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def train_subset(
    model_source: str,
    num_labels: int,
    config: LoraConfig | None,
    seed: int,
    train_data: Sequence[Mapping[str, Any]],
    eval_data: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    settings: TrainSettings,
    *,
    prepare: Callable[[nn.Module], None] | None = None,
    also_evaluate: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Fine-tune one placement with one seed and evaluate it on ``eval_data``.

    A fresh classifier is loaded with its new head drawn with ``seed`` (the same head for every
    placement); ``config`` None trains the head alone. PEFT draws lora_A after ``set_seed(seed)``. Trainer:
    AdamW, linear schedule with ``settings.warmup`` warm-up, no checkpoints. Returns ``steps``,
    ``train_loss`` (mean over all steps), ``final_train_loss`` (mean over the last 10 % of steps),
    ``eval_loss``, ``eval_accuracy``, ``trainable_params``, ``train_seconds``, ``eval_seconds``.

    ``prepare``: called with the model to train (the PeftModel, or the head-only classifier) before training,
    e.g. a data-driven LoRA init such as PEFT's EVA, or a check of its LoRA parameters. ``also_evaluate``:
    more evaluation splits by name, e.g. ``{"test": rows}``; each adds ``<name>_loss`` and ``<name>_accuracy``
    (their time counts in ``eval_seconds``).
    """
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback

    set_seed(seed)
    model, _ = load_classifier(model_source, num_labels, seed=seed)
    model = freeze_all_but_head(model) if config is None else get_peft_model(model, copy.deepcopy(config))
    if prepare is not None:
        prepare(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with tempfile.TemporaryDirectory() as workdir:
        args = TrainingArguments(
            output_dir=workdir, num_train_epochs=settings.epochs, max_steps=settings.max_steps or -1,
            learning_rate=settings.lr, optim="adamw_torch", lr_scheduler_type="linear",
            warmup_steps=settings.warmup,  # a float < 1 is a fraction of the steps
            per_device_train_batch_size=settings.batch_size, per_device_eval_batch_size=settings.eval_batch_size,
            save_strategy="no", logging_strategy="steps", logging_steps=1, report_to="none", disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(), seed=seed, label_names=["labels"],
        )  # fmt: skip
        trainer = Trainer(
            model=model, args=args, train_dataset=train_data, eval_dataset=eval_data, processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=_accuracy,
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)
        start = time.perf_counter()
        output = trainer.train()
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        metrics = trainer.evaluate()
        for name, data in (also_evaluate or {}).items():
            metrics.update(trainer.evaluate(eval_dataset=data, metric_key_prefix=name))
        eval_seconds = time.perf_counter() - start
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    tail = losses[-max(1, math.ceil(FINAL_LOSS_FRACTION * len(losses))) :] if losses else [float("nan")]
    extra = {f"{name}_{metric}": float(metrics[f"{name}_{metric}"])
             for name in also_evaluate or {} for metric in ("loss", "accuracy")}  # fmt: skip
    return {
        "steps": output.global_step,
        "train_loss": float(output.training_loss),
        "final_train_loss": float(sum(tail) / len(tail)),
        "eval_loss": float(metrics["eval_loss"]),
        "eval_accuracy": float(metrics["eval_accuracy"]),
        "trainable_params": trainable,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        **extra,
    }


INT_FIELDS = ("seed", "lora_params", "trainable_params", "steps")
FLOAT_FIELDS = ("train_loss", "final_train_loss", "eval_loss", "eval_accuracy", "train_seconds", "eval_seconds")


def read_runs(
    path: Path, int_fields: Sequence[str] = INT_FIELDS, float_fields: Sequence[str] = FLOAT_FIELDS
) -> list[dict[str, Any]]:
    """Rows of ``runs.csv`` with the numbers of ``int_fields`` and ``float_fields`` parsed (empty list when
    the file does not exist); a line cut short by an interruption is skipped with a warning."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        raw = list(csv.DictReader(handle))
    rows = []
    for row in raw:
        try:
            for name in int_fields:
                row[name] = int(row[name])
            for name in float_fields:
                row[name] = float(row[name])
        except (TypeError, ValueError):  # a line cut short by an interruption: that run is done again
            logger.warning("skipping an incomplete line of %s: %s", path, row)
            continue
        rows.append(row)
    return rows


def append_run(path: Path, row: Mapping[str, Any], fields: Sequence[str] = RUN_FIELDS) -> None:
    """Append one run to ``runs.csv`` (its ``fields``, header first when new) and flush it to disk, holding an
    exclusive lock on the file (POSIX), so that several processes (``equal_params --shard``) may append."""
    with path.open("a", newline="", encoding="utf-8") as handle, _exclusive(handle):
        size = path.stat().st_size
        cut = size > 0 and not path.read_bytes().endswith(b"\n")  # the last write was interrupted
        writer = csv.DictWriter(handle, fieldnames=fields)
        if size == 0:
            writer.writeheader()
        if cut:
            handle.write("\r\n")
        writer.writerow({name: row[name] for name in fields})
        handle.flush()


@contextlib.contextmanager
def _exclusive(handle: Any) -> Iterator[None]:
    """An exclusive ``flock`` on an open file for the block (no lock where ``fcntl`` does not exist)."""
    try:
        import fcntl
    except ImportError:  # Windows: one writer at a time is the caller's affair
        yield
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def run_all(
    placements: Sequence[Placement],
    seeds: Sequence[int],
    runs_path: Path,
    train: Callable[[Placement, int], dict[str, Any]],
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """Train every (placement, seed) not yet in ``runs_path``, appending each as it ends; return all rows."""
    from tqdm.auto import tqdm

    done = {(row["key"], row["seed"]) for row in read_runs(runs_path)}
    todo = [(p, s) for s in seeds for p in placements if (p.key, s) not in done]
    if done:
        logger.info("%d runs already in %s; %d to go", len(done), runs_path, len(todo))
    for placement, seed in tqdm(todo, desc="fine-tuning", unit="run", disable=not show_progress or not todo):
        metrics = train(placement, seed)
        row = {"key": placement.key, "seed": seed, "roles": " ".join(placement.roles),
               "modules": " ".join(placement.modules), "lora_params": placement.lora_params, **metrics}  # fmt: skip
        append_run(runs_path, row)
        logger.info("%s seed %d: eval accuracy %.4f, eval loss %.4f, %.0f s", placement.key, seed,
                    metrics["eval_accuracy"], metrics["eval_loss"], metrics["train_seconds"])  # fmt: skip
    return read_runs(runs_path)

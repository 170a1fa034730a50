"""The training protocol: one run per (arm, learning rate, seed), the learning-rate choice, and ``runs.csv``.

Seed 0 trains every arm at every learning rate; the rate with the best validation accuracy of seed 0 (ties:
lower validation loss, then the smaller rate) is the arm's, and the other seeds train only at it. Every
arm's seed-0 runs come first, so an interrupted study holds complete seed-0 comparisons. Runs are appended
to ``runs.csv`` as they end (``compare_picks``' ``append_run``); a run already there is never repeated.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from peft_ntk_select.candidates import Candidate

from ..compare_picks.choosing import BenchmarkError
from ..compare_picks.training import TrainSettings, append_run, read_runs, train_subset
from .arms import Arm
from .eva import EvaInit
from .skeleton import count_lora_params, describe, module_ranks
from .tasks import Splits

logger = logging.getLogger("equal_params")

LR_SEED = 0  # the seed that trains at every learning rate and chooses the arm's rate
RUN_FIELDS = ("key", "budget", "arm", "lr", "seed", "modules", "lora_params", "budget_params", "trainable_params",
              "steps", "train_loss", "final_train_loss", "val_accuracy", "val_loss", "test_accuracy", "test_loss",
              "train_seconds", "eval_seconds")  # fmt: skip
INT_FIELDS = ("seed", "lora_params", "trainable_params", "steps")
FLOAT_FIELDS = ("lr", "train_loss", "final_train_loss", "val_accuracy", "val_loss", "test_accuracy", "test_loss",
                "train_seconds", "eval_seconds")  # fmt: skip

Run = dict[str, Any]


def load_runs(path: Path) -> list[Run]:
    """The rows of ``runs.csv``, numbers parsed; ``budget_params`` is an int, or None for head-only."""
    rows = read_runs(path, INT_FIELDS, FLOAT_FIELDS)
    for row in rows:
        row["budget_params"] = int(row["budget_params"]) if row["budget_params"] else None
    return rows


def choose_lr(runs: Sequence[Mapping[str, Any]], lrs: Sequence[float]) -> float | None:
    """The arm's learning rate from its seed-0 runs among ``lrs``: highest validation accuracy, then lowest
    validation loss, then the smaller rate; None before any seed-0 run."""
    tried = [run for run in runs if run["seed"] == LR_SEED and run["lr"] in lrs]
    if not tried:
        return None
    return min(tried, key=lambda run: (-run["val_accuracy"], run["val_loss"], run["lr"]))["lr"]


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N, or ``BenchmarkError``."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise BenchmarkError(f"--shard {text!r}: give I/N with 0 <= I < N, e.g. 0/4")
    return int(index), int(count)


def shard_arms(arms: Sequence[Arm], index: int, count: int) -> list[Arm]:
    """The arms of shard ``index`` of ``count``: positions index, index + count, ... Every run of an arm is in
    one shard, so the arm's learning rate is chosen once all its seed-0 runs are done."""
    return list(arms[index::count])


def start_runs(path: Path) -> None:
    """Create ``runs.csv`` with its header if it does not exist (before shards append to it)."""
    if not path.is_file() or path.stat().st_size == 0:
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=RUN_FIELDS).writeheader()


def run_study(
    arms: Sequence[Arm],
    lrs: Sequence[float],
    seeds: Sequence[int],
    path: Path,
    train: Callable[[Arm, float, int], Run],
    show_progress: bool = True,
) -> list[Run]:
    """Train every (arm, lr, seed 0), then every other seed of ``seeds`` at each arm's chosen rate, skipping runs
    already in ``path``; each run is appended as it ends. Returns every row of ``path``."""
    from tqdm.auto import tqdm

    def run(todo: Sequence[tuple[Arm, float, int]], what: str) -> None:
        for arm, lr, seed in tqdm(todo, desc=what, unit="run", disable=not show_progress or not todo):
            row = train(arm, lr, seed)
            append_run(path, row, RUN_FIELDS)
            logger.info("%s lr %g seed %d: val accuracy %.4f, test accuracy %.4f, %.0f s", arm.key, lr, seed,
                        row["val_accuracy"], row["test_accuracy"], row["train_seconds"])  # fmt: skip

    done = {(row["key"], row["lr"], row["seed"]) for row in load_runs(path)}
    first = [(arm, lr, LR_SEED) for arm in arms for lr in lrs if (arm.key, lr, LR_SEED) not in done]
    if done:
        logger.info("%d runs already in %s", len(done), path)
    run(first, f"seed {LR_SEED}, every learning rate")
    rows = load_runs(path)
    done = {(row["key"], row["lr"], row["seed"]) for row in rows}
    second = []
    for arm in arms:
        lr = choose_lr([row for row in rows if row["key"] == arm.key], lrs)
        if lr is None:
            continue
        second += [(arm, lr, seed) for seed in seeds if seed != LR_SEED and (arm.key, lr, seed) not in done]
    run(second, "other seeds, chosen learning rate")
    return load_runs(path)


class ArmTrainer:
    """One run of an arm: ``train_subset`` (fresh classifier, head drawn with the seed, HF Trainer) evaluated on
    the validation and test splits, with EVA's init where the arm asks for it and its LoRA parameters counted
    on the trained PeftModel (over budget raises, except for EVA, whose ranks move: recorded and reported)."""

    def __init__(
        self,
        model_source: str,
        splits: Splits,
        settings: TrainSettings,
        candidates: Sequence[Candidate],
        r: int,
        eva: EvaInit | None = None,
    ) -> None:
        self.model_source, self.splits, self.settings = model_source, splits, settings
        self.candidates, self.r, self.eva = candidates, r, eva

    def inspect(self, arm: Arm, model: nn.Module) -> dict[str, Any]:
        """EVA's init when the arm has it, then the LoRA parameters and modules the model will train."""
        if arm.eva:
            if self.eva is None:
                raise BenchmarkError(f"{arm.key} needs EVA's init but the trainer has none")
            self.eva(model, arm.budget or "")
        if arm.placement.config is None:
            return {"lora_params": 0, "modules": ""}
        found = {"lora_params": count_lora_params(model), "modules": describe(module_ranks(model), self.candidates,
                                                                              self.r)}  # fmt: skip
        if arm.budget_params is not None and found["lora_params"] > arm.budget_params:
            if not arm.eva:
                raise BenchmarkError(f"{arm.key} trains {found['lora_params']:,} LoRA parameters, over its budget of "
                                     f"{arm.budget_params:,}")  # fmt: skip
            logger.warning("%s: EVA's ranks train %s LoRA parameters, over the budget of %s", arm.key,
                           f"{found['lora_params']:,}", f"{arm.budget_params:,}")  # fmt: skip
        return found

    def __call__(self, arm: Arm, lr: float, seed: int) -> Run:
        """Train ``arm`` at ``lr`` with ``seed``; its row of ``runs.csv``."""
        seen: dict[str, Any] = {}
        splits = self.splits
        metrics = train_subset(
            self.model_source, splits.num_labels, arm.placement.config, seed, splits.train, splits.val,
            splits.tokenizer, dataclasses.replace(self.settings, lr=lr),
            prepare=lambda model: seen.update(self.inspect(arm, model)), also_evaluate={"test": splits.test},
        )  # fmt: skip
        return {
            "key": arm.key, "budget": arm.budget or "", "arm": arm.name, "lr": lr, "seed": seed, **seen,
            "budget_params": "" if arm.budget_params is None else arm.budget_params,
            "trainable_params": metrics["trainable_params"], "steps": metrics["steps"],
            "train_loss": metrics["train_loss"], "final_train_loss": metrics["final_train_loss"],
            "val_accuracy": metrics["eval_accuracy"], "val_loss": metrics["eval_loss"],
            "test_accuracy": metrics["test_accuracy"], "test_loss": metrics["test_loss"],
            "train_seconds": metrics["train_seconds"], "eval_seconds": metrics["eval_seconds"],
        }  # fmt: skip

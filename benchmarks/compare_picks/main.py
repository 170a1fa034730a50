"""Argument parsing, the output folder's settings, the data split, the selections, and ``main``."""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from peft import LoraConfig
from torch import nn

from peft_ntk_select import NTKSelector, SelectionResult, discover_candidates
from peft_ntk_select.cli.loading import DEMO, TokenizedTexts, load_classifier, load_tokenizer, read_rows
from peft_ntk_select.search.objectives import DEFAULT_OBJECTIVE, OBJECTIVES

from . import __doc__ as OVERVIEW
from .choosing import BASELINES, BenchmarkError, Placement, choose_subsets, default_candidates, objective_picks
from .report import report_text, write_outputs
from .statistics import summarize
from .training import TrainSettings, run_all, train_subset

logger = logging.getLogger("compare_picks")

DEFAULTS: dict[str, Any] = {
    "train_size": 1024, "eval_size": 1000, "num_samples": 32, "ranked": 10, "random": 8, "seeds": [0, 1, 2],
    "epochs": 2.0, "batch_size": 16, "lr": 5e-3, "max_steps": None, "bootstrap": 1000,
}  # fmt: skip
SMOKE: dict[str, Any] = {
    "train_size": 64, "eval_size": 32, "num_samples": 8, "ranked": 2, "random": 2, "seeds": [0], "epochs": 1.0,
    "batch_size": 8, "lr": 5e-3, "max_steps": 3, "bootstrap": 200,
}  # fmt: skip
# Settings that change what a run or the selection computes: a folder made with others is refused.
RUN_SETTINGS = ("model", "data", "text_column", "text_pair_column", "label_column", "max_length", "train_size",
                "eval_size", "split_seed", "num_samples", "budget", "kinds", "select_seed", "sigma", "engine",
                "epochs", "batch_size", "lr", "max_steps", "r", "lora_alpha", "warmup", "objective")  # fmt: skip
# config.json and summary.json keep the keys of the folders written before an option was renamed
STORED_AS = {"num_samples": "n_samples"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare_picks",
        description=OVERVIEW,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    select.add_argument("--num-samples", type=int, default=None, help="examples the NTK uses (default 32)")
    select.add_argument("--budget", type=int, default=3, help="modules per subset (default 3)")
    select.add_argument("--kinds", default="q,k,v", help="candidate kinds (default q,k,v)")
    select.add_argument("--select-seed", type=int, default=0, help="seed of the selector (samples, A, its head)")
    select.add_argument("--sigma", type=float, default=1e-4, help="ridge strength (default 1e-4)")
    select.add_argument("--engine", default="func", help="kernel engine: func, hooks or reference (default func)")
    select.add_argument("--objective", default=DEFAULT_OBJECTIVE, choices=sorted(OBJECTIVES),
                        help="objective whose ranking the ranked subsets are spaced along; 'top' is its first "
                        f"subset (default {DEFAULT_OBJECTIVE}, the library's default)")  # fmt: skip
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
    """The ``RUN_SETTINGS`` of ``args`` under the keys ``config.json`` stores them by (``STORED_AS``)."""
    return {STORED_AS.get(name, name): getattr(args, name) for name in RUN_SETTINGS}


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
    rows = read_rows(args.data)
    tokenizer = load_tokenizer(args.model)
    texts = TokenizedTexts(rows, tokenizer, text_column=args.text_column, label_column=args.label_column,
                           text_pair_column=args.text_pair_column, max_length=args.max_length)  # fmt: skip
    if args.train_size + args.eval_size > len(texts):
        raise BenchmarkError(f"--train-size + --eval-size = {args.train_size + args.eval_size} but the data has "
                             f"{len(texts)} labelled rows: lower them")  # fmt: skip
    order = random.Random(args.split_seed).sample(range(len(texts)), args.train_size + args.eval_size)
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
        selector = NTKSelector(model, config, budget=args.budget, kinds=args.kinds, num_samples=args.num_samples,
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
    write_outputs(summary, args.output)
    if summary["sanity"]["checked"] and not summary["sanity"]["passed"]:
        logger.warning("the default placement does not clearly beat head-only training%s: %s",
                       " (expected in --smoke mode)" if args.smoke else "", summary["sanity"]["message"])  # fmt: skip
    print(report_text(summary))
    print(f"\nwrote {args.output}/runs.csv, subsets.csv, summary.json, compare_picks.png")
    return summary

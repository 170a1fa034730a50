"""The numbers of the study, from ``runs.csv`` alone, and their text report.

Per budget and arm: LoRA parameters, the chosen learning rate, test accuracy (mean +- std over seeds at that
rate), validation accuracy, and wins over the budget's ``default`` arm paired by seed; the random placements
enter as one row, the median of their test accuracies per seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import fmean, median, stdev
from typing import Any

from peft_ntk_select.tables import format_table

from ..compare_picks.statistics import median_random
from .arms import HEAD_ONLY
from .running import LR_SEED, choose_lr

RANDOM_PREFIX = "random:"
CHOSEN_PREFIXES = ("pick:", "kappa")  # arms whose modules the report lists (the others are fixed by their name)


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return fmean(values), stdev(values) if len(values) > 1 else 0.0


def arm_row(key: str, runs: Sequence[Mapping[str, Any]], lrs: Sequence[float], seeds: Sequence[int]) -> dict[str, Any]:
    """One arm's figures: its chosen rate and, at that rate, per-seed and mean test/validation metrics."""
    mine = [run for run in runs if run["key"] == key]
    lr = choose_lr(mine, lrs)
    wanted = [LR_SEED, *(seed for seed in seeds if seed != LR_SEED)]
    at_lr = {run["seed"]: run for run in mine if run["lr"] == lr and run["seed"] in wanted}
    used = [at_lr[seed] for seed in wanted if seed in at_lr]
    test_mean, test_std = _mean_std([run["test_accuracy"] for run in used])
    first = mine[0] if mine else {}
    return {
        "key": key, "budget": first.get("budget") or None, "arm": first.get("arm", key), "lr": lr,
        "lrs_tried": sorted({run["lr"] for run in mine if run["seed"] == LR_SEED and run["lr"] in lrs}),
        "seeds": len(used), "lora_params": sorted({run["lora_params"] for run in used}),
        "budget_params": first.get("budget_params"),
        "over_budget": any(run["budget_params"] is not None and run["lora_params"] > run["budget_params"]
                           for run in mine),  # fmt: skip
        "modules": used[0]["modules"] if used else None,
        "test_accuracy": test_mean, "test_accuracy_std": test_std,
        "test_loss": _mean_std([run["test_loss"] for run in used])[0],
        "val_accuracy": _mean_std([run["val_accuracy"] for run in used])[0],
        "per_seed_test_accuracy": {run["seed"]: run["test_accuracy"] for run in used},
        "seed0_val_accuracy_by_lr": {run["lr"]: run["val_accuracy"] for run in mine if run["seed"] == LR_SEED},
        "train_seconds": _mean_std([run["train_seconds"] for run in mine])[0],
    }  # fmt: skip


def paired(row: Mapping[str, Any], reference: Mapping[str, Any] | None) -> dict[str, Any]:
    """``row`` against ``reference`` (the budget's default arm) on test accuracy, paired by seed."""
    if reference is None:
        return {"wins": None, "ties": None, "paired_seeds": 0, "difference": None}
    mine, theirs = row["per_seed_test_accuracy"], reference["per_seed_test_accuracy"]
    common = [seed for seed in mine if seed in theirs]
    return {
        "wins": sum(mine[s] > theirs[s] for s in common), "ties": sum(mine[s] == theirs[s] for s in common),
        "paired_seeds": len(common),
        "difference": fmean(mine[s] - theirs[s] for s in common) if common else None,
    }  # fmt: skip


def random_median_row(randoms: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> dict[str, Any] | None:
    """The random placements as one row: per seed, the median of their test accuracies (each at its own rate)."""
    if not randoms:
        return None
    wanted = [LR_SEED, *(seed for seed in seeds if seed != LR_SEED)]
    per_seed = median_random([{"roles": "random", "per_seed_accuracy": row["per_seed_test_accuracy"]}
                              for row in randoms], wanted)  # fmt: skip
    mean, std = _mean_std(list(per_seed.values()))
    params = [p for row in randoms for p in row["lora_params"]]
    return {
        "key": f"random (median of {len(randoms)})", "arm": f"random (median of {len(randoms)})",
        "budget": randoms[0]["budget"], "lr": None, "seeds": len(per_seed),
        "lora_params": [int(median(params))] if params else [], "lora_params_range": [min(params), max(params)]
        if params else None, "budget_params": randoms[0]["budget_params"], "over_budget": False,
        "test_accuracy": mean, "test_accuracy_std": std, "per_seed_test_accuracy": per_seed,
        "val_accuracy": _mean_std([row["val_accuracy"] for row in randoms if row["val_accuracy"] is not None])[0],
    }  # fmt: skip


def summarize(
    runs: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    budgets: Mapping[str, int],
    lrs: Sequence[float],
    seeds: Sequence[int],
) -> dict[str, Any]:
    """Per budget, the rows of the planned arm ``keys`` (in that order) that have runs, with the random median
    row and head-only as a reference, each paired with the budget's default arm; and the run times."""
    rows = {key: arm_row(key, runs, lrs, seeds) for key in keys}
    rows = {key: row for key, row in rows.items() if row["seeds"]}
    head = rows.get(HEAD_ONLY)
    tables: dict[str, Any] = {}
    for budget, params in budgets.items():
        mine = [row for key, row in rows.items() if key.startswith(f"{budget}:")]
        randoms = [row for row in mine if row["arm"].startswith(RANDOM_PREFIX)]
        default = rows.get(f"{budget}:default")
        table = [row for row in mine if not row["arm"].startswith(RANDOM_PREFIX)]
        table += [row for row in (random_median_row(randoms, seeds), head) if row is not None]
        tables[budget] = {
            "budget_params": params,
            "arms": [{**row, **paired(row, default)} for row in table],
            "random": [{**row, **paired(row, default)} for row in randoms],
        }
    seconds = [run["train_seconds"] for run in runs if run["key"] in rows]
    return {
        "budgets": tables,
        "fine_tuning_seconds": {
            "runs": len(seconds),
            "train_total": sum(seconds),
            "train_mean": fmean(seconds) if seconds else None,
        },  # fmt: skip
    }


def _number(value: Any, digits: str = ".4f") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, digits)


def _params(row: Mapping[str, Any]) -> str:
    if row.get("lora_params_range"):
        low, high = row["lora_params_range"]
        return f"{low:,}" if low == high else f"{low:,}-{high:,}"
    return "/".join(f"{p:,}" for p in row["lora_params"]) + (" OVER BUDGET" if row["over_budget"] else "")


def budget_table(budget: str, table: Mapping[str, Any]) -> list[str]:
    headers = ["arm", "LoRA params", "lr", "seeds", "test acc (mean +- std)", "val acc", "test - default",
               "wins vs default"]  # fmt: skip
    lines = [[row["arm"], _params(row), _number(row["lr"], "g"), row["seeds"],
              f"{_number(row['test_accuracy'])} +- {_number(row['test_accuracy_std'])}", _number(row["val_accuracy"]),
              "-" if row["arm"] == "default" else _number(row["difference"], "+.4f"),
              "-" if row["arm"] == "default" or row["wins"] is None else f"{row['wins']}/{row['paired_seeds']}"
              + (f" ({row['ties']} ties)" if row["ties"] else "")] for row in table["arms"]]  # fmt: skip
    chosen = [f"  {row['arm']}: {row['modules']}" for row in table["arms"]
              if row["arm"].startswith(CHOSEN_PREFIXES) and row.get("modules")]  # fmt: skip
    return ["", f"budget {budget} = {table['budget_params']:,} LoRA parameters:", format_table(headers, lines),
            *(["modules chosen:", *chosen] if chosen else [])]  # fmt: skip


def report_text(summary: Mapping[str, Any]) -> str:
    """The tables and notes printed at the end and written to ``report.txt``."""
    config = summary["config"]
    lines = [
        f"equal-parameter study, task {config['task']} ({summary['task_description']}), model {summary['model']}",
        f"{summary['sizes']['train']} train / {summary['sizes']['val']} validation / {summary['sizes']['test']} test "
        f"examples (majority class on test {summary['test_majority']:.3f}), max_length {config['max_length']}; "
        f"LoRA r={config['r']}, alpha={config['lora_alpha']} for every arm; lr chosen per arm among "
        f"{', '.join(format(lr, 'g') for lr in config['lrs'])} by seed 0's validation accuracy; seeds "
        f"{[LR_SEED, *config['seeds']]}; {config['epochs']:g} epochs, batch {config['batch_size']}"
        + (f", max {config['max_steps']} steps" if config["max_steps"] else ""),
        "P = PEFT's default placement (q and v in every layer at r); every arm trains at most its budget's LoRA "
        "parameters (test accuracy paired with the budget's default arm by seed)",
    ]  # fmt: skip
    for budget, table in summary["budgets"].items():
        lines += budget_table(budget, table)
    lines += ["", "selections (NTKSelector, param_budget space, objective max_ratio, search auto):"]
    rows = [[key, _number(info.get("seconds"), ".1f"), info.get("search") or "-", str(info.get("exact")),
             info.get("stopped") or "-", info.get("space", "-")]
            for key, info in summary["selections"].items()]  # fmt: skip
    lines.append(format_table(["pick@budget", "seconds", "search", "exact", "stopped", "space"], rows) if rows
                 else "(none)")  # fmt: skip
    over = [row["key"] for table in summary["budgets"].values() for row in table["arms"] if row.get("over_budget")]
    notes = [*summary["notes"], *(f"{key}: trained more LoRA parameters than its budget (EVA moved ranks)"
                                  for key in over)]  # fmt: skip
    eva = ", ".join(f"{budget} {seconds:.1f} s" for budget, seconds in summary["eva_seconds"].items())
    notes.append(f"PEFT KappaTune order: {_number(summary['kappa_seconds'], '.1f')} s; EVA's SVD (once per budget, "
                 f"then cached): {eva or '-'}")  # fmt: skip
    seconds = summary["fine_tuning_seconds"]
    notes.append(f"fine-tuning: {seconds['runs']} runs, {_number(seconds['train_mean'], '.1f')} s of training per "
                 f"run on average, {_number(seconds['train_total'], '.0f')} s in all")  # fmt: skip
    return "\n".join([*lines, "", "notes:", *(f"- {note}" for note in notes)])

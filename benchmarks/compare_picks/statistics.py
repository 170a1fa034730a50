"""The numbers: rank correlations with bootstrap intervals, per-placement rows, and the comparisons reported."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from statistics import fmean, median, stdev
from typing import Any

import numpy as np
import torch

from peft_ntk_select import SelectionResult
from peft_ntk_select.diagnostics.stability import kendall_tau
from peft_ntk_select.result import RankedSubset
from peft_ntk_select.search.objectives import OBJECTIVES

from .choosing import Placement, rerankings

SPACE_ROLES = ("top", "bottom", "ranked", "random")  # the subsets the correlations are computed over
SCORE_FIELDS = ("ratio", "lambda_max", "kappa", "risk", "risk_upper", "accuracy")
OUTCOMES = ("eval_accuracy", "eval_loss", "final_train_loss")


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


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return fmean(values), stdev(values) if len(values) > 1 else 0.0


def _scores(entry: RankedSubset | None, prefix: str = "") -> dict[str, float | None]:
    return {prefix + name: None if entry is None else getattr(entry, name) for name in SCORE_FIELDS}


def objective_scores(
    reranked: Mapping[str, SelectionResult], modules: Sequence[str], prefix: str = ""
) -> dict[str, Any]:
    """Every selection objective's value for ``modules``, as ``{prefix}objective_<name>``: the score of
    ``modules`` in the result re-ranked by that objective (``rerankings``); None when ``modules`` is empty or
    not all candidates, or when the objective is not in ``reranked`` (it needs labels the result lacks)."""
    values: dict[str, Any] = {}
    for name in OBJECTIVES:
        found = reranked.get(name)
        usable = found is not None and bool(modules) and set(modules) <= {c.name for c in found.candidates}
        values[f"{prefix}objective_{name}"] = float(found.score(modules).score) if usable else None
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
    reranked = rerankings(result, list(OBJECTIVES))
    expected_reranked = {} if expected is None else rerankings(expected, list(OBJECTIVES))
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
            **objective_scores(reranked, placement.modules),
            **objective_scores(expected_reranked, placement.modules, "expected_"),
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
    return {s: median(acc) for s in seeds
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
    labels = {"bottom": "bottom pick (last of the ranking)", "kappa": "PEFT KappaTune (find_kappa_target_modules)",
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

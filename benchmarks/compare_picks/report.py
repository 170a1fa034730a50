"""What a finished (or resumed) benchmark writes and prints: summary.json, subsets.csv, the tables, the scatter plot."""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peft_ntk_select.tables import format_table

logger = logging.getLogger("compare_picks")


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


def write_outputs(summary: Mapping[str, Any], folder: Path) -> None:
    """``summary.json``, ``subsets.csv`` and ``compare_picks.png`` (skipped with a warning without matplotlib)."""
    (folder / "summary.json").write_text(json.dumps(_plain(summary), indent=1))
    write_subsets_csv(summary["subsets"], folder / "subsets.csv")
    try:
        plot_scatter(summary["subsets"], summary["correlations"], folder / "compare_picks.png")
    except ImportError as err:
        logger.warning("compare_picks.png not written (matplotlib missing): %s", err)


def _number(value: Any, digits: str = ".4f") -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, digits)


def _interval(row: Mapping[str, Any], name: str) -> str:
    return (
        f"{_number(row[name], '+.3f')} [{_number(row[name + '_low'], '+.2f')}, {_number(row[name + '_high'], '+.2f')}]"
    )


def _by_rank(row: Mapping[str, Any]) -> tuple[bool, int, str]:
    return row["rank"] is None, row["rank"] or 0, row["key"]


def _placements(summary: Mapping[str, Any]) -> list[str]:
    config, selection = summary["config"], summary["selection"]
    lines = [f"model {config['model']}, data {config['data']}: {config['train_size']} train / "
             f"{config['eval_size']} held-out examples; LoRA r={config['r']}, alpha={config['lora_alpha']}, "
             f"lr {config['lr']:g}, {config['epochs']:g} epochs, batch {config['batch_size']}, "
             f"seeds {config['seeds']}",
             f"selection: {selection['space']} over {selection['candidates']} candidates, "
             f"n={config['n_samples']}, {selection['ranked_subsets']} subsets ranked (kernel=lora)"]  # fmt: skip
    headers = ["placement", "roles", "rank", "exp. rank", "ratio - 1", "exp. ratio - 1", "LOO acc", "LoRA params",
               "seeds", "eval acc", "eval loss", "final train loss"]  # fmt: skip
    rows = [[row["key"], row["roles"], _number(row["rank"], "d"), _number(row["expected_rank"], "d"),
             _number(None if row["ratio"] is None else row["ratio"] - 1, ".4e"),
             _number(None if row["expected_ratio"] is None else row["expected_ratio"] - 1, ".4e"),
             _number(row["accuracy"], ".3f"), f"{row['lora_params']:,}", row["seeds"],
             f"{_number(row['eval_accuracy'])} +- {_number(row['eval_accuracy_std'])}",
             f"{_number(row['eval_loss'])} +- {_number(row['eval_loss_std'])}", _number(row["final_train_loss"])]
            for row in sorted(summary["subsets"], key=_by_rank)]  # fmt: skip
    return [*lines, "", f"placements (rank: position in the {config['objective']} ranking, 0 = the selector's pick):",
            format_table(headers, rows)]  # fmt: skip


def _baselines(summary: Mapping[str, Any]) -> list[str]:
    headers = ["baseline", "modules", "LoRA params", "baseline acc", "top pick acc", "top - baseline", "top wins"]
    rows = [[row["baseline"], row["key"], _number(row["lora_params"], ",d"),
             f"{_number(row['accuracy'])} +- {_number(row['accuracy_std'])}", _number(row["top_accuracy"]),
             _number(row["difference"], "+.4f"), f"{row['wins']}/{row['seeds']}" + (f" ({row['ties']} ties)"
                                                                                    if row["ties"] else "")]
            for row in summary["baselines"]]  # fmt: skip
    top = next((row["key"] for row in summary["subsets"] if "top" in row["roles"].split()), "-")
    return ["", f"top pick ({top}) vs baselines, held-out accuracy over seeds (paired by seed):",
            format_table(headers, rows)]  # fmt: skip


def _objectives(summary: Mapping[str, Any]) -> list[str]:
    headers = ["objective", "oriented rho [95% CI]", "its pick", "rank", "pick acc", "median random acc",
               "pick beats median random", "default acc"]  # fmt: skip
    rows = [[row["objective"], _interval(row, "spearman"), row["pick"] or "-", _number(row["pick_rank"], "d"),
             f"{_number(row['pick_accuracy'])} +- {_number(row['pick_accuracy_std'])}",
             _number(row["median_random_accuracy"]), f"{row['wins_over_median_random']}/{row['seeds']}",
             _number(row["default_accuracy"])] for row in summary.get("objectives", [])]  # fmt: skip
    return ["", "objectives: Spearman rho of each objective's value with held-out accuracy over the ranked and "
            "random subsets, ORIENTED (positive = the subsets it prefers trained better), and its top pick "
            "(rank in the --objective ranking) against the median random subset of each seed:",
            format_table(headers, rows)]  # fmt: skip


def _correlations(summary: Mapping[str, Any]) -> list[str]:
    headers = ["score", "outcome", "n", "Spearman rho [95% CI]", "Kendall tau [95% CI]"]
    rows = [[row["score"], row["outcome"], row["n"], _interval(row, "spearman"), _interval(row, "kendall")]
            for row in summary["correlations"]]  # fmt: skip
    return ["", "rank correlation of each score with the outcome, over the ranked and random subsets "
            "(bootstrap over subsets; raw values, not oriented: a NEGATIVE rho with eval accuracy means that LOW "
            "values trained better, as min_* objectives assume, a POSITIVE one that HIGH values did, as max_* "
            "objectives assume; accuracy = leave-one-out kernel-regression accuracy):",
            format_table(headers, rows)]  # fmt: skip


def _times(summary: Mapping[str, Any]) -> list[str]:
    times, tuning, selection = summary["times"], summary["fine_tuning_seconds"], summary["selection"]
    per_run = tuning["train_mean"]
    total = tuning["train_total"] + tuning["eval_total"]
    rows = [["NTK selection, kernel=lora (ranks every subset)", _number(times.get("lora"), ".1f")],
            ["NTK selection, kernel=expected", _number(times.get("expected"), ".1f")],
            ["PEFT find_kappa_target_modules (SVDs)", _number(times.get("kappa"), ".1f")],
            ["fine-tuning, one run (mean training time)", _number(per_run, ".1f")],
            [f"fine-tuning, all {tuning['runs']} runs (training + evaluation)", _number(total, ".1f")],
            [f"fine-tuning every one of the {selection['ranked_subsets']} subsets once (estimate)",
             _number(per_run * selection["ranked_subsets"] if math.isfinite(per_run) else None, ".0f")]]  # fmt: skip
    return ["", "time (s), the paper's Table 2 comparison:", format_table(["step", "seconds"], rows)]


def _sanity(summary: Mapping[str, Any]) -> list[str]:
    sanity = summary["sanity"]
    if sanity["checked"] and not sanity["passed"]:
        return ["", "!" * 100, "WARNING: the default placement does not clearly beat head-only training: "
                "fine-tuning did not learn enough to compare placements (raise --lr or --epochs).",
                sanity["message"], "!" * 100]  # fmt: skip
    return ["", f"sanity check passed: {sanity['message']}"] if sanity["checked"] else []


def report_text(summary: Mapping[str, Any]) -> str:
    """The tables printed at the end (also in ``summary.json``)."""
    parts = (_placements, _baselines, _objectives, _correlations, _times, _sanity)
    return "\n".join(line for part in parts for line in part(summary))


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

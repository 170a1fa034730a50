"""Command line: ``peft-ntk-select select`` and ``linearity`` (also ``python -m peft_ntk_select``).

Parses, then calls NTKSelector (``select``) or ``linearity_curve`` (``linearity``, Algorithm 1).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from peft import LoraConfig

from ..candidates import PEFT_DEFAULT_KINDS, discover_candidates
from ..diagnostics.linearity import DEFAULT_RADII, PERTURB_MODES, LinearityCurve, linearity_curve
from ..diagnostics.stability import StabilityReport, format_stability
from ..errors import InvalidConfigError, NTKSelectError
from ..kernels import ENGINES
from ..kernels.compute import KERNELS
from ..kernels.custody import check_device
from ..kernels.head import HEADS
from ..kernels.outputs import OUTPUT_MODES
from ..output import atomic_folder, check_output_folder
from ..result import RankedSubset, SelectionResult
from ..search import DEFAULT_OBJECTIVE, OBJECTIVES, SEARCHES
from ..selector import NTKSelector
from ..settings import BASES, MAX_SEED
from ..tables import format_number, format_table
from .loading import DEMO, TokenizedTexts, column_names, load_classifier, read_rows

logger = logging.getLogger("peft_ntk_select")


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: ...)" to an option's help unless the help already gives it, or the default is None or
    False (an unset option, a flag off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or "(default" in text:
            return text
        return super()._get_help_string(action)


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line on stderr, exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err


def _positive_int(text: str) -> int:
    """An integer >= 1 (LoRA rank, token count, ...)."""
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from err
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _seed(text: str) -> int:
    """A seed torch's generators take: an integer in [0, 2**63)."""
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from err
    if not 0 <= value < MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed {text} is out of range: pass an integer in [0, 2**63)")
    return value


def _device(text: str) -> str:
    """A device this torch build can allocate on (the library's ``check_device``), as an argparse error."""
    try:
        check_device(text)
    except InvalidConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return text


def _param_budget(text: str) -> int | list[str]:
    """A number of LoRA parameters, or kinds whose placement in every layer sets it (e.g. q,v)."""
    return int(text) if text.strip().isdigit() else _str_list(text)


def _kind_sets(text: str) -> list[tuple[str, ...]]:
    return [tuple(kind for kind in part.split("+") if kind) for part in _str_list(text)]


def _str_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _float_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def _add_source_arguments(command: argparse.ArgumentParser) -> None:
    """--model, --data and how to read the text: shared by every subcommand."""
    command.add_argument("--model", default=DEMO, help="local model folder or hub name; 'demo' = embedded MiniLM")
    command.add_argument("--data", default=DEMO, help="CSV, JSONL or datasets folder; 'demo' = real movie reviews")
    command.add_argument("--text-column", default="text", help="column holding the text")
    command.add_argument("--text-pair-column", default=None, help="column holding the second text of a pair")
    command.add_argument("--label-column", default=None, help="column holding the class label (default: 'label' "
                         "when the data has it; needed only by --head probe, --output-mode loss and the label "
                         "objectives). Values equal as numbers are one class (1, '1', 1.0); rows with an empty or "
                         "null label are left out")  # fmt: skip
    command.add_argument("--max-length", type=_positive_int, default=128, help="tokens kept per example")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="peft-ntk-select",
        description="Pick where to put LoRA adapters before training, from the spectrum of the NTK.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    select = commands.add_parser(
        "select",
        help="rank subsets of LoRA target modules on a sample of labelled text",
        description="Compute the LoRA kernels of every candidate module on n samples and rank subsets "
        "by --objective (default: highest spectral ratio first). With no --model/--data: the embedded MiniLM on "
        "real movie reviews, offline.",
        formatter_class=_DefaultsFormatter,
    )
    _add_source_arguments(select)
    select.add_argument("--num-samples", type=int, default=32, help="samples the kernels are computed on")
    select.add_argument("--budget", type=int, default=None, help="modules per subset (None: 3, unless "
                        "--param-budget or --layers-per-pick defines the space instead)")  # fmt: skip
    select.add_argument("--param-budget", type=_param_budget, default=None, help="instead of --budget: every subset "
                        "whose LoRA parameters sum to at most this; or kinds, e.g. q,v: the parameters of those kinds "
                        "in every layer at --r (PEFT's default placement)")  # fmt: skip
    select.add_argument("--ranks", type=_int_list, default=None, help="rank allocation within --param-budget: each "
                        "candidate module gets one of these ranks or none, e.g. 4,8,16")  # fmt: skip
    select.add_argument("--layers-per-pick", type=int, default=None, help="instead of --budget: the paper's "
                        "structured space, this many layers with one of --kind-sets")  # fmt: skip
    select.add_argument("--kind-sets", type=_kind_sets, default=[("q", "v")], help="kind sets of the structured "
                        "space, e.g. q+v,k,q+k+v (default: q+v)")  # fmt: skip
    select.add_argument("--search", choices=("auto", *SEARCHES), default="auto", help="search: auto = exhaustive up "
                        "to 200,000 subsets, else exact branch-and-bound (beam without bounds); greedy and "
                        "beam for huge spaces")  # fmt: skip
    select.add_argument("--kinds", type=_str_list, default=None, help="candidate kinds, e.g. q,v or all-linear "
                        "(q,k,v,qkv,o,up,down,gate); default: the attention kinds q,k,v,qkv")  # fmt: skip
    select.add_argument("--layers", type=_int_list, default=None, help="candidate layers, e.g. 0,5,11 (default: all)")
    select.add_argument("--r", type=_positive_int, default=8, help="LoRA rank")
    select.add_argument("--lora-alpha", type=float, default=8, help="LoRA alpha")
    select.add_argument("--sigma", type=float, default=1e-4, help="ridge strength sigma")
    select.add_argument("--engine", choices=["auto", *sorted(ENGINES)], default="auto",
                        help="kernel engine (auto: hooks on CUDA or where torch.func cannot trace the model, else "
                        "func)")  # fmt: skip
    select.add_argument("--output-mode", choices=OUTPUT_MODES, default=None, help="kernel output (default: trace)")
    select.add_argument("--seed", type=_seed, default=0, help="seed of the sample draw, LoRA init and new head")
    select.add_argument("--init-seed", type=_seed, default=None, help="seed of the LoRA A draw (default: --seed)")
    select.add_argument("--kernel", choices=KERNELS, default="lora", help="lora: the kernel at the drawn A; "
                        "expected: its exact mean over A (deterministic); adam: Adam's SignGD kernel at the "
                        "drawn A")  # fmt: skip
    select.add_argument("--objective", choices=sorted(OBJECTIVES), default=DEFAULT_OBJECTIVE, help="what subsets are "
                        "ranked by: max_ratio = highest spectral ratio (measured best, README 'Which objective'); "
                        "min_ratio = Algorithm 2 as printed (lowest spectral ratio); "
                        "max_lambda_max = largest lambda_max(S_C); min_risk = lowest kernel-ridge training risk; "
                        "max_alignment = kernel-target alignment; min_kappa = lowest condition number; "
                        "max_effective_rank = most spread S_C spectrum; min_loo_error = lowest leave-one-out "
                        "kernel-regression error (the label objectives need labels)")  # fmt: skip
    select.add_argument("--base", choices=BASES, default="head", help="base kernel K: head = the kernel of the new "
                        "head (trained in every pick); none = K = 0")  # fmt: skip
    select.add_argument("--head", choices=HEADS, default="init", help="init: the new head as drawn; probe: fit it by "
                        "linear probing on the samples first (LP-FT)")  # fmt: skip
    select.add_argument("--stability", type=int, default=0, metavar="RUNS", help="also rerun the selection RUNS times "
                        "per kernel over init seeds (LoRA A and new head) and over sample draws, and report how "
                        "stable the ranking is (costs 4 x RUNS kernel computations)")  # fmt: skip
    select.add_argument("--linearity", action="store_true", help="also run the linearity check (Algorithm 1) with "
                        "its default radii and 3 models per radius")  # fmt: skip
    select.add_argument("--device", type=_device, default=None, help="device to compute on, e.g. cuda (default: cpu)")
    select.add_argument("--max-memory", default=None, help="cap on the memory the kernel pass adds, e.g. 8GB "
                        "(default: half the available RAM, 80%% of free GPU memory)")  # fmt: skip
    select.add_argument("--top", type=_positive_int, default=10, help="ranked subsets shown (an exhaustive search "
                        "ranks all of them; --search exact, greedy or beam keeps this many)")  # fmt: skip
    select.add_argument("--output", type=Path, default=None, help="folder for adapter_config.json, result.json, "
                        "report.png; written whole (an earlier run's files there are replaced; a folder holding other "
                        "files is refused). Without it nothing is written")  # fmt: skip
    select.add_argument("--json", action="store_true", help="print a machine-readable JSON summary on stdout")
    select.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    linearity = commands.add_parser(
        "linearity",
        help="check how linear the model is around its weights (Algorithm 1)",
        description="For each radius r, perturb the weights by r in random directions and record the largest "
        "||f(x') - f(x)|| / ||x' - x|| over sample pairs (x: input embeddings, f: logits). A flat curve means the "
        "linearization behind the kernel picks holds within r. With no --model/--data: the embedded MiniLM on "
        "real movie reviews, offline.",
        formatter_class=_DefaultsFormatter,
    )
    _add_linearity_arguments(linearity)
    return parser


def _add_linearity_arguments(linearity: argparse.ArgumentParser) -> None:
    _add_source_arguments(linearity)
    linearity.add_argument("--radii", type=_float_list, default=",".join(f"{r:g}" for r in DEFAULT_RADII),
                           help="radii r = ||theta - theta0||, comma-separated")  # fmt: skip
    linearity.add_argument("--num-models", type=int, default=5, help="random models per radius")
    linearity.add_argument("--num-samples", type=int, default=32, help="samples whose pairs are compared")
    linearity.add_argument("--perturb", choices=PERTURB_MODES, default="all", help="perturb all weights, or only "
                           "the weights of the candidate modules (those LoRA would adapt)")  # fmt: skip
    linearity.add_argument("--kinds", type=_str_list, default=None, help="with --perturb candidates: candidate "
                           "kinds, e.g. q,v (default: all)")  # fmt: skip
    linearity.add_argument("--seed", type=_seed, default=0, help="seed of the sample draw, directions and new head")
    linearity.add_argument("--output", type=Path, default=None, help="folder for linearity.json and "
                           "linearity.png; written whole, as select's --output (without it nothing is "
                           "written)")  # fmt: skip
    linearity.add_argument("--json", action="store_true", help="print the curve as JSON on stdout")
    linearity.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")


def _short(result: SelectionResult) -> dict[str, str]:
    return {c.name: f"L{c.layer}.{c.kind}" for c in result.candidates}


def _names(entry: RankedSubset, short: dict[str, str], with_ranks: bool) -> str:
    """``L0.q L1.v``, or with rank allocation ``L0.q@4 L1.v@8``."""
    return " ".join(short[m] + (f"@{entry.ranks[m]}" if with_ranks and entry.ranks else "") for m in entry.modules)


def _row(label: str, entry: RankedSubset, short: dict[str, str], with_ranks: bool = False) -> list[str]:
    number = format_number
    return [label, _names(entry, short, with_ranks), f"{entry.ratio - 1:.4e}", number(entry.lambda_min),
            number(entry.lambda_max, ".6g"), number(entry.kappa), number(entry.risk), number(entry.risk_lower),
            number(entry.risk_upper), number(entry.accuracy, ".3f"), f"{entry.num_params:,}"]  # fmt: skip


def default_placement(result: SelectionResult) -> RankedSubset | None:
    """PEFT's usual placement (query and value in every layer at the config's r) scored on the same kernels, if all
    are candidates (with rank allocation: if r is among the ranks offered)."""
    modules = list(dict.fromkeys(c.name for c in result.candidates if c.kind in PEFT_DEFAULT_KINDS))
    if not modules:
        return None
    if not result.allocates_ranks:
        return result.score(modules)
    offered = {c.rank for c in result.candidates}
    return (
        result.score(modules, dict.fromkeys(modules, result.lora_config.r)) if result.lora_config.r in offered else None
    )


def _certificate_line(result: SelectionResult) -> str:
    found = result.certificate
    if found is None:
        return ""
    if found.optimal:
        proof = "optimal"
    elif found.gap is None:
        proof = f"not proven optimal (objective {found.objective} has no bounds)"
    else:
        proof = f"not proven optimal (gap {found.gap:.3g} in {found.objective})"
    return (f"search {found.search}: {found.space_size:,} admissible subsets, {found.evaluated:,} scored, "
            f"{found.nodes:,} nodes, {proof}")  # fmt: skip


def report_text(result: SelectionResult, top: int) -> str:
    """The ranking table (top subsets, then the default placement) and how to read it."""
    short, with_ranks = _short(result), result.allocates_ranks
    rows = [_row(f"#{rank}", entry, short, with_ranks) for rank, entry in enumerate(result.ranking[:top])]
    baseline = default_placement(result)
    if baseline is not None:
        rows.append(_row("default", RankedSubset(**{**asdict(baseline), "modules": ()}), short))
    headers = ["rank", "modules", "ratio - 1", "lambda_min", "lambda_max", "kappa", "risk", "bound low", "bound up",
               "LOO acc", "LoRA params"]  # fmt: skip
    lines = [
        f"{result.space} over {len(result.candidates)} candidates, n={len(result.sample_indices)}, "
        f"sigma={result.sigma:g}, engine={result.engine}, output_mode={result.output_mode}, kernel={result.kernel}, "
        f"head={result.head}, base={result.base}, objective={result.objective}",
        _certificate_line(result),
        format_table(headers, rows),
    ]
    if baseline is not None:
        lines.append(f"default = PEFT's usual placement, query+value in every layer ({len(baseline.modules)} modules)")
    lines.append("ratio = lambda_max(K + S_C + sigma I) / lambda_max(K + sigma I); kappa = (lambda_max + sigma) / "
                 "(lambda_min + sigma); risk = kernel-ridge training risk, bounds = Theorem 1 (without 1/n); "
                 "LOO acc = leave-one-out kernel-regression accuracy on the samples")  # fmt: skip
    best = result.ranking[0]
    picked = [f"{m} (r={best.ranks[m]})" if with_ranks and best.ranks else m for m in best.modules]
    lines.append(f"picked: {', '.join(picked)}")
    return "\n".join(lines)


def json_summary(
    result: SelectionResult,
    top: int,
    output: Path | None,
    stability: list[StabilityReport] | None = None,
    linearity: LinearityCurve | None = None,
) -> str:
    baseline = default_placement(result)
    config = {k: sorted(v) if isinstance(v, set) else v for k, v in result.lora_config.to_dict().items()}
    return json.dumps({
        "picked": list(result.ranking[0].modules),
        "lora_config": config,
        "ranking": [asdict(entry) for entry in result.ranking[:top]],
        "default_placement": None if baseline is None else asdict(baseline),
        "sample_indices": result.sample_indices,
        "space": result.space,
        "certificate": None if result.certificate is None else asdict(result.certificate),
        "output": None if output is None else str(output),
        "kernel": result.kernel,
        "objective": result.objective,
        "base": result.base,
        "head": result.head,
        "head_fit": result.head_fit,
        "stability": None if stability is None else [report.to_dict() for report in stability],
        "linearity": None if linearity is None else linearity.to_dict(),
    })  # fmt: skip


def _needs_labels(args: argparse.Namespace) -> str | None:
    """The option that makes this run need class labels, or None."""
    if args.command != "select":
        return None
    if OBJECTIVES[args.objective].needs_targets:
        return f"--objective {args.objective}"
    if args.head == "probe":
        return "--head probe"
    if args.output_mode == "loss":
        return "--output-mode loss"
    return None


def load_model_and_data(args: argparse.Namespace) -> tuple[Any, TokenizedTexts]:
    """The classifier (head sized to the labels, drawn with --seed) and the tokenized rows of --data.

    Without --label-column, the column ``label`` is used if the data has one; else the run goes without labels
    (the head keeps the checkpoint's size), unless it needs them (``InvalidConfigError`` naming --label-column).
    """
    rows = read_rows(args.data)
    label_column = args.label_column
    if label_column is None:
        label_column = "label" if "label" in column_names(rows) else None
        needed_by = _needs_labels(args)
        if label_column is None and needed_by is not None:
            raise InvalidConfigError(f"{needed_by} needs class labels and the data has no column 'label': pass "
                                     "--label-column with the column that holds them")  # fmt: skip
    data = TokenizedTexts(rows, None, text_column=args.text_column, label_column=label_column,
                          text_pair_column=args.text_pair_column, max_length=args.max_length)  # fmt: skip
    num_labels = max(len(data.label_names), 2) if label_column else None
    model, data.tokenizer = load_classifier(args.model, num_labels, seed=args.seed)
    return model, data


def _progress() -> bool:
    """Progress bars only on a terminal: on a redirected stderr, lines are messages (one per failure)."""
    return sys.stderr.isatty()


def _check_output(args: argparse.Namespace) -> None:
    """Refuse an unusable --output before any computation (see ``check_output_folder``)."""
    if args.output is not None:
        check_output_folder(args.output)


def run_select(args: argparse.Namespace) -> None:
    if args.stability == 1 or args.stability < 0:
        raise InvalidConfigError(f"--stability {args.stability}: give 0 (off) or at least 2 runs to compare")
    _check_output(args)
    model, data = load_model_and_data(args)
    config = LoraConfig(r=args.r, lora_alpha=args.lora_alpha, task_type="SEQ_CLS")
    selector = NTKSelector(
        model, config, budget=args.budget, param_budget=args.param_budget, layers_per_pick=args.layers_per_pick,
        kind_sets=args.kind_sets, search=args.search, top=None if args.search in ("auto", "exhaustive") else args.top,
        num_samples=args.num_samples, sigma=args.sigma, seed=args.seed, engine=args.engine,
        output_mode=args.output_mode, kinds=args.kinds, layers=args.layers, device=args.device,
        init_seed=args.init_seed, kernel=args.kernel, ranks=args.ranks,
        head=args.head, objective=args.objective, base=args.base, max_memory=args.max_memory,
        show_progress=_progress(),
    )  # fmt: skip
    result = selector.select(data)
    seeds = range(args.stability)
    stability = selector.stability(data, seeds=seeds, sample_draws=seeds) if args.stability else None
    curve = (
        linearity_curve(
            model, data, num_models=3, num_samples=args.num_samples, seed=args.seed, show_progress=_progress()
        )
        if args.linearity
        else None
    )
    extras = {"stability": stability, "linearity": curve}
    if args.output is not None:
        with atomic_folder(args.output) as folder:
            result._write(folder)
            for name, value in extras.items():
                if value is not None:
                    content = [r.to_dict() for r in value] if name == "stability" else value.to_dict()
                    (folder / f"{name}.json").write_text(json.dumps(content))
            try:
                result.plot(folder / "report.png", **extras)
            except NTKSelectError as err:
                logger.warning("report.png not written: %s", err)
    if args.json:
        print(json_summary(result, args.top, args.output, **extras))
    else:
        print(report_text(result, args.top))
        if stability is not None:
            print("\nstability over seeds (Kendall tau between the rankings of every pair of runs):")
            print(format_stability(stability, _short(result)))
        if curve is not None:
            print("\n" + linearity_text(curve))
    if args.output is not None and not args.json:
        written = ", ".join(f"{name}.json" for name, value in extras.items() if value is not None)
        print(f"wrote {args.output}/adapter_config.json (LoraConfig.from_pretrained), result.json, report.png"
              + (f", {written}" if written else ""))  # fmt: skip


def linearity_text(curve: LinearityCurve) -> str:
    """The curve as a table, with how to read it."""
    first = curve.l_avg[0]
    rows = [[f"{radius:g}", f"{avg:.6g}", f"{upper:.6g}", f"{avg / first:.4f}" if first > 0 else "-"]
            for radius, avg, upper in zip(curve.radii, curve.l_avg, curve.l_upper, strict=True)]  # fmt: skip
    return "\n".join([
        f"linearity check (Algorithm 1): perturb={curve.perturb}, {len(curve.parameters)} weights of norm "
        f"{curve.weight_norm:.4g}, n={curve.num_samples} samples, {curve.per_model.shape[1]} models per radius",
        format_table(["radius", "L_avg", "L_upper", f"L_avg / L_avg(r={curve.radii[0]:g})"], rows),
        "L = max over sample pairs of ||f(x') - f(x)|| / ||x' - x|| (x: input embeddings, f: logits)",
        "flat: the linearization (the kernel view) holds within that radius; rising: trust kernel-based picks less",
    ])  # fmt: skip


def run_linearity(args: argparse.Namespace) -> None:
    if args.kinds is not None and args.perturb != "candidates":
        raise InvalidConfigError("--kinds chooses candidates: add --perturb candidates, or drop --kinds")
    _check_output(args)
    model, data = load_model_and_data(args)
    candidates = discover_candidates(model, kinds=args.kinds) if args.perturb == "candidates" else None
    curve = linearity_curve(model, data, args.radii, args.num_models, num_samples=args.num_samples, seed=args.seed,
                            perturb=args.perturb, candidates=candidates, show_progress=_progress())  # fmt: skip
    if args.output is not None:
        with atomic_folder(args.output) as folder:
            (folder / "linearity.json").write_text(json.dumps(curve.to_dict()))
            try:
                curve.plot(folder / "linearity.png")
            except NTKSelectError as err:
                logger.warning("linearity.png not written: %s", err)
    print(json.dumps(curve.to_dict()) if args.json else linearity_text(curve))
    if args.output is not None and not args.json:
        print(f"wrote {args.output}/linearity.json and linearity.png")


COMMANDS = {"select": run_select, "linearity": run_linearity}


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``peft-ntk-select``; returns the exit status.

    Every failure is one line on stderr: argument errors exit with status 2; typed errors (``NTKSelectError``)
    and ``OSError`` print their message, any other exception its type and message, with status 1; Ctrl-C prints
    ``interrupted``, status 130. ``--debug`` shows tracebacks and the library's warnings (routed through logging);
    without it, warnings are silenced.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(message)s")
    if not args.debug:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.simplefilter("ignore")
            COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        sys.stderr.write("peft-ntk-select: interrupted\n")
        return 130
    except (NTKSelectError, OSError) as err:
        if args.debug:
            raise
        sys.stderr.write(f"peft-ntk-select: error: {_one_line(str(err))}\n")
        return 1
    except Exception as err:
        if args.debug:
            raise
        first = _one_line(str(err).strip().splitlines()[0]) if str(err).strip() else ""
        sys.stderr.write(f"peft-ntk-select: error: {type(err).__name__}: {first} (rerun with --debug for the "
                         "traceback)\n")  # fmt: skip
        return 1
    finally:
        logging.captureWarnings(False)
    return 0

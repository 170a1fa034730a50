"""Which placements to train: evenly spaced ranks, random subsets, each objective's pick, and the baselines."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from peft import LoraConfig

from peft_ntk_select import SelectionResult
from peft_ntk_select.candidates import PEFT_DEFAULT_KINDS, Candidate
from peft_ntk_select.result import config_with_targets
from peft_ntk_select.search.objectives import OBJECTIVES

logger = logging.getLogger("compare_picks")

BASELINES = ("kappa", "last_layers", "first_layers", "default", "head_only")


class BenchmarkError(RuntimeError):
    """The benchmark cannot run as asked; the message says what to change."""


@dataclass
class Placement:
    """Where LoRA goes in one trained configuration.

    ``key``: stable name (``L0.q+L0.k+L1.q`` for a subset, ``default``, ``head_only``); ``modules``: full
    module names (empty for head-only); ``roles``: why it is trained (``top``, ``bottom``, ``ranked``,
    ``random``, ``pick:<objective>``, ``kappa``, ``last_layers``, ``first_layers``, ``default``,
    ``head_only``); ``rank``: its position in the ``lora`` ranking (None outside the ranked space);
    ``config``: its LoraConfig (None: head-only).
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
        return (0 if c.kind in PEFT_DEFAULT_KINDS else 1, -c.layer if last else c.layer, _kind_order(c.kind))

    return sorted(candidates, key=order)[:budget]


def kappa_pick(kappa_order: Sequence[str], candidates: Sequence[Candidate], budget: int) -> list[Candidate]:
    """The ``budget`` best-ranked (lowest condition number) of PEFT's KappaTune targets that are candidates."""
    by_name = {c.name: c for c in candidates}
    return [by_name[name] for name in kappa_order if name in by_name][:budget]


def default_candidates(candidates: Sequence[Candidate]) -> list[Candidate]:
    """PEFT's usual placement among ``candidates``: query and value (GPT-2: c_attn) in every layer."""
    return [c for c in candidates if c.kind in PEFT_DEFAULT_KINDS]


def rerankings(result: SelectionResult, names: Sequence[str]) -> dict[str, SelectionResult]:
    """``result`` re-ranked by each objective of ``names`` (``SelectionResult.rerank``: same kernels, same
    space); objectives that need labels are left out when ``result`` has none."""
    return {name: result.rerank(objective=name) for name in names
            if result.targets is not None or not OBJECTIVES[name].needs_targets}  # fmt: skip


def objective_picks(result: SelectionResult, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each objective's best subset of the space ``result`` ranked: the first of its re-ranking.

    Objectives that need labels are left out (with a warning) when ``result`` has none.
    """
    reranked = rerankings(result, names)
    for name in names:
        if name not in reranked:
            logger.warning("objective %s needs labels the selection lacks: its pick is not trained", name)
    return {name: tuple(found.ranking[0].modules) for name, found in reranked.items()}


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
    candidates, ranking = result.candidates, result.ranking
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

    for i in ranked_positions(len(ranking), n_ranked):
        add(ranking[i].modules, "top" if i == 0 else "bottom" if i == len(ranking) - 1 else "ranked")
    for i in random_positions(len(ranking), n_random, seed):
        add(ranking[i].modules, "random")
    for name, modules in (picks or {}).items():
        add(modules, f"pick:{name}")
    for role, chosen in baseline_modules(result, budget, baselines, kappa_order).items():
        add([c.name for c in chosen], role)
    if "default" in baselines:
        chosen = list(default) if default is not None else default_candidates(candidates)
        if chosen:
            modules = tuple(c.name for c in chosen)
            placements["default"] = Placement("default", modules, ["default"], position.get(frozenset(modules)),
                                              config_with_targets(result.lora_config, chosen),
                                              sum(c.num_params for c in chosen))  # fmt: skip
        else:
            logger.warning("no q/v module: PEFT's default placement is not trained")
    if "head_only" in baselines:
        placements["head_only"] = Placement("head_only", (), ["head_only"])
    return list(placements.values())


def baseline_modules(
    result: SelectionResult,
    budget: int,
    baselines: Sequence[str],
    kappa_order: Sequence[str] | None,
) -> dict[str, list[Candidate]]:
    """Role -> candidates of the ``kappa``, ``last_layers`` and ``first_layers`` baselines among ``baselines``
    (``budget`` candidates of the ranked space each; an empty pick is left out)."""
    candidates = result.candidates
    chosen: dict[str, list[Candidate]] = {}
    if "kappa" in baselines:
        if kappa_order is None:
            raise BenchmarkError("the kappa baseline needs kappa_order (find_kappa_target_modules' module order)")
        chosen["kappa"] = kappa_pick(kappa_order, candidates, budget)
        if len(chosen["kappa"]) < budget:
            logger.warning("KappaTune ranks only %d candidates: its baseline has fewer than %d modules",
                           len(chosen["kappa"]), budget)  # fmt: skip
    for role, last in (("last_layers", True), ("first_layers", False)):
        if role in baselines:
            chosen[role] = layer_pick(candidates, budget, last=last)
    return {role: picked for role, picked in chosen.items() if picked}

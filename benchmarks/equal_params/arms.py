"""The arms of one budget that need no kernel: PEFT's default placement at the budget's rank, v only, every linear
module at a uniform rank, KappaTune's greedy fill, uniform random subsets, EVA, and head-only training.

An arm is a ``compare_picks`` ``Placement`` (key ``<budget>:<arm>``, full module names, ``LoraConfig``, LoRA
parameters counted by PEFT on the weightless model) with its budget; ``make_arm`` refuses one over budget.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from peft import EvaConfig, LoraConfig

from peft_ntk_select.candidates import ALL_LINEAR, Candidate
from peft_ntk_select.result import config_with_targets

from ..compare_picks.choosing import BenchmarkError, Placement
from .sampling import sample_subsets
from .skeleton import Skeleton, lora_summary

logger = logging.getLogger("equal_params")

BUDGETS = {"P": 1, "P/4": 4}  # budget label -> divisor of P, PEFT's default placement (q and v, every layer, r)
HEAD_ONLY = "head_only"
ARM_NAMES = ("default", "v_only", "all_linear", "pick:lora", "pick:expected", "pick:attention", "pick:adam",
             "pick:ranks", "pick:kinds", "random", "kappa", "eva", HEAD_ONLY)  # fmt: skip
EVA_RHO = 2.0


@dataclass
class Arm:
    """One trained configuration: ``placement`` (key, full module names, config, counted LoRA parameters),
    its ``budget`` label (None: head-only, once for all budgets) and parameter budget, the arm's name,
    ``modules`` as short names (``L3.v@4``), and whether PEFT's EVA initialises it after ``get_peft_model``."""

    budget: str | None
    name: str
    placement: Placement
    budget_params: int | None
    modules: str = ""
    eva: bool = False

    @property
    def key(self) -> str:
        return self.placement.key


def arm_key(budget: str | None, name: str) -> str:
    """``P/4:default``; head-only has no budget: ``head_only``."""
    return name if budget is None else f"{budget}:{name}"


def arm_order(arm: Arm) -> tuple[int, int]:
    """Sort key: the order of ``ARM_NAMES`` (``random:<i>`` under ``random``, by i)."""
    family, _, index = arm.name.partition(":") if arm.name.startswith("random:") else (arm.name, "", "0")
    return ARM_NAMES.index(family), int(index)


def budget_slug(budget: str) -> str:
    """The budget label as a file-name part: ``P`` -> ``P``, ``P/4`` -> ``P4``."""
    return budget.replace("/", "")


def make_arm(
    skeleton: Skeleton,
    budget: str | None,
    name: str,
    config: LoraConfig | None,
    budget_params: int | None,
    candidates: Sequence[Candidate],
    r: int,
    *,
    eva: bool = False,
) -> Arm:
    """The arm of ``config``, its LoRA parameters counted on the PeftModel; ``BenchmarkError`` above budget."""
    counted = lora_summary(skeleton, config, candidates, r)
    if budget_params is not None and counted["lora_params"] > budget_params:
        raise BenchmarkError(f"{arm_key(budget, name)} would train {counted['lora_params']:,} LoRA parameters, "
                             f"over its budget of {budget_params:,}")  # fmt: skip
    modules = () if config is None else tuple(sorted(config.target_modules))
    placement = Placement(arm_key(budget, name), modules, [name], None, config, counted["lora_params"])
    return Arm(budget, name, placement, budget_params, counted["modules"], eva)


def base_config(r: int, alpha: float) -> LoraConfig:
    """The LoRA settings every arm shares (its targets and ranks aside): alpha stays fixed when ranks change."""
    return LoraConfig(r=r, lora_alpha=alpha, task_type="SEQ_CLS")


def budget_rank(r: int, divisor: int, what: str) -> int:
    """``r / divisor`` when it is a whole rank >= 1; ``BenchmarkError`` otherwise."""
    if r % divisor or r < divisor:
        raise BenchmarkError(f"{what} needs rank r/{divisor} with r = {r}: pass an --r that is a multiple of {divisor}")
    return r // divisor


def uniform_rank(per_rank_params: int, budget_params: int) -> int:
    """The largest rank at which every module fits the budget (0 when even rank 1 does not)."""
    return budget_params // per_rank_params


def kappa_fill(order: Sequence[str], candidates: Sequence[Candidate], capacity: int) -> list[Candidate]:
    """PEFT's KappaTune order restricted to ``candidates``, taken greedily: a module that fits the remaining
    ``capacity`` is taken, one that does not is skipped and the next one tried."""
    by_name = {c.name: c for c in candidates}
    chosen, left = [], capacity
    for name in dict.fromkeys(order):
        candidate = by_name.get(name)
        if candidate is not None and candidate.num_params <= left:
            chosen.append(candidate)
            left -= candidate.num_params
    return chosen


def random_subsets(candidates: Sequence[Candidate], capacity: int, n: int, seed: int) -> list[list[Candidate]]:
    """``n`` distinct nonempty subsets of ``candidates`` within ``capacity`` LoRA parameters, each uniform over
    the space (``sampling.sample_subsets``), drawn with ``seed``."""
    drawn = sample_subsets([c.num_params for c in candidates], capacity, n, random.Random(seed))
    return [[candidates[i] for i in subset] for subset in drawn]


def eva_config(config: LoraConfig) -> LoraConfig:
    """``config`` with PEFT's EVA init (rho 2: a module may get up to twice its rank, the total rank kept)."""
    return dataclasses.replace(config, init_lora_weights="eva", eva_config=EvaConfig(rho=EVA_RHO))


def fixed_arms(
    skeleton: Skeleton,
    budget: str,
    budget_params: int,
    names: Sequence[str],
    *,
    r: int,
    alpha: float,
    n_random: int = 8,
    subset_seed: int = 0,
    kappa_order: Sequence[str] | None = None,
) -> tuple[list[Arm], list[str]]:
    """The arms among ``names`` of one budget that need no selector, and notes on those left out.

    ``default``, ``v_only`` (P/4 only), ``all_linear``, ``kappa`` (needs ``kappa_order``), ``random:<i>`` for
    ``random``, and ``eva`` (the default arm's modules and rank).
    """
    divisor = BUDGETS[budget]
    everything = skeleton.candidates(ALL_LINEAR, r)
    arms: list[Arm] = []
    notes: list[str] = []

    def add(name: str, config: LoraConfig, eva: bool = False) -> None:
        arms.append(make_arm(skeleton, budget, name, config, budget_params, everything, r, eva=eva))

    default = None
    if "default" in names or "eva" in names:
        rank = budget_rank(r, divisor, f"the default arm at {budget}")
        default = config_with_targets(base_config(rank, alpha), skeleton.candidates(("q", "v"), rank))
    if "default" in names:
        add("default", default)  # type: ignore[arg-type]
    if "v_only" in names and budget == "P/4":
        rank = budget_rank(r, 2, "v_only")
        add("v_only", config_with_targets(base_config(rank, alpha), skeleton.candidates(("v",), rank)))
    if "all_linear" in names:
        per_rank = sum(c.num_params for c in skeleton.candidates(ALL_LINEAR, 1))
        rank = uniform_rank(per_rank, budget_params)
        if rank >= 1:
            add("all_linear", config_with_targets(base_config(rank, alpha), skeleton.candidates(ALL_LINEAR, rank)))
        else:
            notes.append(f"{arm_key(budget, 'all_linear')} left out: every linear module at rank 1 needs "
                         f"{per_rank:,} LoRA parameters, over the budget of {budget_params:,}")  # fmt: skip
    if "kappa" in names:
        if kappa_order is None:
            raise BenchmarkError("the kappa arm needs PEFT's KappaTune order (find_kappa_target_modules)")
        chosen = kappa_fill(kappa_order, everything, budget_params)
        if chosen:
            add("kappa", config_with_targets(base_config(r, alpha), chosen))
        else:
            notes.append(f"{arm_key(budget, 'kappa')} left out: no KappaTune module fits the budget")
    if "random" in names and n_random > 0:
        for i, chosen in enumerate(random_subsets(everything, budget_params, n_random, subset_seed)):
            add(f"random:{i}", config_with_targets(base_config(r, alpha), chosen))
    if "eva" in names:
        add("eva", eva_config(default), eva=True)  # type: ignore[arg-type]
    return arms, notes


def head_only_arm(skeleton: Skeleton, r: int) -> Arm:
    """Only the classification head trains (``compare_picks``' ``freeze_all_but_head``): once, for every budget."""
    return make_arm(skeleton, None, HEAD_ONLY, None, None, skeleton.candidates(ALL_LINEAR, r), r)

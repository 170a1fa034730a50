"""The selector's arms (``pick:*``) and PEFT's KappaTune order, computed once and cached in the output folder.

Each ``pick:<name>`` runs ``NTKSelector`` over the parameter-budget space of the budget (every nonempty subset
of its candidates whose LoRA parameters fit) on the training examples, and trains ``result.lora_config``;
``pick:kinds`` instead picks one set of kinds for every layer (``kinds_everywhere``).
The pick's config is saved in ``selection_<name>_<budget>/adapter_config.json`` (``LoraConfig.from_pretrained``)
with the ten best entries in ``ranking.json``, their times and what the search proved in ``selection.json``,
next to KappaTune's module order. The whole result (kernels included, 4-30 MB) stays out of the repository: it is
kept beside them as ``result.json`` (git-ignored; the kernels are reproducible from the seeds), so that the same pick
at another budget reranks those kernels (``SelectionResult.rerank``) instead of recomputing them.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from peft import LoraConfig
from torch import nn

from peft_ntk_select import NTKSelector, SelectionResult
from peft_ntk_select.candidates import ALL_LINEAR, Candidate
from peft_ntk_select.errors import InvalidConfigError, InvalidInputError

from ..compare_picks.choosing import BenchmarkError
from .arms import budget_slug

logger = logging.getLogger("equal_params")

RECORD = "selection.json"
CONFIG_FILE = "adapter_config.json"
KERNELS_FILE = "result.json"
UNAVAILABLE = "not available in this version of the library"


@dataclass(frozen=True)
class Pick:
    """A selector arm: candidate ``kinds`` (None: the selector's default q/k/v), ``kernel``, whether each module
    also gets a rank (``ranks`` r/4, r/2, r, 2r), whether it picks one kind set for every layer at the budget's
    rank (``everywhere``: ``kinds_everywhere``), and whether it needs a library feature that may be missing."""

    name: str
    kinds: str | None
    kernel: str
    ranked: bool = False
    everywhere: bool = False
    new_feature: bool = False

    def keywords(self, r: int) -> dict[str, Any]:
        """``NTKSelector`` keywords of this arm besides the shared ones."""
        found: dict[str, Any] = {"kinds": self.kinds, "kernel": self.kernel}
        if self.ranked:
            found["ranks"] = tuple(sorted({rank for rank in (r // 4, r // 2, r, 2 * r) if rank >= 1}))
        return found


PICKS: dict[str, Pick] = {
    pick.name: pick
    for pick in (
        Pick("pick:lora", ALL_LINEAR, "lora"),
        Pick("pick:expected", ALL_LINEAR, "expected"),
        Pick("pick:attention", None, "lora"),
        Pick("pick:adam", ALL_LINEAR, "adam", new_feature=True),
        Pick("pick:ranks", ALL_LINEAR, "lora", ranked=True, new_feature=True),
        Pick("pick:kinds", ALL_LINEAR, "lora", everywhere=True),
    )
}


def kinds_everywhere(candidates: Sequence[Candidate], budget_params: int) -> dict[str, Any]:
    """The space "one set of kinds in every layer" within ``budget_params``, as ``NTKSelector`` keywords.

    ``candidates``: every candidate module at the rank the picks will have. ``layers_per_pick`` is the number of
    layers, so a pick is one kind set in every layer; ``kind_sets`` lists every nonempty set of the kinds found
    in every layer whose modules, in every layer, fit ``budget_params`` LoRA parameters (smallest sets first);
    ``kinds``: the kinds in those sets (the only candidates whose kernels are needed). ``BenchmarkError`` when
    no kind fits.
    """
    layers = sorted({c.layer for c in candidates})
    kinds = [kind for kind in dict.fromkeys(c.kind for c in candidates)
             if {c.layer for c in candidates if c.kind == kind} == set(layers)]  # fmt: skip
    cost = {kind: sum(c.num_params for c in candidates if c.kind == kind) for kind in kinds}
    fitting = [combo for size in range(1, len(kinds) + 1) for combo in itertools.combinations(kinds, size)
               if sum(cost[kind] for kind in combo) <= budget_params]  # fmt: skip
    if not fitting:
        raise BenchmarkError(f"no kind in every layer fits {budget_params:,} LoRA parameters (cheapest: "
                             f"{min(cost.values(), default=0):,})")  # fmt: skip
    used = tuple(kind for kind in kinds if any(kind in combo for combo in fitting))
    return {"layers_per_pick": len(layers), "kind_sets": fitting, "kinds": used}


class Selections:
    """Cached selections and KappaTune order of one output folder; the model is loaded only when needed."""

    def __init__(
        self,
        folder: Path,
        load_model: Callable[[], nn.Module],
        train: Sequence[Mapping[str, Any]],
        *,
        lora_config: Any,
        num_samples: int = 32,
        seed: int = 0,
        time_limit: float = 120.0,
        show_progress: bool = False,
    ) -> None:
        self.folder, self.load_model, self.train, self.lora_config = folder, load_model, train, lora_config
        self.num_samples, self.seed, self.time_limit, self.show_progress = num_samples, seed, time_limit, show_progress
        self.path = folder / RECORD
        self.record: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def _save(self) -> None:
        self.path.write_text(json.dumps(self.record, indent=1))

    def kappa_order(self) -> list[str]:
        """PEFT's ``find_kappa_target_modules(model, top_p=1.0)``: every linear module, best conditioned first."""
        if "kappa_order" not in self.record:
            from peft.helpers import find_kappa_target_modules

            start = time.perf_counter()
            found = find_kappa_target_modules(self.load_model(), top_p=1.0, show_progress=False)
            self.record["kappa_seconds"] = time.perf_counter() - start
            self.record["kappa_order"] = list(found["target_modules"])
            self._save()
        return list(self.record["kappa_order"])

    def select(
        self,
        pick: Pick,
        budget: str,
        budget_params: int,
        *,
        explicit: bool,
        everywhere: tuple[int, Sequence[Candidate]] | None = None,
    ) -> LoraConfig | None:
        """The config of ``pick``'s selection at ``budget`` (cached). None, logged, when the pick needs a library
        feature this version lacks and was not asked for ``explicit``-ly; asked for explicitly it raises.
        ``everywhere`` (needed by a ``Pick.everywhere`` pick): the budget's rank and the candidates at that rank;
        such a pick is selected afresh at each budget (its rank, hence its kernels, differ)."""
        key = f"{pick.name}@{budget}"
        folder = self._folder(pick, budget)
        if key in self.record and (folder / CONFIG_FILE).is_file():
            return LoraConfig.from_pretrained(str(folder))
        if pick.everywhere and everywhere is None:
            raise BenchmarkError(f"{pick.name} needs the budget's rank and its candidates")
        stored = None if pick.everywhere else self.stored(pick)
        if stored is not None:
            start = time.perf_counter()
            result = stored.rerank(param_budget=int(budget_params))
            seconds = time.perf_counter() - start
        else:
            try:
                result, seconds = self._fresh(pick, budget_params, everywhere)
            except (InvalidConfigError, TypeError) as err:
                if not pick.new_feature:
                    raise
                if explicit:
                    raise BenchmarkError(f"{pick.name} was asked for but is {UNAVAILABLE}: {err}") from err
                logger.warning("%s at %s skipped: %s (%s)", pick.name, budget, UNAVAILABLE, err)
                return None
        folder.mkdir(parents=True, exist_ok=True)
        result.lora_config.save_pretrained(str(folder))
        if stored is None:  # a rerank holds the stored kernels again: one copy per pick is enough
            (folder / KERNELS_FILE).write_text(json.dumps(result.to_dict()))
        (folder / "ranking.json").write_text(json.dumps([asdict(entry) for entry in result.ranking[:10]], indent=1))
        self.record[key] = {**describe_selection(result, seconds), "kernels_reused": stored is not None}
        self._save()
        logger.info("%s at %s: %s in %.1f s (exact: %s, kernels reused: %s)", pick.name, budget, result.space,
                    seconds, self.record[key]["exact"], stored is not None)  # fmt: skip
        return result.lora_config

    def _folder(self, pick: Pick, budget: str) -> Path:
        """``selection_<pick>_<budget>/`` (``budget`` may be a glob pattern)."""
        return self.folder / f"selection_{pick.name.removeprefix('pick:')}_{budget_slug(budget)}"

    def _fresh(
        self, pick: Pick, budget_params: int, everywhere: tuple[int, Sequence[Candidate]] | None = None
    ) -> tuple[SelectionResult, float]:
        """``pick``'s selection at ``budget_params`` computed now, and its seconds; ``InvalidConfigError`` or
        ``TypeError`` when this library version lacks a feature the pick needs. ``everywhere``: (rank,
        candidates at that rank) for the space of ``kinds_everywhere`` at that rank."""
        config, space = self.lora_config, {"param_budget": int(budget_params)}
        if everywhere is not None:
            rank, candidates = everywhere
            config, space = copy.deepcopy(config), kinds_everywhere(candidates, budget_params)
            config.r = rank
        selector = NTKSelector(self.load_model(), config, num_samples=self.num_samples, seed=self.seed,
                               objective="max_ratio", search="auto", time_limit=self.time_limit,
                               show_progress=self.show_progress, **{**pick.keywords(config.r), **space})  # fmt: skip
        start = time.perf_counter()
        result = selector.select(self.train)
        return result, time.perf_counter() - start

    def kernels(self, pick: Pick, budget: str, budget_params: int) -> SelectionResult:
        """``pick``'s kernels: the kept ``result.json`` of any of its budgets, else computed again at ``budget``
        (the seeds make them the same) and kept in its folder; the cached config and record stay as they are."""
        stored = self.stored(pick)
        if stored is not None:
            return stored
        result, seconds = self._fresh(pick, budget_params)
        folder = self._folder(pick, budget)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / KERNELS_FILE).write_text(json.dumps(result.to_dict()))
        logger.info("%s kernels computed again in %.1f s and kept in %s", pick.name, seconds, folder)
        return result

    def stored(self, pick: Pick) -> SelectionResult | None:
        """``pick``'s kernels from its selection at another budget (``result.json`` beside it), if one was kept and
        was computed with this folder's kernel, samples, seed, objective, time limit, LoRA rank, alpha and scaling
        (rsLoRA or not); None otherwise."""
        for path in sorted(self.folder.glob(f"{self._folder(pick, '*').name}/{KERNELS_FILE}")):
            try:
                stored = SelectionResult.load(path.parent)
            except InvalidInputError as err:
                logger.warning("%s ignored: %s", path, err)
                continue
            mine, theirs = self.lora_config, stored.lora_config
            same = (stored.kernel, stored.seed, len(stored.sample_indices), stored.settings.objective,
                    stored.settings.time_limit, theirs.r, theirs.lora_alpha, theirs.use_rslora) == (
                        pick.kernel, self.seed, self.num_samples, "max_ratio", self.time_limit, mine.r,
                        mine.lora_alpha, mine.use_rslora)  # fmt: skip
            if same:
                return stored
        return None

    def info(self, pick: str, budget: str) -> dict[str, Any] | None:
        """What ``selection.json`` holds on ``pick`` at ``budget`` (time, search, exactness), if selected."""
        return self.record.get(f"{pick}@{budget}")


def describe_selection(result: SelectionResult, seconds: float) -> dict[str, Any]:
    """Time, space, search and whether it proved the pick optimal (``result.certificate``)."""
    certificate = result.certificate
    return {
        "seconds": seconds,
        "space": result.space,
        "candidates": len(result.candidates),
        "search": None if certificate is None else certificate.search,
        "exact": None if certificate is None else bool(certificate.optimal),
        "stopped": None if certificate is None else certificate.stopped,
        "gap": None if certificate is None else certificate.gap,
        "nodes": None if certificate is None else certificate.nodes,
        "space_size": None if certificate is None else certificate.space_size,
        "top": list(result.ranking[0].modules),
        "top_params": result.ranking[0].num_params,
    }

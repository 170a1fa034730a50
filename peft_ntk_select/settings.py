"""The selector's settings, in two dataclasses validated once in ``__post_init__`` (PEFT's config style).

``KernelSettings`` says how the kernels are made (samples, candidates, engine, output, init, head, memory);
``RankingSettings`` says how subsets are ranked on given kernels (space, objective, sigma, search). A result
keeps its ranking settings, so ``SelectionResult.rerank`` changes only those and never recomputes a kernel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import torch

from .candidates import ALL_LINEAR, check_ranks
from .errors import InvalidConfigError
from .kernels.compute import validate_engine, validate_kernel
from .kernels.custody import check_device
from .kernels.head import HEADS
from .kernels.memory import parse_memory
from .kernels.outputs import OUTPUT_MODES
from .search import (
    DEFAULT_BEAM_WIDTH,
    DEFAULT_MAX_NODES,
    DEFAULT_MAX_SUBSETS,
    DEFAULT_OBJECTIVE,
    OBJECTIVES,
    Budget,
    ParamBudget,
    SearchResult,
    SearchSpace,
    Structured,
    admissible_space,
    check_search_options,
    check_sigma,
    get_objective,
    is_integer,
    resolve_search,
    search_subsets,
)

if TYPE_CHECKING:
    from .candidates import Candidate

BASES = ("head", "none")
MAX_SEED = 2**63  # torch's generators take seeds below this (the selector and the CLI check it)


def _positive(name: str, value: object, *, optional: bool = False, minimum: int = 1, hint: str = "") -> None:
    if optional and value is None:
        return
    if not is_integer(value) or value < minimum:  # type: ignore[operator]
        raise InvalidConfigError(f"{name}={value!r} must be an integer >= {minimum}{hint}")


def _seed(name: str, value: object, *, optional: bool = False) -> None:
    """A seed torch's generators take: an integer in [0, 2**63)."""
    _positive(name, value, optional=optional, minimum=0)
    if value is not None and value >= MAX_SEED:  # type: ignore[operator]
        raise InvalidConfigError(f"{name}={value!r} is too large for torch's generators: pass an integer below 2**63")


def _choice(name: str, value: object, choices: Sequence[object], meaning: str = "") -> None:
    if value not in choices:
        raise InvalidConfigError(f"unknown {name} {value!r}: choose one of {list(choices)}{meaning}")


@dataclass(frozen=True)
class KernelSettings:
    """How the kernels are made; see ``NTKSelector`` for each field. Validated on construction."""

    num_samples: int = 32
    seed: int = 0
    init_seed: int | None = None
    kernel: str = "lora"
    base: str = "head"
    head: str = "init"
    engine: str = "auto"
    output_mode: str | None = None
    kinds: tuple[str, ...] | None = None
    layers: tuple[int, ...] | None = None
    modules: tuple[str, ...] | None = None
    ranks: tuple[int, ...] | None = None
    chunk_size: int = 8
    max_memory: int | None = None
    dtype: torch.dtype | None = None
    device: str | torch.device | None = None
    show_progress: bool = True

    def __post_init__(self) -> None:
        _positive("num_samples", self.num_samples, minimum=2, hint=" (the paper uses 32)")
        for name in ("seed", "init_seed"):
            _seed(name, getattr(self, name), optional=name == "init_seed")
        check_device(self.device)
        validate_kernel(self.kernel)
        _choice("base", self.base, BASES, " ('head': the new head's kernel; 'none': K = 0)")
        _choice("head", self.head, HEADS)
        validate_engine(self.engine, allow_auto=True)
        if self.output_mode is not None:
            _choice("output mode", self.output_mode, OUTPUT_MODES, " or None")
        _positive("chunk_size", self.chunk_size, hint=" (samples per forward pass)")
        if self.dtype is not None and not (isinstance(self.dtype, torch.dtype) and self.dtype.is_floating_point):
            raise InvalidConfigError(f"dtype={self.dtype!r}: pass a floating-point torch dtype, e.g. torch.float32")
        for name in ("kinds", "layers", "modules"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _as_tuple(name, value))
        if self.max_memory is not None:
            object.__setattr__(self, "max_memory", parse_memory(self.max_memory))
        if self.ranks is not None:
            object.__setattr__(self, "ranks", check_ranks(self.ranks))

    @property
    def adapter_seed(self) -> int:
        """Seed of the LoRA A draw: ``init_seed``, else ``seed``."""
        return self.seed if self.init_seed is None else self.init_seed


def _as_tuple(name: str, value: object) -> tuple[Any, ...]:
    if name == "kinds" and value == ALL_LINEAR:
        return (ALL_LINEAR,)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        what = "one string" if isinstance(value, (str, bytes)) else "not a list"
        raise InvalidConfigError(
            f"{name}={value!r} is {what}: pass a list, kinds=['q', 'v'] (or 'all-linear'), layers=[0, 5]"
        )
    items = tuple(value)
    wrong = [item for item in items if not (is_integer(item) if name == "layers" else isinstance(item, str))]
    if wrong:
        expected = "layer indices (integers), e.g. layers=[0, 5]" if name == "layers" else "strings"
        raise InvalidConfigError(f"{name}={value!r} holds {wrong[:3]}: pass {expected}")
    return items


@dataclass(frozen=True)
class RankingSettings:
    """How subsets are ranked on given kernels; see ``NTKSelector`` for each field. Validated on construction.

    Give at most one of ``param_budget``, ``layers_per_pick`` and ``space``; otherwise the space is every
    subset of ``budget`` candidates.
    """

    budget: int = 3
    param_budget: int | None = None
    layers_per_pick: int | None = None
    kind_sets: tuple[tuple[str, ...], ...] = (("q", "v"),)
    space: SearchSpace | None = None
    objective: str = DEFAULT_OBJECTIVE
    sigma: float = 1e-4
    search: str = "auto"
    top: int | None = None
    max_nodes: int | None = DEFAULT_MAX_NODES
    time_limit: float | None = None
    beam_width: int = DEFAULT_BEAM_WIDTH
    max_subsets: int = DEFAULT_MAX_SUBSETS

    def __post_init__(self) -> None:
        chosen = [name for name in ("param_budget", "layers_per_pick", "space") if getattr(self, name) is not None]
        if len(chosen) > 1:
            raise InvalidConfigError(f"{' and '.join(chosen)} each define the search space: give only one")
        if self.space is not None and not isinstance(self.space, SearchSpace):
            raise InvalidConfigError(
                f"space={self.space!r} is not a search space: use Budget, ParamBudget or Structured from "
                "peft_ntk_select"
            )
        _choice("objective", self.objective, sorted(OBJECTIVES))
        check_search_options(self.search, self.top, self.beam_width, self.max_nodes, self.time_limit)
        object.__setattr__(self, "sigma", check_sigma(self.sigma))
        object.__setattr__(self, "kind_sets", tuple(_kind_set(kinds) for kinds in self.kind_sets))
        _positive("max_subsets", self.max_subsets)

    def space_for(self, candidates: Sequence[Candidate]) -> SearchSpace:
        """The admissible space over ``candidates``: ``InvalidConfigError`` when it does not fit them, and
        ``SearchSpaceTooLargeError`` when ``search="exhaustive"`` would score more than ``max_subsets`` subsets
        (so the selector fails at construction, before any kernel is computed)."""
        return self._resolved(candidates)[0]

    def _resolved(self, candidates: Sequence[Candidate]) -> tuple[SearchSpace, str, int | None]:
        """(space, search, top) over ``candidates``; an explicit search other than ``exhaustive`` keeps 10
        subsets when ``top`` is None (``resolve_search``)."""
        space = admissible_space(
            candidates, self.budget, self.param_budget, self.layers_per_pick, self.kind_sets, self.space
        )
        search, top = resolve_search(space, len(candidates), self.search, self.top, self.max_subsets, self.objective)
        return space, search, top

    def rank(
        self,
        contributions: torch.Tensor,
        base_kernel: torch.Tensor,
        candidates: Sequence[Candidate],
        targets: torch.Tensor | None,
    ) -> tuple[SearchSpace, SearchResult]:
        """Rank the admissible subsets of ``candidates``: S (L, n, n), K (n, n), targets Y (n, c) or None;
        returns the space searched and the ranking.

        The settings were validated on construction, so this goes straight to ``search_subsets``; only the
        objective's need for labels is checked here, where the targets are known.
        """
        space, search, top = self._resolved(candidates)
        return space, search_subsets(
            contributions, base_kernel, space, get_objective(self.objective, targets is not None), sigma=self.sigma,
            search=search, top=top, targets=targets, beam_width=self.beam_width, max_nodes=self.max_nodes,
            time_limit=self.time_limit, max_subsets=self.max_subsets,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; ``space`` as ``{"type": ..., **fields}`` for the built-in kinds (None otherwise)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "space"}
        data["kind_sets"] = [list(kinds) for kinds in self.kind_sets]
        data["space"] = _space_to_json(self.space)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankingSettings:
        """Inverse of ``to_dict``."""
        values = {**data, "kind_sets": tuple(tuple(kinds) for kinds in data["kind_sets"])}
        values["space"] = _space_from_json(data.get("space"))
        return cls(**values)


def _kind_set(kinds: Sequence[str] | str) -> tuple[str, ...]:
    return (kinds,) if isinstance(kinds, str) else tuple(kinds)


SPACE_KINDS: dict[str, type] = {kind.__name__: kind for kind in (Budget, ParamBudget, Structured)}


def _space_to_json(space: SearchSpace | None) -> dict[str, Any] | None:
    if space is None or type(space).__name__ not in SPACE_KINDS:
        return None
    return {"type": type(space).__name__, **asdict(space)}  # type: ignore[call-overload]


def _space_from_json(data: dict[str, Any] | None) -> SearchSpace | None:
    if data is None:
        return None
    kind = SPACE_KINDS[data["type"]]
    values = {key: tuple(map(_tuple_deep, value)) if isinstance(value, list) else value for key, value in data.items()}
    values.pop("type")
    return kind(**values)


def _tuple_deep(value: Any) -> Any:
    return tuple(_tuple_deep(item) for item in value) if isinstance(value, list) else value

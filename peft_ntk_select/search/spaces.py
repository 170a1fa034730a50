"""Admissible spaces: which subsets of candidates the search may pick (docs/science.md section 3).

Every S_l is PSD, so the spectral ratio never drops when a candidate is added and the unconstrained
argmin is the empty set: the search needs a constraint. Three kinds, as plain frozen dataclasses:

- ``Budget(k)``: exactly k candidates (``exact=False``: between 1 and k).
- ``ParamBudget(max_params, num_params, groups)``: nonempty subsets whose LoRA parameter counts sum to at
  most ``max_params`` (with grouped-query attention W_k/W_v have fewer parameters than W_q); with ``groups``,
  at most one candidate per group (rank allocation: the rank options of one module form a group).
- ``Structured(layers_per_pick, kind_sets, layer_of, kind_of, exclude)``: ``layers_per_pick`` layers
  times one kind set, as in the paper's tables ("W_q and W_v in layers {0, 5, 11}").

Every space answers, for ``num_candidates`` candidates (the L of S (L, n, n)):

- ``check(L)``: raise ``InvalidSpaceError`` (an ``InvalidConfigError``) if unusable, saying what to change;
- ``admits(subset, L)``: is this set of candidate indices admissible?
- ``extendable(subset, L)``: does some admissible subset strictly contain it?
- ``subsets(L)``: every admissible subset once, as a sorted tuple of indices (for brute force);
- ``size(L)``: how many admissible subsets there are;
- ``blocks(L)``: the space as one or more ``BlockProblem`` s, the form branch and bound and beam search walk.

Any object with these methods is a space (``SearchSpace``).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InvalidConfigError


class InvalidSpaceError(InvalidConfigError):
    """A search space is malformed, does not fit the candidates, or admits no subset."""


@dataclass(frozen=True)
class BlockProblem:
    """Choose between ``min_blocks`` and ``max_blocks`` of ``blocks`` (each a tuple of candidate indices)
    whose ``weights`` sum to at most ``capacity`` (no weight limit when ``weights`` is None), at most one
    block per group (``groups``: a group id per block; None: every block its own group); the subset picked
    is the union of the chosen blocks. Unions that are empty are not admissible.
    """

    blocks: tuple[tuple[int, ...], ...]
    min_blocks: int
    max_blocks: int
    weights: tuple[int, ...] | None = None
    capacity: int | None = None
    groups: tuple[int, ...] | None = None


@runtime_checkable
class SearchSpace(Protocol):
    """What ``rank_subsets`` needs from a space (see the module docstring)."""

    def check(self, num_candidates: int) -> None: ...

    def admits(self, subset: Iterable[int], num_candidates: int) -> bool: ...

    def extendable(self, subset: Iterable[int], num_candidates: int) -> bool: ...

    def subsets(self, num_candidates: int) -> Iterator[tuple[int, ...]]: ...

    def size(self, num_candidates: int) -> int: ...

    def blocks(self, num_candidates: int) -> tuple[BlockProblem, ...]: ...

    def describe(self) -> str: ...


def is_integer(value: object) -> bool:
    """True for ints and numpy integers, False for bools, floats and everything else."""
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def _positive_int(value: object, space: str, name: str, meaning: str) -> int:
    if not is_integer(value) or operator.index(value) < 1:  # type: ignore[arg-type]
        raise InvalidSpaceError(f"{space}({name}={value!r}): {name} is {meaning} and must be an integer >= 1")
    return operator.index(value)  # type: ignore[arg-type]


def _indices(subset: Iterable[int], num_candidates: int) -> tuple[int, ...] | None:
    """Sorted distinct indices, or None if any index repeats or lies outside [0, num_candidates)."""
    items = [operator.index(i) for i in subset]
    unique = tuple(sorted(set(items)))
    if len(unique) != len(items) or (unique and (unique[0] < 0 or unique[-1] >= num_candidates)):
        return None
    return unique


def _check_count(space: str, expected: int, num_candidates: int, what: str) -> None:
    if expected != num_candidates:
        raise InvalidSpaceError(
            f"{space} gives {what} for {expected} candidates, but there are {num_candidates}: "
            "build the space from the same candidate list as the kernels (e.g. from_candidates(...))"
        )


@dataclass(frozen=True)
class Budget:
    """Exactly ``k`` candidates; with ``exact=False``, any nonempty subset of at most ``k``."""

    k: int
    exact: bool = True

    def __post_init__(self) -> None:
        k = _positive_int(self.k, "Budget", "k", "the number of modules per subset")
        object.__setattr__(self, "k", k)
        if not isinstance(self.exact, bool):
            raise InvalidSpaceError(f"Budget(exact={self.exact!r}) must be True (exactly k) or False (at most k)")

    def describe(self) -> str:
        return f"Budget(k={self.k})" if self.exact else f"Budget(k<={self.k})"

    def check(self, num_candidates: int) -> None:
        if self.exact and self.k > num_candidates:
            raise InvalidSpaceError(
                f"{self.describe()} needs at least {self.k} candidates, there are {num_candidates}: "
                "lower k, use exact=False, or widen the candidates (kinds=, layers=, modules=)"
            )
        if num_candidates < 1:
            raise InvalidSpaceError("there are no candidates: widen the candidates (kinds=, layers=, modules=)")

    def _sizes(self, num_candidates: int) -> range:
        return range(self.k, self.k + 1) if self.exact else range(1, min(self.k, num_candidates) + 1)

    def admits(self, subset: Iterable[int], num_candidates: int) -> bool:
        indices = _indices(subset, num_candidates)
        return indices is not None and len(indices) in self._sizes(num_candidates)

    def extendable(self, subset: Iterable[int], num_candidates: int) -> bool:
        indices = _indices(subset, num_candidates)
        return indices is not None and len(indices) < min(self.k, num_candidates)

    def subsets(self, num_candidates: int) -> Iterator[tuple[int, ...]]:
        """By size, then lexicographic (exactly k: the order of ``itertools.combinations``)."""
        for size in self._sizes(num_candidates):
            yield from itertools.combinations(range(num_candidates), size)

    def size(self, num_candidates: int) -> int:
        return sum(math.comb(num_candidates, size) for size in self._sizes(num_candidates))

    def blocks(self, num_candidates: int) -> tuple[BlockProblem, ...]:
        sizes = self._sizes(num_candidates)
        singletons = tuple((i,) for i in range(num_candidates))
        return (BlockProblem(singletons, sizes[0], sizes[-1]),)


@dataclass(frozen=True)
class ParamBudget:
    """Nonempty subsets whose LoRA parameter counts sum to at most ``max_params``, at most one per group.

    ``num_params``: one count per candidate (``Candidate.num_params``; ``from_candidates`` reads them).
    ``groups``: one group id per candidate, or None (no two alike); candidates of one group exclude each
    other, e.g. the rank options of one module under rank allocation (``candidates.rank_options``).
    """

    max_params: int
    num_params: tuple[int, ...] = field(repr=False)
    groups: tuple[int, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        limit = _positive_int(self.max_params, "ParamBudget", "max_params", "the LoRA parameters allowed in total")
        object.__setattr__(self, "max_params", limit)
        if isinstance(self.num_params, (str, bytes)) or not isinstance(self.num_params, Iterable):
            raise InvalidSpaceError(
                f"ParamBudget(num_params={self.num_params!r}) must be a sequence with one LoRA parameter count "
                "per candidate: pass [c.num_params for c in candidates]"
            )
        counts = tuple(self.num_params)
        bad = [count for count in counts if not is_integer(count) or operator.index(count) < 1]
        if bad:
            raise InvalidSpaceError(
                f"ParamBudget(num_params=...) has counts {bad[:5]} that are not integers >= 1: pass the LoRA "
                "parameter count r * (in_features + out_features) of each candidate"
            )
        object.__setattr__(self, "num_params", tuple(operator.index(count) for count in counts))
        if self.groups is not None:
            groups = tuple(self.groups) if isinstance(self.groups, Iterable) else ()
            if len(groups) != len(counts) or not all(is_integer(group) for group in groups):
                raise InvalidSpaceError(
                    f"ParamBudget(groups=...) must give one integer group id per candidate ({len(counts)}), "
                    "e.g. the index of each candidate's module"
                )
            object.__setattr__(self, "groups", tuple(operator.index(group) for group in groups))

    @classmethod
    def from_candidates(cls, max_params: int, candidates: Sequence[Any]) -> ParamBudget:
        """The budget over ``candidates`` (anything with ``num_params`` and ``name``, e.g. ``Candidate``); the
        candidates of one module name (rank options) form a group."""
        names = [candidate.name for candidate in candidates]
        first = {name: names.index(name) for name in dict.fromkeys(names)}
        groups = tuple(first[name] for name in names) if len(first) < len(names) else None
        return cls(max_params, tuple(candidate.num_params for candidate in candidates), groups)

    def describe(self) -> str:
        per_group = ", one candidate per module" if self.groups is not None else ""
        return f"ParamBudget(max_params={self.max_params:,}{per_group})"

    def _group_of(self, num_candidates: int) -> tuple[int, ...]:
        return self.groups if self.groups is not None else tuple(range(num_candidates))

    def check(self, num_candidates: int) -> None:
        _check_count(self.describe(), len(self.num_params), num_candidates, "parameter counts")
        smallest = min(self.num_params, default=0)
        if num_candidates < 1 or smallest > self.max_params:
            raise InvalidSpaceError(
                f"{self.describe()} admits no subset: the smallest candidate has {smallest:,} LoRA parameters; "
                f"raise max_params to at least {smallest:,} or lower the LoRA rank"
            )

    def admits(self, subset: Iterable[int], num_candidates: int) -> bool:
        indices = _indices(subset, num_candidates)
        if indices is None or not indices or len(self.num_params) != num_candidates:
            return False
        group = self._group_of(num_candidates)
        distinct = len({group[i] for i in indices}) == len(indices)
        return distinct and sum(self.num_params[i] for i in indices) <= self.max_params

    def extendable(self, subset: Iterable[int], num_candidates: int) -> bool:
        indices = _indices(subset, num_candidates)
        if indices is None or len(self.num_params) != num_candidates:
            return False
        room = self.max_params - sum(self.num_params[i] for i in indices)
        group = self._group_of(num_candidates)
        taken = {group[i] for i in indices}
        if len(taken) < len(indices):
            return False
        return any(count <= room for i, count in enumerate(self.num_params) if group[i] not in taken)

    def subsets(self, num_candidates: int) -> Iterator[tuple[int, ...]]:
        """Lexicographic (depth first: (0,), (0, 1), (0, 1, 2), ...)."""
        counts, group = self.num_params, self._group_of(num_candidates)

        def extend(prefix: tuple[int, ...], start: int, room: int, taken: frozenset[int]) -> Iterator[tuple[int, ...]]:
            for i in range(start, num_candidates):
                if counts[i] <= room and group[i] not in taken:
                    subset = (*prefix, i)
                    yield subset
                    yield from extend(subset, i + 1, room - counts[i], taken | {group[i]})

        yield from extend((), 0, self.max_params, frozenset())

    def size(self, num_candidates: int) -> int:
        """Counted by dynamic programming over parameter totals, one group at a time (exact below 2**53)."""
        divisor = math.gcd(*self.num_params) if self.num_params else 1
        weights = [count // divisor for count in self.num_params]
        capacity = min(self.max_params // divisor, sum(weights))
        ways = np.zeros(capacity + 1, dtype=np.int64 if num_candidates < 62 else np.float64)
        ways[0] = 1
        members: dict[int, list[int]] = {}
        for i, group in enumerate(self._group_of(num_candidates)):
            members.setdefault(group, []).append(weights[i])
        for group_weights in members.values():
            grown = ways.copy()
            for weight in group_weights:
                if weight <= capacity:
                    grown[weight:] += ways[: capacity + 1 - weight]
            ways = grown
        return int(ways.sum()) - 1

    def blocks(self, num_candidates: int) -> tuple[BlockProblem, ...]:
        singletons = tuple((i,) for i in range(num_candidates))
        return (BlockProblem(singletons, 1, num_candidates, self.num_params, self.max_params, self.groups),)


def _kind_set(kinds: object) -> tuple[str, ...]:
    if isinstance(kinds, str):
        return (kinds,)
    if not isinstance(kinds, Iterable):
        raise InvalidSpaceError(f"kind set {kinds!r} must be a sequence of kinds such as ('q', 'v')")
    result = tuple(kinds)
    if not result or not all(isinstance(kind, str) for kind in result):
        raise InvalidSpaceError(f"kind set {kinds!r} must be a nonempty sequence of kind names such as ('q', 'v')")
    return result


@dataclass(frozen=True)
class Structured:
    """``layers_per_pick`` layers times one kind set, minus excluded candidates.

    A pick is a combination of ``layers_per_pick`` layers (among the layers of the candidates that are
    not excluded) and one entry of ``kind_sets``; its subset is every candidate whose layer is among the
    chosen layers and whose kind is in the kind set, minus ``exclude``. E.g. ``kind_sets=[("q", "v")]``
    and 3 layers per pick gives the paper's "W_q and W_v in layers {0, 5, 11}". ``layer_of`` and
    ``kind_of`` give each candidate's layer and kind (``from_candidates`` reads ``Candidate.layer/kind``);
    a string kind set is one kind (``"qkv"`` is GPT-2's fused projection). Picks that give the same
    subset count once; picks that give no candidate (everything excluded) are not admissible.
    """

    layers_per_pick: int
    kind_sets: tuple[tuple[str, ...], ...]
    layer_of: tuple[int, ...] = field(repr=False)
    kind_of: tuple[str, ...] = field(repr=False)
    exclude: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        per_pick = _positive_int(
            self.layers_per_pick, "Structured", "layers_per_pick", "the number of layers in each pick"
        )
        object.__setattr__(self, "layers_per_pick", per_pick)
        if isinstance(self.kind_sets, str) or not isinstance(self.kind_sets, Iterable):
            raise InvalidSpaceError(
                f"Structured(kind_sets={self.kind_sets!r}) must be a list of kind sets, e.g. [('q', 'v'), ('k',)]"
            )
        kind_sets = tuple(_kind_set(kinds) for kinds in self.kind_sets)
        if not kind_sets:
            raise InvalidSpaceError("Structured(kind_sets=[]) is empty: give at least one, e.g. [('q', 'v')]")
        as_sets = [frozenset(kinds) for kinds in kind_sets]
        repeated = sorted({kinds for kinds, seen in zip(kind_sets, as_sets, strict=True) if as_sets.count(seen) > 1})
        if repeated:
            raise InvalidSpaceError(f"kind sets {repeated} are listed more than once: list each kind set once")
        layer_of, kind_of = tuple(self.layer_of), tuple(self.kind_of)
        if len(layer_of) != len(kind_of):
            raise InvalidSpaceError(
                f"Structured gives {len(layer_of)} layers but {len(kind_of)} kinds: give one layer and one kind "
                "per candidate (or use Structured.from_candidates)"
            )
        if not all(is_integer(layer) for layer in layer_of) or not all(isinstance(k, str) for k in kind_of):
            raise InvalidSpaceError("Structured(layer_of=..., kind_of=...) must be integer layers and string kinds")
        layer_of = tuple(operator.index(layer) for layer in layer_of)
        exclude = tuple(sorted({operator.index(i) for i in self.exclude}))
        if exclude and (exclude[0] < 0 or exclude[-1] >= len(layer_of)):
            raise InvalidSpaceError(
                f"Structured(exclude={list(self.exclude)}) names candidates outside 0..{len(layer_of) - 1}: "
                "exclude candidate indices"
            )
        object.__setattr__(self, "kind_sets", kind_sets)
        object.__setattr__(self, "layer_of", layer_of)
        object.__setattr__(self, "kind_of", tuple(kind_of))
        object.__setattr__(self, "exclude", exclude)
        present = {kind for i, kind in enumerate(kind_of) if i not in set(exclude)}
        unknown = sorted({kind for kinds in kind_sets for kind in kinds} - present)
        if unknown:
            raise InvalidSpaceError(
                f"kinds {unknown} name no candidate (after exclusions); kinds present: {sorted(present)}: "
                "fix kind_sets or widen the candidates (kinds=)"
            )
        if per_pick > len(self.layers):
            raise InvalidSpaceError(
                f"Structured(layers_per_pick={per_pick}) but the candidates span {len(self.layers)} layers "
                f"{list(self.layers)}: lower layers_per_pick or widen the candidates (layers=)"
            )

    @classmethod
    def from_candidates(
        cls,
        layers_per_pick: int,
        kind_sets: Iterable[Iterable[str] | str],
        candidates: Sequence[Any],
        exclude: Iterable[int] = (),
    ) -> Structured:
        """The space over ``candidates`` (anything with ``layer`` and ``kind``, e.g. ``Candidate``)."""
        return cls(
            layers_per_pick,
            tuple(_kind_set(kinds) for kinds in kind_sets),
            tuple(candidate.layer for candidate in candidates),
            tuple(candidate.kind for candidate in candidates),
            tuple(exclude),
        )

    @property
    def layers(self) -> tuple[int, ...]:
        """The layers that can be picked: those of the candidates not excluded, ascending."""
        excluded = set(self.exclude)
        return tuple(sorted({layer for i, layer in enumerate(self.layer_of) if i not in excluded}))

    def describe(self) -> str:
        kinds = ", ".join("+".join(kind_set) for kind_set in self.kind_sets)
        return f"Structured({self.layers_per_pick} of {len(self.layers)} layers x one of [{kinds}])"

    def check(self, num_candidates: int) -> None:
        _check_count(self.describe(), len(self.layer_of), num_candidates, "layers and kinds")

    def _groups(self, kinds: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
        """Per pickable layer, the candidates of that layer with a kind in ``kinds``, not excluded."""
        excluded, wanted = set(self.exclude), set(kinds)
        return tuple(
            tuple(i for i, (at, kind) in enumerate(zip(self.layer_of, self.kind_of, strict=True))
                  if at == layer and kind in wanted and i not in excluded)
            for layer in self.layers
        )  # fmt: skip

    def blocks(self, num_candidates: int) -> tuple[BlockProblem, ...]:
        per_pick = self.layers_per_pick
        return tuple(BlockProblem(self._groups(kinds), per_pick, per_pick) for kinds in self.kind_sets)

    def subsets(self, num_candidates: int) -> Iterator[tuple[int, ...]]:
        """Kind sets in the given order, then layer combinations lexicographic; repeats and empties skipped."""
        seen: set[tuple[int, ...]] = set()
        for problem in self.blocks(num_candidates):
            for chosen in itertools.combinations(problem.blocks, self.layers_per_pick):
                subset = tuple(sorted(i for block in chosen for i in block))
                if subset and subset not in seen:
                    seen.add(subset)
                    yield subset

    def size(self, num_candidates: int) -> int:
        """Picks count: kind sets x C(layers, layers_per_pick), when no two picks can coincide; else counted."""
        groups = [problem.blocks for problem in self.blocks(num_candidates)]
        no_empty = all(group for blocks in groups for group in blocks)
        distinct = all(a != b for x, y in itertools.combinations(groups, 2) for a, b in zip(x, y, strict=True))
        if no_empty and distinct:
            return len(self.kind_sets) * math.comb(len(self.layers), self.layers_per_pick)
        return sum(1 for _ in self.subsets(num_candidates))

    def _matches(self, indices: tuple[int, ...], kinds: tuple[str, ...]) -> tuple[bool, bool]:
        """(admitted as a pick of ``kinds``, strictly inside some pick of ``kinds``)."""
        groups = dict(zip(self.layers, self._groups(kinds), strict=True))
        chosen = set(indices)
        if any(i in set(self.exclude) or self.kind_of[i] not in kinds for i in indices):
            return False, False
        touched = {self.layer_of[i] for i in indices}
        if len(touched) > self.layers_per_pick:
            return False, False
        full = all(set(groups[layer]) <= chosen for layer in touched)
        free = [layer for layer in self.layers if layer not in touched]
        spare = self.layers_per_pick - len(touched)
        empty_free = sum(1 for layer in free if not groups[layer])
        admitted = bool(indices) and full and empty_free >= spare
        strictly_inside = not full or (spare > 0 and empty_free < len(free))
        return admitted, strictly_inside

    def admits(self, subset: Iterable[int], num_candidates: int) -> bool:
        indices = _indices(subset, num_candidates)
        if indices is None or len(self.layer_of) != num_candidates:
            return False
        return any(self._matches(indices, kinds)[0] for kinds in self.kind_sets)

    def extendable(self, subset: Iterable[int], num_candidates: int) -> bool:
        indices = _indices(subset, num_candidates)
        if indices is None or len(self.layer_of) != num_candidates:
            return False
        return any(self._matches(indices, kinds)[1] for kinds in self.kind_sets)

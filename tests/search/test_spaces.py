"""Admissible spaces: each one lists, counts and recognises exactly the subsets its definition allows."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peft_ntk_select.errors import InvalidConfigError
from peft_ntk_select.search.spaces import Budget, InvalidSpaceError, ParamBudget, SearchSpace, Structured
from tests.search.strategies import search_spaces, structured_spaces

SPACES = settings(max_examples=60, deadline=None)


def powerset(num_candidates: int) -> list[tuple[int, ...]]:
    """Every subset of range(num_candidates), the empty one included, as sorted tuples."""
    items = range(num_candidates)
    return [subset for size in range(num_candidates + 1) for subset in itertools.combinations(items, size)]


def by_definition(space, num_candidates: int) -> set[tuple[int, ...]]:
    """The admissible subsets straight from the definition of each space, by filtering the powerset."""
    if isinstance(space, Budget):
        sizes = {space.k} if space.exact else set(range(1, space.k + 1))
        return {subset for subset in powerset(num_candidates) if len(subset) in sizes}
    if isinstance(space, ParamBudget):
        group = space.groups or tuple(range(num_candidates))
        return {
            s for s in powerset(num_candidates)
            if s and sum(space.num_params[i] for i in s) <= space.max_params and len({group[i] for i in s}) == len(s)
        }  # fmt: skip
    picks = set()
    layers = sorted({space.layer_of[i] for i in range(num_candidates) if i not in space.exclude})
    for kinds in space.kind_sets:
        for chosen in itertools.combinations(layers, space.layers_per_pick):
            subset = tuple(
                i for i in range(num_candidates)
                if space.layer_of[i] in chosen and space.kind_of[i] in kinds and i not in space.exclude
            )  # fmt: skip
            if subset:
                picks.add(subset)
    return picks


def union_of_blocks(space, num_candidates: int) -> set[tuple[int, ...]]:
    """The subsets the block problems describe, by trying every combination of blocks."""
    subsets = set()
    for problem in space.blocks(num_candidates):
        weights = problem.weights or (0,) * len(problem.blocks)
        groups = problem.groups or tuple(range(len(problem.blocks)))
        limit = math.inf if problem.capacity is None else problem.capacity
        for size in range(problem.min_blocks, problem.max_blocks + 1):
            for chosen in itertools.combinations(range(len(problem.blocks)), size):
                union = tuple(sorted(i for b in chosen for i in problem.blocks[b]))
                one_per_group = len({groups[b] for b in chosen}) == len(chosen)
                if union and sum(weights[b] for b in chosen) <= limit and one_per_group:
                    subsets.add(union)
    return subsets


@st.composite
def spaces_with_size(draw: st.DrawFn) -> tuple[int, object]:
    num_candidates = draw(st.integers(1, 8))
    return num_candidates, draw(search_spaces(num_candidates, max_size=10_000))


# every kind of space, against its definition


@SPACES
@given(spaces_with_size())
def test_subsets_lists_each_admissible_subset_once(case):
    num_candidates, space = case
    listed = list(space.subsets(num_candidates))
    assert len(listed) == len(set(listed))
    assert set(listed) == by_definition(space, num_candidates)
    assert all(list(subset) == sorted(subset) for subset in listed)


@SPACES
@given(spaces_with_size())
def test_size_counts_the_admissible_subsets(case):
    num_candidates, space = case
    assert space.size(num_candidates) == len(by_definition(space, num_candidates))


@SPACES
@given(spaces_with_size())
def test_admits_exactly_the_admissible_subsets(case):
    num_candidates, space = case
    admissible = by_definition(space, num_candidates)
    for subset in powerset(num_candidates):
        assert space.admits(subset, num_candidates) == (subset in admissible), subset


@SPACES
@given(spaces_with_size())
def test_extendable_means_some_admissible_subset_strictly_contains_it(case):
    num_candidates, space = case
    admissible = [set(subset) for subset in by_definition(space, num_candidates)]
    for subset in powerset(num_candidates):
        expected = any(set(subset) < other for other in admissible)
        assert space.extendable(subset, num_candidates) == expected, subset


@SPACES
@given(spaces_with_size())
def test_block_problems_describe_exactly_the_admissible_subsets(case):
    num_candidates, space = case
    assert union_of_blocks(space, num_candidates) == by_definition(space, num_candidates)


@SPACES
@given(spaces_with_size())
def test_every_space_passes_its_own_check_and_is_a_search_space(case):
    num_candidates, space = case
    space.check(num_candidates)
    assert isinstance(space, SearchSpace)


def test_admits_refuses_repeated_or_out_of_range_indices():
    for space in (Budget(2), ParamBudget(10, [1, 1, 1]), Structured(1, [("q",)], [0, 0, 1], ["q", "q", "q"])):
        assert not space.admits((0, 0), 3)
        assert not space.admits((0, 3), 3)
        assert not space.admits((-1, 0), 3)


# Budget


def test_budget_lists_combinations_in_lexicographic_order():
    assert list(Budget(2).subsets(4)) == list(itertools.combinations(range(4), 2))


def test_budget_at_most_lists_by_size_then_lexicographic():
    assert list(Budget(2, exact=False).subsets(3)) == [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]


def test_budget_accepts_numpy_integers():
    assert Budget(np.int64(2)).k == 2


@pytest.mark.parametrize("k", [0, -1, 1.5, "2", True, None])
def test_budget_rejects_a_k_that_is_not_a_positive_integer(k):
    with pytest.raises(InvalidSpaceError, match=r"Budget\(k=.*\): k is the number of modules per subset"):
        Budget(k)


def test_budget_check_rejects_more_modules_than_candidates():
    with pytest.raises(InvalidSpaceError, match="needs at least 5 candidates, there are 4: lower k"):
        Budget(5).check(4)


def test_budget_at_most_k_allows_more_than_the_candidates():
    Budget(5, exact=False).check(4)
    assert Budget(5, exact=False).size(4) == 15


def test_space_errors_are_invalid_config_errors():
    assert issubclass(InvalidSpaceError, InvalidConfigError)
    assert issubclass(InvalidSpaceError, ValueError)


# ParamBudget


def test_param_budget_size_counts_grouped_query_attention_shapes():
    q, kv = 8 * (576 + 576), 8 * (576 + 192)
    counts = [q, kv, kv] * 30
    space = ParamBudget(2 * q + kv, counts)
    # at most 2 q's with 1 k/v, or 1 q with 2 k/v's... counted by choosing how many of each kind
    expected = sum(
        math.comb(30, a) * math.comb(60, b)
        for a in range(4)
        for b in range(6)
        if (a or b) and a * q + b * kv <= 2 * q + kv
    )
    assert space.size(90) == expected


def test_param_budget_from_candidates_reads_their_counts():
    candidates = [SimpleNamespace(name=name, num_params=n) for name, n in zip("abc", (4, 2, 2), strict=True)]
    assert ParamBudget.from_candidates(5, candidates) == ParamBudget(5, (4, 2, 2))


def test_param_budget_from_rank_options_groups_each_module():
    options = [SimpleNamespace(name=name, num_params=n) for name, n in (("a", 2), ("a", 4), ("b", 2), ("b", 4))]
    space = ParamBudget.from_candidates(6, options)
    assert space.groups == (0, 0, 2, 2)
    assert sorted(space.subsets(4)) == [(0,), (0, 2), (0, 3), (1,), (1, 2), (2,), (3,)]
    assert space.size(4) == 7 and not space.admits((0, 1), 4) and "one candidate per module" in space.describe()


def test_param_budget_rejects_groups_of_another_length():
    with pytest.raises(InvalidSpaceError, match="one integer group id per candidate"):
        ParamBudget(10, [1, 2, 3], groups=(0, 0))


def test_param_budget_rejects_counts_for_other_candidates():
    with pytest.raises(InvalidSpaceError, match="parameter counts for 3 candidates, but there are 4"):
        ParamBudget(10, [1, 2, 3]).check(4)


def test_param_budget_that_fits_no_candidate_says_how_far_to_raise_it():
    with pytest.raises(InvalidSpaceError, match="raise max_params to at least 6,144"):
        ParamBudget(1000, [9216, 6144]).check(2)


@pytest.mark.parametrize("max_params", [0, -5, 2.5, None])
def test_param_budget_rejects_a_limit_that_is_not_a_positive_integer(max_params):
    with pytest.raises(InvalidSpaceError, match=r"max_params.* must be an integer >= 1"):
        ParamBudget(max_params, [1, 2])


@pytest.mark.parametrize("counts", [[1, 0], [1, -2], [1.5, 2], "12", 3])
def test_param_budget_rejects_counts_that_are_not_positive_integers(counts):
    with pytest.raises(InvalidSpaceError, match="num_params"):
        ParamBudget(10, counts)


# Structured

LAYER_OF = [0, 0, 0, 1, 1, 1, 2, 2, 2]
KIND_OF = ["q", "k", "v"] * 3


def test_structured_picks_the_kind_set_in_the_chosen_layers():
    space = Structured(2, [("q", "v"), ("k",)], LAYER_OF, KIND_OF)
    assert list(space.subsets(9)) == [(0, 2, 3, 5), (0, 2, 6, 8), (3, 5, 6, 8), (1, 4), (1, 7), (4, 7)]
    assert space.size(9) == 6


def test_structured_leaves_out_excluded_candidates():
    space = Structured(1, [("q", "v")], LAYER_OF, KIND_OF, exclude=(2, 3))
    assert list(space.subsets(9)) == [(0,), (5,), (6, 8)]


def test_structured_counts_picks_that_give_the_same_subset_once():
    # layer 1 has no k left: the picks of layers {0, 1} and {1, 2} give one module each
    space = Structured(2, [("k",)], LAYER_OF, KIND_OF, exclude=(4,))
    assert list(space.subsets(9)) == [(1,), (1, 7), (7,)]
    assert space.size(9) == 3


def test_structured_from_candidates_reads_layers_and_kinds():
    candidates = [SimpleNamespace(layer=layer, kind=kind) for layer, kind in zip(LAYER_OF, KIND_OF, strict=True)]
    space = Structured.from_candidates(2, [("q", "v"), "k"], candidates, exclude=[1])
    assert space == Structured(2, (("q", "v"), ("k",)), tuple(LAYER_OF), tuple(KIND_OF), (1,))


def test_structured_a_string_kind_set_is_one_kind():
    space = Structured(1, ["qkv"], [0, 1], ["qkv", "qkv"])
    assert list(space.subsets(2)) == [(0,), (1,)]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"layers_per_pick": 4}, r"layers_per_pick=4\) but the candidates span 3 layers \[0, 1, 2\]"),
        ({"layers_per_pick": 0}, "layers_per_pick is the number of layers in each pick"),
        ({"kind_sets": [("q", "o")]}, r"kinds \['o'\] name no candidate .*kinds present: \['k', 'q', 'v'\]"),
        ({"kind_sets": [("q", "v"), ("v", "q")]}, "listed more than once"),
        ({"kind_sets": []}, "is empty"),
        ({"kind_sets": [()]}, "nonempty sequence of kind names"),
        ({"kind_of": ["q"] * 8}, "9 layers but 8 kinds"),
        ({"exclude": (9,)}, "outside 0..8"),
        ({"exclude": (1, 4, 7), "kind_sets": [("k",)]}, r"kinds \['k'\] name no candidate \(after exclusions\)"),
    ],
)  # fmt: skip
def test_structured_rejects_a_malformed_space_and_says_what_to_change(kw, message):
    arguments = {"layers_per_pick": 1, "kind_sets": [("q", "v")], "layer_of": LAYER_OF, "kind_of": KIND_OF, **kw}
    with pytest.raises(InvalidSpaceError, match=message):
        Structured(**arguments)


def test_structured_check_rejects_a_space_built_for_other_candidates():
    with pytest.raises(InvalidSpaceError, match="for 9 candidates, but there are 10"):
        Structured(1, [("q",)], LAYER_OF, KIND_OF).check(10)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8).flatmap(lambda n: st.tuples(st.just(n), structured_spaces(n))))
def test_structured_size_is_the_number_of_distinct_picks(case):
    num_candidates, space = case
    assert space.size(num_candidates) == len(by_definition(space, num_candidates))

"""Stability of picks over seeds of the LoRA init and over sample draws."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from peft import LoraConfig

from peft_ntk_select import NTKSelector
from peft_ntk_select.diagnostics.stability import compare_runs, format_stability, kendall_tau
from peft_ntk_select.errors import InvalidConfigError
from tests.helpers import make_batch, make_model, model_snapshot
from tests.search.strategies import FAST

CONFIG = LoraConfig(r=2, lora_alpha=2, task_type="SEQ_CLS")


def direct_tau_b(x: list[float], y: list[float]) -> float:
    concordant = discordant = ties_x = ties_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        sx, sy = (x[i] > x[j]) - (x[i] < x[j]), (y[i] > y[j]) - (y[i] < y[j])
        if sx and sy:
            concordant += sx == sy
            discordant += sx != sy
        ties_x += sx == 0 and sy != 0
        ties_y += sy == 0 and sx != 0
    pairs_x, pairs_y = concordant + discordant + ties_y, concordant + discordant + ties_x
    return (concordant - discordant) / (pairs_x * pairs_y) ** 0.5


@FAST
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=30))
def test_kendall_tau_is_tau_b_with_ties(pairs):
    x, y = [float(a) for a, _ in pairs], [float(b) for _, b in pairs]
    tau = kendall_tau(torch.tensor(x), torch.tensor(y))
    if len(set(x)) == 1 or len(set(y)) == 1:
        assert tau != tau  # nan: no ranking to compare
    else:
        assert tau == pytest.approx(direct_tau_b(x, y), rel=1e-12)


def test_kendall_tau_of_the_same_and_of_the_reversed_order():
    scores = torch.arange(2000, dtype=torch.float64)  # more than one chunk of rows
    assert kendall_tau(scores, scores) == 1.0
    assert kendall_tau(scores, -scores) == -1.0


def _selector(**kw) -> NTKSelector:
    return NTKSelector(make_model("bert"), CONFIG, budget=2, num_samples=6, show_progress=False, **kw)


def test_identical_runs_agree_completely():
    selector, batch = _selector(), make_batch(n=6)
    result = selector.select(batch)
    report = compare_runs([result, result, result], [0, 0, 0], "lora", "init")
    assert report.taus == (1.0, 1.0, 1.0) and report.top1_agreement == 1.0
    assert report.frequency == dict.fromkeys(result.ranking[0].modules, 1.0)


def test_stability_varies_the_init_seed_on_the_same_samples_and_the_samples_with_the_same_init():
    selector, batch = _selector(), make_batch(n=10)
    before = model_snapshot(selector.model)
    runs = []
    original = selector._select
    selector._select = lambda *args: runs.append(args[1:]) or original(*args)
    reports = selector.stability(batch, seeds=(0, 1, 2), sample_draws=(3, 4), kernels=("lora",))
    assert model_snapshot(selector.model) == before
    # (sample seed, init seed, kernel, head seed): the init axis redraws the head with its seed
    assert runs == [(0, 0, "lora", 0), (0, 1, "lora", 1), (0, 2, "lora", 2), (3, 0, "lora", None),
                    (4, 0, "lora", None)]  # fmt: skip
    init, samples = reports
    assert (init.axis, init.seeds, len(init.taus)) == ("init", (0, 1, 2), 3)
    assert (samples.axis, samples.seeds, len(samples.taus)) == ("samples", (3, 4), 1)
    for report in reports:
        assert all(-1.0 <= tau <= 1.0 for tau in report.taus)
        assert sum(report.frequency.values()) == pytest.approx(2.0)  # each pick holds budget = 2 candidates
        assert len(report.picks) == len(report.seeds)
    assert "mean tau" in format_stability(reports)


def test_stability_of_the_expected_kernel_has_an_init_axis_only_when_the_head_is_redrawn():
    selector, batch = _selector(), make_batch(n=10)
    kept = selector.stability(batch, seeds=(0, 1), sample_draws=(0, 1), kernels=("lora", "expected"), redraw_head=False)
    assert [(r.kernel, r.axis) for r in kept] == [("lora", "init"), ("lora", "samples"), ("expected", "samples")]
    redrawn = selector.stability(batch, seeds=(0, 1), sample_draws=(), kernels=("expected",))
    assert [(r.kernel, r.axis) for r in redrawn] == [("expected", "init")]


def test_without_redrawing_the_head_the_expected_kernel_does_not_depend_on_the_init_seed():
    batch = make_batch(n=6)
    one, two = _selector(kernel="expected").select(batch), _selector(kernel="expected", init_seed=9).select(batch)
    assert torch.equal(one.contributions, two.contributions)


def test_different_init_seeds_give_different_lora_kernels_on_the_same_samples():
    batch = make_batch(n=6)
    one, two = _selector().select(batch), _selector(init_seed=5).select(batch)
    assert one.sample_indices == two.sample_indices and (one.init_seed, two.init_seed) == (0, 5)
    assert not torch.allclose(one.contributions, two.contributions)


def test_stability_refuses_an_unknown_kernel():
    with pytest.raises(InvalidConfigError, match="unknown kernel"):
        _selector().stability(make_batch(n=6), kernels=("full",))


@pytest.mark.parametrize("objective", [None, "min_kappa", "min_risk"])
def test_compare_runs_scores_the_given_subsets_of_any_size_on_each_runs_kernels_by_their_objective(objective):
    """Kendall tau is taken on the values of the objective the runs were ranked by (the default: the
    spectral ratio; labels included), each run's own kernels scoring the same subsets."""
    batch = make_batch(n=6)
    options = {} if objective is None else {"objective": objective}
    one, two = _selector(**options).select(batch), _selector(init_seed=1, **options).select(batch)
    subsets = [(0,), (1,), (0, 1), (2, 3), (1, 4, 5)]
    report = compare_runs([one, two], [0, 1], "lora", "init", subsets)
    names = [candidate.name for candidate in one.candidates]
    scored = [[r.score([names[i] for i in subset]) for subset in subsets] for r in (one, two)]
    if objective is None:
        assert all(entry.score == entry.ratio for entries in scored for entry in entries)
    values = [torch.tensor([entry.score for entry in entries], dtype=torch.float64) for entries in scored]
    assert report.taus == (pytest.approx(kendall_tau(*values), abs=1e-12),)
    assert report.picks == (one.ranking[0].modules, two.ranking[0].modules)


def test_stability_compares_every_subset_of_the_space_whatever_the_search_keeps(monkeypatch):
    import peft_ntk_select.diagnostics.stability as module

    compared = []
    original = module.compare_runs
    monkeypatch.setattr(module, "compare_runs", lambda *args: compared.append(args[4]) or original(*args))
    selector = _selector(search="exact", top=2)
    reports = selector.stability(make_batch(n=8), seeds=(0, 1), sample_draws=(), kernels=("lora",))
    assert len(reports) == 1 and len(compared[0]) == 15  # C(6, 2): all subsets, not the 2 kept

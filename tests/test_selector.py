"""NTKSelector end to end: the config it returns, the result it keeps, and the model it leaves alone."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch
from peft import LoraConfig, get_peft_model

from peft_ntk_select import InvalidConfigError, NoCandidatesError, NTKSelector, SelectionResult, compute_kernels
from peft_ntk_select.candidates import discover_candidates, placement_params
from peft_ntk_select.diagnostics.stability import compare_runs
from peft_ntk_select.errors import InvalidInputError
from tests.helpers import make_batch, make_model, model_snapshot


def select(family="bert", config=None, data=None, **kw):
    model = make_model(family)
    config = config or LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS")
    spaces = {"param_budget", "layers_per_pick", "space"} & set(kw)
    kw = {**({} if spaces else {"budget": 2}), "show_progress": False, **kw}
    return model, NTKSelector(model, config, **kw).select(data if data is not None else make_batch())


def adapted_modules(peft_model) -> set[str]:
    root = peft_model.get_base_model()
    return {name for name, module in root.named_modules() if hasattr(module, "lora_A")}


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
def test_peft_adapts_exactly_the_picked_modules(family):
    model, result = select(family)
    peft_model = get_peft_model(copy.deepcopy(model), result.lora_config)
    assert adapted_modules(peft_model) == set(result.ranking[0].modules)
    assert isinstance(result.lora_config, LoraConfig)


@pytest.mark.parametrize("rank", [2, 5])
def test_every_ranked_subset_config_adapts_its_modules_even_past_peft_suffix_compression(rank):
    model = make_model("bert", num_hidden_layers=12)
    config = LoraConfig(r=rank, lora_alpha=8, task_type="SEQ_CLS")
    result = NTKSelector(model, config, budget=1, kinds=("q", "k", "v"), show_progress=False).select(make_batch())
    all_names = [c.name for c in result.candidates]  # 36 names: PEFT compresses lists of >= 20
    peft_model = get_peft_model(copy.deepcopy(model), result.config_for(all_names))
    assert adapted_modules(peft_model) == set(all_names)
    assert sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n) == sum(
        c.num_params for c in result.candidates
    )


def test_gpt2_config_sets_fan_in_fan_out():
    _, result = select("gpt2", budget=1)
    assert result.lora_config.fan_in_fan_out is True


def test_users_config_is_not_modified():
    config = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS")
    before = copy.deepcopy(config.to_dict())
    _, result = select(config=config)
    assert config.to_dict() == before
    assert result.lora_config is not config and result.lora_config.r == 4


@pytest.mark.parametrize(("objective", "descending"), [(None, True), ("max_ratio", True), ("min_ratio", False)])
def test_ranking_is_sorted_and_complete_with_parameter_counts(objective, descending):
    """The default objective (max_ratio, chosen by benchmarks/which_objective.py) ranks the highest ratio
    first; min_ratio (Algorithm 2 as printed) the lowest."""
    _, result = select(budget=2, **({} if objective is None else {"objective": objective}))
    assert result.objective == (objective or "max_ratio")
    assert len(result.ranking) == 15
    ratios = [entry.ratio for entry in result.ranking]
    assert ratios == sorted(ratios, reverse=descending) and min(ratios) >= 1
    assert [entry.score for entry in result.ranking] == ratios
    by_name = {c.name: c for c in result.candidates}
    for entry in result.ranking:
        assert entry.num_params == sum(by_name[m].num_params for m in entry.modules)
        assert entry.kappa == pytest.approx((entry.lambda_max + 1e-4) / (entry.lambda_min + 1e-4))
        assert entry.risk_lower <= entry.risk_upper
    assert set(result.lora_config.target_modules) == set(result.ranking[0].modules)


def test_result_records_how_it_was_made():
    _, result = select(data=make_batch(n=6), num_samples=4, seed=7, engine="hooks", sigma=1e-3)
    made = (result.sigma, result.seed, result.engine, result.output_mode, result.budget)
    assert made == (1e-3, 7, "hooks", "trace", 2)
    assert len(result.sample_indices) == 4 and result.base_kernel.shape == (4, 4)
    assert result.contributions.shape == (len(result.candidates), 4, 4)
    assert {name: a.shape for name, a in result.adapter_init.items()} == {c.name: (4, 16) for c in result.candidates}


def test_json_round_trip_rebuilds_the_result_exactly():
    _, result = select()
    again = SelectionResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.ranking == result.ranking
    assert again.candidates == result.candidates
    assert torch.equal(again.contributions, result.contributions) and torch.equal(again.base_kernel, result.base_kernel)
    assert all(torch.equal(again.adapter_init[k], v) for k, v in result.adapter_init.items())
    assert again.lora_config == result.lora_config
    assert (again.settings, again.seed, again.sample_indices, again.engine) == (
        result.settings, result.seed, result.sample_indices, result.engine)  # fmt: skip


@pytest.mark.parametrize("data", [{"format": "something else"}, {"format": "peft_ntk_select.SelectionResult",
                                                                     "version": 99}, [1, 2]])  # fmt: skip
def test_foreign_dicts_are_refused(data):
    with pytest.raises(InvalidInputError):
        SelectionResult.from_dict(data)


def test_corrupt_result_is_refused():
    _, result = select()
    data = result.to_dict()
    del data["ranking"]
    with pytest.raises(InvalidInputError, match="corrupt"):
        SelectionResult.from_dict(data)


def test_apply_init_starts_training_where_the_kernel_was_measured():
    model, result = select()
    peft_model = get_peft_model(copy.deepcopy(model), result.lora_config)
    result.apply_init(peft_model)
    root = peft_model.get_base_model()
    for name in result.ranking[0].modules:
        layer = root.get_submodule(name)
        assert torch.equal(layer.lora_A["default"].weight, result.adapter_init[name].double())
        assert not layer.lora_B["default"].weight.any()
    batch = make_batch()
    with torch.no_grad():
        assert torch.allclose(peft_model(**{k: v for k, v in batch.items() if k != "labels"}).logits,
                              model(**{k: v for k, v in batch.items() if k != "labels"}).logits)  # fmt: skip


def test_apply_init_refuses_a_model_without_lora():
    model, result = select()
    with pytest.raises(InvalidConfigError, match="get_peft_model"):
        result.apply_init(model)


def test_same_seed_same_result_and_seed_changes_lora_draw():
    _, first = select(seed=0)
    _, again = select(seed=0)
    _, other = select(seed=1)
    assert first.ranking == again.ranking
    assert not torch.equal(other.contributions, first.contributions)


def test_tokenized_dataset_gives_the_same_kernels_as_the_dict():
    batch = make_batch(n=5)
    _, from_dict = select(data=batch)
    _, from_dataset = select(data=datasets.Dataset.from_dict({k: v.tolist() for k, v in batch.items()}))
    assert torch.allclose(from_dataset.contributions, from_dict.contributions, rtol=1e-12, atol=0)


def test_causal_lm_defaults_to_loss_output_and_zero_base_kernel():
    model = make_model("llama_lm")
    result = NTKSelector(model, LoraConfig(r=2, lora_alpha=4, task_type="CAUSAL_LM"), budget=1,
                         show_progress=False).select(make_batch(labels=None))  # fmt: skip
    assert result.output_mode == "loss"
    assert not result.base_kernel.any()
    assert result.ranking[0].risk is None


def test_device_argument_runs_there_and_leaves_the_model_where_it_was():
    model = make_model("bert")
    before = model_snapshot(model)
    NTKSelector(model, LoraConfig(r=2, task_type="SEQ_CLS"), budget=1, device="cpu", show_progress=False).select(
        make_batch()
    )
    assert model_snapshot(model) == before


def user_model():
    """A model as users hold it: training mode, a frozen embedding, a forward hook, a stale grad."""
    model = make_model("bert").train()
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    model.bert.encoder.layer[0].register_forward_hook(lambda module, args, output: None)
    model.classifier.weight.grad = torch.ones_like(model.classifier.weight)
    return model


@pytest.mark.parametrize("engine", ["func", "hooks", "reference"])
def test_model_is_unchanged_after_select(engine):
    model = user_model()
    before = model_snapshot(model)
    NTKSelector(model, LoraConfig(r=2, task_type="SEQ_CLS"), budget=1, engine=engine, show_progress=False).select(
        make_batch()
    )
    assert model_snapshot(model) == before
    assert torch.equal(model.classifier.weight.grad, torch.ones_like(model.classifier.weight))


@pytest.mark.parametrize("engine", ["func", "hooks", "reference"])
def test_model_is_unchanged_when_an_error_is_raised_mid_way(engine):
    model = make_model("bert", num_labels=3).train()
    before = model_snapshot(model)
    selector = NTKSelector(model, LoraConfig(r=2, task_type="SEQ_CLS"), budget=1, engine=engine, output_mode="margin",
                           show_progress=False)  # fmt: skip
    with pytest.raises(InvalidConfigError, match="binary classifier"):
        selector.select(make_batch(labels=3))  # raised inside the forward pass, hooks attached, eval mode on
    assert model_snapshot(model) == before


def test_save_and_load_round_trip_and_write_a_loadable_config(tmp_path):
    _, result = select()
    result.save(tmp_path)
    again = SelectionResult.load(tmp_path)
    assert again.ranking == result.ranking and torch.equal(again.targets, result.targets)
    assert set(LoraConfig.from_pretrained(tmp_path).target_modules) == set(result.ranking[0].modules)


@pytest.mark.parametrize(
    ("content", "message"), [("{not json", "not valid JSON"), ('{"a": 1}', "not a peft_ntk_select")]
)
def test_load_refuses_corrupt_and_foreign_files(tmp_path, content, message):
    (tmp_path / "result.json").write_text(content)
    with pytest.raises(InvalidInputError, match=message):
        SelectionResult.load(tmp_path)


def test_load_refuses_a_folder_without_result(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        SelectionResult.load(tmp_path)


def test_score_of_a_ranked_subset_equals_its_ranking_entry():
    _, result = select()
    for entry in result.ranking[:3] + result.ranking[-2:]:
        assert result.score(entry.modules) == entry


def test_plot_writes_a_png(tmp_path):
    _, result = select()
    figure = result.plot(tmp_path / "report.png", top=3)
    assert (tmp_path / "report.png").stat().st_size > 1000
    assert len(figure.axes) == 3 and len(figure.axes[0].get_lines()) == 4  # 3 picks + K, ratios, table
    table = figure.axes[2].tables[0]
    assert table[0, 4].get_text().get_text() == "kappa"
    assert table[1, 4].get_text().get_text() == f"{result.ranking[0].kappa:.4g}"


PLOT_IN_A_FRESH_PROCESS = """
import sys
from tests.test_selector import select
_, result = select()
result.plot(sys.argv[1])
print("matplotlib.pyplot" in sys.modules)
"""


def test_plotting_leaves_matplotlibs_global_state_alone(tmp_path):
    """No pyplot import, so no backend is chosen or switched in the user's process (e.g. a notebook's)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", PLOT_IN_A_FRESH_PROCESS, str(tmp_path / "r.png")], cwd=root,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False" and (tmp_path / "r.png").stat().st_size > 1000


def test_plot_adds_the_stability_and_linearity_panels_when_given(tmp_path):
    _, result = select()
    report = compare_runs([result, result], [0, 1], "lora", "init")
    curve = SimpleNamespace(radii=[0.0, 1.0, 2.0], l_avg=[1.0, 1.1, 1.3], l_upper=[1.2, 1.4, 1.9])
    figure = result.plot(tmp_path / "report.png", top=3, stability=[report], linearity=curve)
    assert len(figure.axes) == 5
    stability_axis, linearity_axis = figure.axes[3], figure.axes[4]
    assert [bar.get_height() for bar in stability_axis.patches] == [1.0, 1.0]  # mean tau, top-1 agreement
    assert list(linearity_axis.get_lines()[1].get_ydata()) == curve.l_upper


def test_large_space_switches_to_exact_search_with_the_same_optimum():
    _, exhaustive = select(budget=3, search="exhaustive")
    _, automatic = select(budget=3, max_subsets=10)
    assert automatic.certificate.search == "exact" and automatic.certificate.optimal
    assert automatic.ranking == exhaustive.ranking[:10]
    assert exhaustive.certificate.search == "exhaustive" and len(exhaustive.ranking) == 20


@pytest.mark.parametrize(
    ("kw", "space"),
    [
        ({"param_budget": 2 * 4 * 32}, "ParamBudget"),
        ({"layers_per_pick": 1, "kind_sets": [("q", "v"), ("k",)]}, "Structured"),
    ],
)
def test_parameter_and_structured_spaces_reach_the_result(kw, space):
    _, result = select(**kw)
    assert result.space.startswith(space) and result.budget is None
    by_name = {c.name: c for c in result.candidates}
    for entry in result.ranking:
        if "param_budget" in kw:
            assert entry.num_params <= kw["param_budget"]
        else:
            layers = {by_name[m].layer for m in entry.modules}
            kinds = {by_name[m].kind for m in entry.modules}
            assert len(layers) == 1 and kinds in ({"q", "v"}, {"k"})
    again = SelectionResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.certificate == result.certificate and again.space == result.space


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
def test_all_linear_candidates_give_configs_peft_adapts_exactly(family):
    model = make_model(family)
    before = model_snapshot(model)
    config = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS")
    result = NTKSelector(model, config, kinds="all-linear", budget=3, show_progress=False).select(make_batch())
    assert model_snapshot(model) == before
    assert {c.kind for c in result.candidates} >= {"o", "up", "down"}
    for entry in result.ranking[:5]:
        peft_model = get_peft_model(copy.deepcopy(model), result.config_for(entry.modules))
        assert adapted_modules(peft_model) == set(entry.modules)


def test_a_placement_as_param_budget_means_its_parameters_in_every_layer():
    """param_budget=("q", "v"): PEFT's default placement's LoRA parameters at the config's r (BERT tiny: 2 layers,
    q and v of 16 -> 16 at r = 4: 2 x 2 x 4 x 32 = 512); branch and bound is exact in that space."""
    _, result = select(kinds="all-linear", param_budget=("q", "v"))
    assert result.space == "ParamBudget(max_params=512)"
    assert all(entry.num_params <= 512 for entry in result.ranking)
    assert any(entry.num_params == 512 for entry in result.ranking)
    _, exact = select(kinds="all-linear", param_budget=("q", "v"), search="exact", top=5)
    assert exact.ranking == result.ranking[:5] and exact.certificate.optimal


def test_a_placement_the_model_lacks_even_in_part_is_refused_with_the_kinds_it_has():
    """GPT-2 fuses q, k and v (kind qkv); BERT has no gate: a placement naming a missing kind is refused rather than
    counted as the smaller placement it would be; "all-linear" is every kind the model has."""
    with pytest.raises(NoCandidatesError, match=r"param_budget=\('q', 'v'\).*lacks.*kind qkv"):
        select("gpt2", param_budget=("q", "v"))
    with pytest.raises(NoCandidatesError, match=r"needs kinds \['gate'\]"):
        select("bert", param_budget=("q", "v", "gate"))
    model = make_model("bert")
    linear = sum(c.num_params for c in discover_candidates(model, rank=8, kinds="all-linear"))
    assert placement_params(model, "all-linear", 8) == placement_params(model, ["all-linear"], 8) == linear
    assert placement_params(make_model("gpt2"), ("qkv",), 4) == 2 * 4 * (16 + 48)  # 2 layers of c_attn 16 -> 48


def test_kinds_the_model_lacks_are_named_in_a_warning_and_the_others_used(caplog):
    config = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS")
    with caplog.at_level("WARNING", logger="peft_ntk_select"):
        selector = NTKSelector(make_model("bert"), config, kinds=("q", "gate"), budget=1)
    assert {c.kind for c in selector.candidates} == {"q"}
    assert "kinds ['gate'] match no candidate module" in caplog.text and "only ['q'] are used" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="peft_ntk_select"):
        NTKSelector(make_model("bert"), config, kinds="all-linear", budget=1)  # no gate on BERT: not asked by name
        NTKSelector(make_model("bert"), config, budget=1)  # the default attention kinds include GPT-2's qkv
    assert "match no candidate" not in caplog.text


@pytest.mark.parametrize("family", ["bert", "llama", "gpt2"])
def test_the_adam_kernel_ranks_by_its_symmetric_part_and_keeps_the_asymmetric_kernels(family):
    """kernel="adam": result.base_kernel / contributions are compute_kernels' SignGD kernels as defined
    (asymmetric); every subset's ratio is that of the symmetric parts; the model is left as it was."""
    model = make_model(family)
    before = model_snapshot(model)
    config = LoraConfig(r=4, lora_alpha=8, task_type="SEQ_CLS")
    batch = make_batch()
    result = NTKSelector(model, config, budget=2, kernel="adam", show_progress=False).select(batch)
    assert model_snapshot(model) == before and result.kernel == "adam"
    base, parts, _ = compute_kernels(model, batch, result.candidates, config, output_mode="trace", kernel="adam")
    torch.testing.assert_close(result.contributions, parts, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(result.base_kernel, base, rtol=1e-12, atol=0.0)
    assert not torch.allclose(parts, parts.transpose(-1, -2))  # asymmetric, as defined
    symmetric = 0.5 * (base + base.T)
    for entry in result.ranking[:3]:
        indices = [result.candidates.index(next(c for c in result.candidates if c.name == m)) for m in entry.modules]
        subset = symmetric + 0.5 * (parts[indices] + parts[indices].transpose(-1, -2)).sum(0)
        top, base_top = torch.linalg.eigvalsh(subset)[-1], torch.linalg.eigvalsh(symmetric)[-1]
        ratio = (top + result.sigma) / (base_top + result.sigma)
        assert entry.ratio == pytest.approx(float(ratio), rel=1e-10)

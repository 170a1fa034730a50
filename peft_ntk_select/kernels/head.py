"""LP-FT head: fit the new classification head by linear probing before the kernels are taken.

Tomihari & Sato (2024) show that linear probing first (LP-FT) changes the head's norm and so the NTK of
everything below it. ``head="probe"`` fits the head's output layer (the last Linear of the modules PEFT
trains for ``SEQ_CLS``) by L2-regularised multinomial logistic regression on the frozen features of the
n samples, then computes the kernels with that head. The user's model is never changed: the fitted
weights are swapped in for the kernel pass and the original tensors are put back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from accelerate.utils import send_to_device
from peft import LoraConfig
from torch import nn

from ..errors import InvalidConfigError, InvalidInputError
from .base import base_module_names
from .forward import evaluation_mode, logits_of, model_dtype_device, model_inputs, require_weights_in_memory

HEADS = ("init", "probe")
PROBE_PENALTY = 1e-2  # lambda in mean cross-entropy + lambda / 2 ||W||^2 (the bias is not penalised)


@dataclass(frozen=True)
class HeadFit:
    """A head fitted by linear probing: the output layer's name, its weight (c, h) and bias (c,) or None,
    the probe's accuracy on the samples it was fitted on, and the weight norm before and after."""

    layer: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    train_accuracy: float
    norm_before: float
    norm_after: float

    def values(self) -> dict[str, torch.Tensor]:
        """The fitted tensors by parameter name, for ``swapped_parameters``."""
        bias = {} if self.bias is None else {f"{self.layer}.bias": self.bias}
        return {f"{self.layer}.weight": self.weight, **bias}

    def summary(self) -> dict[str, float | str]:
        return {"layer": self.layer, "train_accuracy": self.train_accuracy, "norm_before": self.norm_before,
                "norm_after": self.norm_after}  # fmt: skip


def output_layer(model: nn.Module, config: LoraConfig) -> str:
    """Name of the head's output layer: the last ``nn.Linear`` inside the modules trained in every pick."""
    heads = base_module_names(model, config)
    layers = [
        name
        for top in heads
        for name, module in model.get_submodule(top).named_modules(prefix=top)
        if isinstance(module, nn.Linear)
    ]
    if not layers:
        raise InvalidConfigError(
            "head='probe' needs a classification head (task_type='SEQ_CLS' with a Linear 'classifier' or "
            f"'score', or modules_to_save naming it); found {heads or 'none'}: use head='init'"
        )
    return layers[-1]


def _features(model: nn.Module, batch: dict[str, torch.Tensor], layer: nn.Linear) -> torch.Tensor:
    """Input of ``layer`` (n, h) at each sample's logits, float64: the row whose output the model returns.

    Decoder classifiers apply the layer to every token and keep one: the kept row is found by matching
    the layer's outputs against the logits, so no pooling rule is assumed.
    """
    captured: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        captured["inputs"], captured["outputs"] = args[0].detach(), output.detach()

    _, device = model_dtype_device(model)
    handle = layer.register_forward_hook(hook)
    try:
        with evaluation_mode(model), torch.no_grad():
            logits = logits_of(model(**model_inputs(send_to_device(batch, device)))).detach()
    finally:
        handle.remove()
    inputs, outputs = captured["inputs"], captured["outputs"]
    if outputs.shape == logits.shape:
        return inputs.double()
    rows = inputs.reshape(inputs.shape[0], -1, inputs.shape[-1])
    distance = (outputs.reshape(outputs.shape[0], -1, outputs.shape[-1]) - logits[:, None, :]).abs().amax(-1)
    position = distance.argmin(1)
    if not bool((distance.gather(1, position[:, None]) == 0).all()):
        raise InvalidConfigError("cannot tell which output row of the head's output layer the model returns as "
                                 "logits: use head='init'")  # fmt: skip
    return rows[torch.arange(rows.shape[0]), position].double()


def fit_head(model: nn.Module, batch: dict[str, torch.Tensor], config: LoraConfig, labels: torch.Tensor) -> HeadFit:
    """Fit the head's output layer on the frozen features of ``batch`` (n samples) and class ``labels`` (n,).

    Multinomial logistic regression, mean cross-entropy + ``PROBE_PENALTY`` / 2 ||W||^2, by L-BFGS in
    float64 from the current weights. The model is not modified.
    """
    if labels is None or labels.dim() != 1 or labels.is_floating_point():
        raise InvalidInputError("head='probe' needs integer class labels in the data ('labels' or 'label')")
    require_weights_in_memory(model, "head='probe'")
    name = output_layer(model, config)
    layer = model.get_submodule(name)
    features = _features(model, batch, layer)
    if int(labels.max()) >= layer.out_features or int(labels.min()) < 0:
        raise InvalidInputError(
            f"labels must lie in [0, {layer.out_features - 1}] for a head with {layer.out_features} outputs"
        )
    labels = labels.to(features.device)
    weight = layer.weight.detach().double().clone().requires_grad_()
    bias = None if layer.bias is None else layer.bias.detach().double().clone().requires_grad_()
    parameters = [weight] if bias is None else [weight, bias]
    optimizer = torch.optim.LBFGS(
        parameters, max_iter=1000, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe"
    )

    def logits() -> torch.Tensor:
        return features @ weight.T + (0.0 if bias is None else bias)

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = nn.functional.cross_entropy(logits(), labels) + 0.5 * PROBE_PENALTY * weight.pow(2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(loss)
    with torch.no_grad():
        accuracy = float((logits().argmax(1) == labels).double().mean())
    return HeadFit(
        layer=name,
        weight=weight.detach().to(layer.weight.dtype),
        bias=None if bias is None else bias.detach().to(layer.bias.dtype),
        train_accuracy=accuracy,
        norm_before=float(layer.weight.detach().double().norm()),
        norm_after=float(weight.detach().norm()),
    )


def redraw_head(model: nn.Module, config: LoraConfig, seed: int) -> dict[str, torch.Tensor]:
    """Fresh values for the head's parameters (the modules trained in every pick), drawn with ``seed`` as
    transformers initialises a new head: Linear weights N(0, initializer_range^2), biases 0.

    Returns {parameter name: tensor}, for ``swapped_parameters``; the model is not modified.
    """
    std = float(getattr(getattr(model, "config", None), "initializer_range", 0.02))
    generator = torch.Generator().manual_seed(seed)
    values = {}
    for top in base_module_names(model, config):
        for name, module in model.get_submodule(top).named_modules(prefix=top):
            if isinstance(module, nn.Linear):
                weight = torch.randn(module.weight.shape, generator=generator, dtype=torch.float64) * std
                values[f"{name}.weight"] = weight.to(module.weight.dtype)
                if module.bias is not None:
                    values[f"{name}.bias"] = torch.zeros_like(module.bias)
    if not values:
        raise InvalidConfigError("no new head to redraw (no Linear layer in the head modules): use redraw_head=False")
    return values


@contextmanager
def swapped_parameters(model: nn.Module, values: dict[str, torch.Tensor] | None) -> Iterator[None]:
    """Inside the block the named parameters hold ``values`` (None: no change); the originals come back on exit."""
    if not values:
        yield
        return
    parameters = dict(model.named_parameters())
    originals = {name: parameters[name].detach().clone() for name in values}
    try:
        with torch.no_grad():
            for name, value in values.items():
                parameters[name].copy_(value)
        yield
    finally:
        with torch.no_grad():
            for name, original in originals.items():
                parameters[name].copy_(original)

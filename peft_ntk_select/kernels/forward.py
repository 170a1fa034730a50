"""Running the user's model for kernels: eval mode restored afterwards, frozen weights, model inputs, masks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call

from ..errors import InvalidConfigError, KernelComputationError

MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Put every module in eval mode (dropout off) and restore each module's own flag on exit."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def frozen_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached parameters and buffers, for ``functional_call`` without autograd on the base weights."""
    state = {name: param.detach() for name, param in model.named_parameters()}
    state.update(dict(model.named_buffers()))
    return state


def is_dispatched(model: nn.Module) -> bool:
    """True when accelerate placed hooks on the model (``device_map`` dispatch, ``cpu_offload``, disk offload):
    its weights may sit on several devices or on ``meta`` until each module runs."""
    return any(hasattr(module, "_hf_hook") for module in model.modules())


def untraceable_reason(model: nn.Module) -> str | None:
    """Why ``torch.func`` cannot trace the model (None when it can): accelerate's dispatch hooks move weights
    during the forward pass, transformers' input require-grads hooks (gradient checkpointing,
    ``enable_input_require_grads``) call ``requires_grad_`` inside the transform, and full backward hooks
    (``register_full_backward_hook``) wrap tensors in a way ``vmap`` refuses."""
    if is_dispatched(model):
        return "the model is dispatched or offloaded by accelerate"
    if getattr(model, "_require_grads_hooks", None) or hasattr(model, "_require_grads_hook"):
        return "the model has input require-grads hooks (gradient checkpointing or enable_input_require_grads)"
    hooked = [name or "the model" for name, module in model.named_modules()
              if module._backward_hooks or module._backward_pre_hooks]  # fmt: skip
    if hooked:
        return f"{hooked[0]} has a full backward hook (register_full_backward_hook)"
    return None


def require_weights_in_memory(model: nn.Module, what: str) -> None:
    """``InvalidConfigError`` when accelerate offloaded weights to ``meta`` (``cpu_offload``, disk offload):
    ``what`` reads or perturbs the weights themselves, which then are not there."""
    if any(param.device.type == "meta" for param in model.parameters()):
        raise InvalidConfigError(
            f"{what} needs the model's weights in memory, but accelerate offloaded some to 'meta' "
            "(cpu_offload or disk offload): run it on the model loaded without offloading, or place it with a "
            "device_map that keeps every weight on a device"
        )


def frozen_forward(model: nn.Module) -> Callable[[dict[str, torch.Tensor]], object]:
    """``kwargs -> model output`` with the base weights out of autograd.

    A plain model runs under ``functional_call`` with detached weights. A dispatched model is called as is,
    since accelerate's hooks swap its weights in module by module; its weights then stay in the graph, but
    the kernels take gradients of the probes only (``autograd.grad``), so nothing is stored on them.
    """
    if is_dispatched(model):
        return lambda kwargs: model(**kwargs)
    state = frozen_state(model)
    return lambda kwargs: functional_call(model, state, args=(), kwargs=kwargs)


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keyword arguments the model receives (labels stay out: the loss is computed here)."""
    return {key: batch[key] for key in MODEL_INPUT_KEYS if key in batch}


def logits_of(output: object) -> torch.Tensor:
    """The ``logits`` of a transformers model output, or a typed error for a model without a head."""
    logits = getattr(output, "logits", None)
    if logits is None:
        raise KernelComputationError(
            f"the model returned {type(output).__name__} without logits: pass a model with a task head "
            "(e.g. AutoModelForSequenceClassification or AutoModelForCausalLM), not a bare encoder"
        )
    return logits


def is_causal(model: nn.Module) -> bool:
    """True when the model's attention layers are causal (decoder-only models)."""
    return any(getattr(module, "is_causal", False) is True for module in model.modules())


def additive_mask(mask: torch.Tensor, *, causal: bool, dtype: torch.dtype) -> torch.Tensor:
    """A ready 4D additive attention mask from a padding mask (b, T): (b, 1, 1, T) or causal (b, 1, T, T).

    transformers uses a 4D mask as given, which avoids its data-dependent mask code under ``vmap``.
    """
    keep = mask[:, None, None, :].bool()
    if causal:
        length = mask.shape[-1]
        keep = keep & torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    return torch.zeros(keep.shape, dtype=dtype, device=mask.device).masked_fill(~keep, torch.finfo(dtype).min)


def accepts_position_ids(model: nn.Module) -> bool:
    """True when the model's forward takes ``position_ids``."""
    return "position_ids" in inspect.signature(model.forward).parameters


def causal_position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions 0.. of the real tokens of right-padded rows (b, T), as decoders derive them from the mask."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def feature_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of probes and per-sample gradients: float32 for half-precision models, else the model's."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def check_padding_token(model: nn.Module, batch: dict[str, torch.Tensor], token_level: bool) -> None:
    """Decoder classifiers find each sample's last token through ``config.pad_token_id``: require it with padding."""
    padded = not bool(batch["attention_mask"].bool().all())
    if padded and is_causal(model) and not token_level and getattr(model.config, "pad_token_id", None) is None:
        raise InvalidConfigError(
            "the samples need padding but model.config.pad_token_id is None, so the classifier cannot find "
            "each sample's last token: set model.config.pad_token_id (e.g. to tokenizer.eos_token_id)"
        )


def execution_device(model: nn.Module) -> torch.device | None:
    """Where a dispatched model takes its inputs: the execution device of its first module with an accelerate
    hook (the embeddings); None for a model without such hooks."""
    for module in model.modules():
        device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
        if device is not None:
            return torch.device(f"cuda:{device}" if isinstance(device, int) else device)
    return None


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """dtype of the first floating-point parameter and the device inputs go to (its device, or accelerate's
    execution device for a dispatched model)."""
    for param in model.parameters():
        if param.is_floating_point():
            return param.dtype, execution_device(model) or param.device
    raise KernelComputationError("the model has no floating-point parameter")

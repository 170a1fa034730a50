"""Engine ``func``: ``torch.func.functional_call`` + ``vmap(jacrev(...))`` over samples, in chunks."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap
from tqdm.auto import tqdm

from ..errors import KernelComputationError
from .forward import (
    accepts_position_ids,
    additive_mask,
    causal_position_ids,
    feature_dtype,
    frozen_state,
    is_causal,
    logits_of,
    model_dtype_device,
    model_inputs,
    untraceable_reason,
)
from .outputs import sample_outputs
from .probes import Probe, Tensors, attached, flatten_features, probe_zeros


def jacobians(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    probes: Mapping[str, Probe],
    output: str,
    *,
    chunk_size: int = 8,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-sample Jacobians of the outputs w.r.t. every probe: {probe name: (n, c, P)}.

    Each sample runs alone under ``vmap`` with a ready 4D attention mask (padding and causality); decoders
    also get explicit positions, since some (OPT) derive them from a 2D mask.
    """
    reason = untraceable_reason(model)
    if reason is not None:
        raise KernelComputationError(
            f"engine='func' cannot trace this model: {reason}: use engine='hooks', which gives the same kernels"
        )
    state = frozen_state(model)
    dtype, device = model_dtype_device(model)
    causal = is_causal(model)
    explicit_positions = causal and accepts_position_ids(model)
    zeros = probe_zeros(probes, batch=None, dtype=feature_dtype(dtype), device=device)
    values: dict[str, Tensors] = {}

    def output_of(probe_values: dict[str, Tensors], sample: dict[str, torch.Tensor]) -> torch.Tensor:
        values.clear()
        values.update(probe_values)
        one = {key: value.unsqueeze(0) for key, value in sample.items()}
        kwargs = model_inputs(one)
        kwargs["attention_mask"] = additive_mask(one["attention_mask"], causal=causal, dtype=dtype)
        if explicit_positions:
            kwargs["position_ids"] = causal_position_ids(one["attention_mask"])
        logits = logits_of(functional_call(model, state, args=(), kwargs=kwargs))
        return sample_outputs(logits, one, output)[0]

    per_sample = vmap(jacrev(output_of), in_dims=(None, 0))
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in probes}
    n = batch["input_ids"].shape[0]
    with attached(model, probes, values), warnings.catch_warnings():
        # sdpa has no vmap batching rule on CPU: torch warns once per call that it falls back to a loop
        warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented")
        for start in tqdm(range(0, n, chunk_size), desc="kernels (func)", disable=not progress):
            chunk = {key: value[start : start + chunk_size] for key, value in batch.items()}
            try:
                jacobian = per_sample(zeros, chunk)
            except RuntimeError as err:
                if "functorch transform" not in str(err):
                    raise
                reason = untraceable_reason(model) or "one of its hooks does what a torch.func transform cannot"
                raise KernelComputationError(
                    f"torch.func cannot trace this model ({reason}): use engine='hooks' (or 'auto'), which gives "
                    "the same kernels"
                ) from err
            for name, grads in jacobian.items():
                parts[name].append(flatten_features(grads, lead=2))
    return {name: torch.cat(chunks) for name, chunks in parts.items()}

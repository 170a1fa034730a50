"""Engine ``hooks``: one batched forward per chunk with per-sample zero probes, one backward per output."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from .forward import feature_dtype, frozen_forward, logits_of, model_dtype_device, model_inputs
from .outputs import sample_outputs
from .probes import Probe, Tensors, attached, features_by_probe, probe_zeros


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

    Probe tensors carry a sample dimension, so the gradient of sum_i f_a(x_i) w.r.t. probe row i is
    d f_a(x_i) (samples are independent in eval mode); autograd forms the per-sample einsum. Works with
    models dispatched or offloaded by accelerate.
    """
    forward = frozen_forward(model)
    dtype, device = model_dtype_device(model)
    values: dict[str, Tensors] = {}
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in probes}
    n = batch["input_ids"].shape[0]
    with attached(model, probes, values), torch.enable_grad():
        for start in tqdm(range(0, n, chunk_size), desc="kernels (hooks)", disable=not progress):
            chunk = {key: value[start : start + chunk_size] for key, value in batch.items()}
            zeros = probe_zeros(probes, batch=chunk["input_ids"].shape[0], dtype=feature_dtype(dtype), device=device)
            leaves = [tensor.requires_grad_() for tensors in zeros.values() for tensor in tensors]
            values.clear()
            values.update(zeros)
            logits = logits_of(forward(model_inputs(chunk)))
            outputs = sample_outputs(logits, chunk, output)
            count = outputs.shape[1]
            grads = [
                torch.autograd.grad(outputs[:, a].sum(), leaves, retain_graph=a < count - 1, materialize_grads=True)
                for a in range(count)
            ]
            for name, features in features_by_probe(zeros, grads, lead=1).items():
                parts[name].append(features)
    return {name: torch.cat(chunks) for name, chunks in parts.items()}

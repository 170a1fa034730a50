"""Engine ``reference``: a plain per-sample ``torch.autograd.grad`` loop, each sample without padding.

Slow and simple: the oracle the fast engines are tested against.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from .forward import feature_dtype, logits_of, model_dtype_device, model_inputs
from .outputs import sample_outputs
from .probes import Probe, Tensors, attached, features_by_probe, probe_zeros


def unpadded_sample(batch: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """Sample i as a batch of one, without its padding tokens (every (n, T) field keeps the real tokens)."""
    keep = batch["attention_mask"][i].bool()
    length = keep.numel()
    return {
        key: (value[i][keep] if value.dim() == 2 and value.shape[1] == length else value[i]).unsqueeze(0)
        for key, value in batch.items()
    }


def jacobians(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    probes: Mapping[str, Probe],
    output: str,
    *,
    chunk_size: int = 1,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-sample Jacobians of the outputs w.r.t. every probe: {probe name: (n, c, P)}.

    ``chunk_size`` is ignored: one sample, one output component, one ``autograd.grad`` call at a time.
    """
    dtype, device = model_dtype_device(model)
    values: dict[str, Tensors] = {}
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in probes}
    n = batch["input_ids"].shape[0]
    with attached(model, probes, values), torch.enable_grad():
        for i in tqdm(range(n), desc="kernels (reference)", disable=not progress):
            sample = unpadded_sample(batch, i)
            zeros = probe_zeros(probes, batch=None, dtype=feature_dtype(dtype), device=device)
            leaves = [tensor.requires_grad_() for tensors in zeros.values() for tensor in tensors]
            values.clear()
            values.update(zeros)
            outputs = sample_outputs(logits_of(model(**model_inputs(sample))), sample, output)[0]
            grads = [
                torch.autograd.grad(outputs[a], leaves, retain_graph=True, materialize_grads=True)
                for a in range(outputs.shape[0])
            ]
            for name, features in features_by_probe(zeros, grads, lead=0).items():
                parts[name].append(features.unsqueeze(0))
    return {name: torch.cat(chunks) for name, chunks in parts.items()}

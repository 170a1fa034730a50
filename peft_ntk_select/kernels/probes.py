"""Zero probes: parameters-at-zero added to module outputs by forward hooks, whose gradients are NTK features.

A probe adds ``delta(x, tensors)`` to a module's output, with ``delta`` linear in its tensors and the
tensors zero, so the model's function is unchanged while the gradient with respect to the tensors is
the gradient with respect to the parameter block they stand for:

- ``LoraProbe``: delta = s * (x A^T) B^T, tensors (B,) with B: (out, r) - the LoRA B at PEFT's init;
- ``LinearProbe``: delta = x dW^T + db, tensors (dW, db) - the weight and bias of a Linear/Conv1D layer;
- ``TokenProbe``: delta = Z, tensors (Z,) with Z: (T, out) - one perturbation per token of the output,
  whose gradient is the output gradient at every token.

Tensors are unbatched (the parameter's shape) or carry a leading per-sample dimension (b, ...), which
gives per-sample gradients from one batched backward pass. The delta is computed in the tensors' dtype
(float32 for half-precision models), so per-sample gradients accumulate in float32 or better. Hooks are
removed on exit; the model's own parameters, flags and hooks are never touched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import KernelComputationError

Tensors = tuple[torch.Tensor, ...]


def _batched_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (..., i) times weight^T, weight (o, i) shared or (b, o, i) per sample (x then (b, ..., i))."""
    if weight.dim() == 2:
        return x @ weight.T
    return torch.einsum("b...i,boi->b...o", x, weight)


@dataclass(frozen=True, eq=False)
class LoraProbe:
    """LoRA at init on one module: A (r, in) fixed, scale s, probe tensor B (out, r) at zero."""

    a: torch.Tensor
    scale: float
    out_features: int

    def shapes(self) -> list[tuple[int, ...]]:
        return [(self.out_features, self.a.shape[0])]

    def delta(self, x: torch.Tensor, tensors: Tensors) -> torch.Tensor:
        (b,) = tensors
        z = x @ self.a.to(dtype=x.dtype, device=x.device).T
        return self.scale * _batched_matmul(z, b)


@dataclass(frozen=True)
class LinearProbe:
    """The weight (out, in) and bias (out,) of a Linear or Conv1D layer, probed at zero."""

    in_features: int
    out_features: int
    has_bias: bool

    def shapes(self) -> list[tuple[int, ...]]:
        weight = (self.out_features, self.in_features)
        return [weight, (self.out_features,)] if self.has_bias else [weight]

    def delta(self, x: torch.Tensor, tensors: Tensors) -> torch.Tensor:
        out = _batched_matmul(x, tensors[0])
        if self.has_bias:
            bias = tensors[1]
            if bias.dim() == 2:  # per sample: (b, o) -> (b, 1, ..., 1, o)
                bias = bias.reshape(bias.shape[0], *([1] * (out.dim() - 2)), bias.shape[1])
            out = out + bias
        return out


@dataclass(frozen=True)
class TokenProbe:
    """A zero perturbation Z (length, out) of a module's output at every token position.

    Its gradient is Delta (length, out): row t is the gradient of f w.r.t. the module output at token t.
    A shorter input (the ``reference`` engine runs each sample without its right padding) uses the first
    rows of Z, so the rows past the sample's length get zero gradient.
    """

    length: int
    out_features: int

    def shapes(self) -> list[tuple[int, ...]]:
        return [(self.length, self.out_features)]

    def delta(self, x: torch.Tensor, tensors: Tensors) -> torch.Tensor:
        (z,) = tensors
        tokens = x.shape[-2]
        if tokens > self.length:
            raise KernelComputationError(
                f"a module received {tokens} tokens but the batch has {self.length}: token probes need the "
                "module input as (batch, tokens, features)"
            )
        return z[..., :tokens, :]


Probe = LoraProbe | LinearProbe | TokenProbe


def option_features(features: torch.Tensor, drawn_rank: int, rank: int, factor: float) -> torch.Tensor:
    """Features (..., out * rank) of a rank-``rank`` LoRA from those (..., out * R) of a ``LoraProbe`` at
    R = ``drawn_rank`` whose A holds the smaller A in its first rows: B's first ``rank`` columns, times
    ``factor`` (the ratio of scales and A spreads, ``lora_init.option_factor``); unchanged when rank = R."""
    if rank == drawn_rank and factor == 1.0:
        return features
    lead = features.shape[:-1]
    return features.reshape(*lead, -1, drawn_rank)[..., :rank].reshape(*lead, -1) * factor


def gram(features: torch.Tensor) -> torch.Tensor:
    """Kernel from per-sample features (n, c, P): K_ij = sum_a <F_ia, F_ja>, (n, n) float64."""
    f = features.double()
    return torch.einsum("icp,jcp->ij", f, f)


def sign_gram(features: torch.Tensor) -> torch.Tensor:
    """The SignGD (Adam) kernel from per-sample gradients (n, c, P): K_ij = sum_a <F_ia, sign F_ja>, (n, n)
    float64, asymmetric (Malladi et al. 2023; docs/science.md section 7)."""
    f = features.double()
    return torch.einsum("icp,jcp->ij", f, f.sign())


def probe_zeros(
    probes: Mapping[str, Probe], *, batch: int | None, dtype: torch.dtype, device: torch.device
) -> dict[str, Tensors]:
    """Zero tensors for every probe: shapes of ``Probe.shapes()``, with a leading ``batch`` dim if given."""
    lead = () if batch is None else (batch,)
    return {
        name: tuple(torch.zeros(*lead, *shape, dtype=dtype, device=device) for shape in probe.shapes())
        for name, probe in probes.items()
    }


def flatten_features(tensors: Sequence[torch.Tensor], lead: int) -> torch.Tensor:
    """Concatenate per-probe gradients, each (*lead dims, *shape), into (*lead dims, P)."""
    shape = tensors[0].shape[:lead]
    return torch.cat([t.reshape(*shape, -1) for t in tensors], dim=-1)


def features_by_probe(
    zeros: Mapping[str, Tensors], grads: Sequence[Sequence[torch.Tensor]], lead: int
) -> dict[str, torch.Tensor]:
    """Regroup ``autograd.grad`` results into features.

    ``grads[a]`` holds the gradients of output a w.r.t. all probe tensors in the order of ``zeros``; each
    gradient has ``lead`` sample dims. Returns {probe name: (*sample dims, c, P)}.
    """
    features = {}
    position = 0
    for name, tensors in zeros.items():
        per_output = [flatten_features(g[position : position + len(tensors)], lead=lead) for g in grads]
        features[name] = torch.stack(per_output, dim=lead)
        position += len(tensors)
    return features


@contextmanager
def attached(model: nn.Module, probes: Mapping[str, Probe], values: Mapping[str, Tensors]) -> Iterator[None]:
    """Add every probe's delta to its module's output while inside the block.

    ``probes`` maps full module names to probes; ``values`` is read at each forward call, so callers can
    swap in the tensors of the current chunk (or traced tensors under ``torch.func``).
    """
    modules = dict(model.named_modules())
    handles = []

    def make_hook(name: str, probe: Probe):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            tensors = values[name]
            x = args[0].to(dtype=tensors[0].dtype, device=tensors[0].device)  # dispatched: module on another device
            return output + probe.delta(x, tensors).to(dtype=output.dtype, device=output.device)

        return hook

    try:
        for name, probe in probes.items():
            handles.append(modules[name].register_forward_hook(make_hook(name, probe)))
        yield
    finally:
        for handle in handles:
            handle.remove()

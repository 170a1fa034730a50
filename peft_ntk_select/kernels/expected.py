"""The expected kernel: each candidate's LoRA contribution averaged over the random A, computed exactly.

With B = 0 at init, a candidate's LoRA kernel is S_l(x, x') = s^2 sum_{t,t'} <delta_t, delta'_t'> <A x_t, A x'_t'>
(docs/science.md section 4). A has iid zero-mean entries, so E_A[A^T A] = r Var(A_ij) I and

    E_A[S_l] = s^2 r Var(A_ij) K_W,    K_W(x, x') = sum_a sum_{t,t'} <delta_at, delta'_at'> <x_t, x'_t'>,

the kernel of the module's full weight W alone (a: output component, as for every kernel here; x_t: module
input at token t; delta_at: gradient of f_a w.r.t. the module output at token t). K_W is computed exactly,
per candidate, in one of two formulations:

- ``weight``: per-sample weight gradients G_ia = sum_t delta_at x_t^T (out, in), the features of a
  ``LinearProbe`` without bias, and K_W = gram(G). Extra work ~ n c in out (T + n) multiply-adds (the
  per-sample gradients, then their Gram); features: n c in out values.
- ``tokens``: module inputs X_i (T, in), captured by a forward pass without gradients and zeroed at padding,
  and output gradients Delta_ia (T, out), the features of a ``TokenProbe``:
  K_W(i, j) = sum_{t,t'} (X_i X_j^T)_{tt'} (sum_a Delta_ia Delta_ja^T)_{tt'}. Extra work ~ n^2 T^2 (in + c out);
  features: n T (in + c out) values.

Rule (``choose_formulation``): ``weight`` when its work is no larger than that of ``tokens`` and its features
fit ``memory_budget`` bytes, else ``tokens``; the choice is logged at debug level. Memory stays bounded:
candidates are packed in order into engine passes whose features fit ``memory_budget`` (each pass is one
engine run: a forward and c backward passes; a candidate over the budget alone gets a pass of its own), and
the token Gram runs in blocks of b samples, its 2 b n T^2 float64 intermediates within the budget.
Padded tokens contribute nothing: X is zero there, and so is delta (no real output reads a padded position).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from peft import LoraConfig
from torch import nn

from ..errors import InvalidConfigError, KernelComputationError
from .forward import evaluation_mode, feature_dtype, logits_of, model_dtype_device, model_inputs
from .lora_init import expected_factor
from .outputs import sample_outputs
from .probes import LinearProbe, Probe, TokenProbe, gram
from .reference import unpadded_sample

if TYPE_CHECKING:
    from ..candidates import Candidate

logger = logging.getLogger(__name__)

Engine = Callable[..., dict[str, torch.Tensor]]
FORMULATIONS = ("weight", "tokens")
DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes of features per engine pass and of token Gram intermediates
_FLOAT64_BYTES = 8


def formulation_costs(in_features: int, out_features: int, *, n: int, length: int, outputs: int) -> dict[str, int]:
    """Estimated extra multiply-adds of each formulation for one module, beyond the engine's forward/backward."""
    return {
        "weight": n * outputs * in_features * out_features * (length + n),
        "tokens": n * n * length * length * (in_features + outputs * out_features),
    }


def feature_count(formulation: str, in_features: int, out_features: int, *, n: int, length: int, outputs: int) -> int:
    """Values held for one module: per-sample weight gradients, or token inputs and output gradients."""
    if formulation == "weight":
        return n * outputs * in_features * out_features
    return n * length * (in_features + outputs * out_features)


def choose_formulation(
    in_features: int, out_features: int, *, n: int, length: int, outputs: int, itemsize: int, memory_budget: int
) -> str:
    """``weight`` when its work is no larger and its features fit ``memory_budget`` bytes, else ``tokens``."""
    shape = {"n": n, "length": length, "outputs": outputs}
    costs = formulation_costs(in_features, out_features, **shape)
    fits = feature_count("weight", in_features, out_features, **shape) * itemsize <= memory_budget
    return "weight" if fits and costs["weight"] <= costs["tokens"] else "tokens"


def pack_passes(sizes: Sequence[int], budget: int, *, reserved: int = 0) -> list[list[int]]:
    """Indices of ``sizes`` packed in order into groups summing to at most ``budget``.

    The first group also holds ``reserved``; an item that does not fit an empty group gets one of its own.
    Always returns at least one (possibly empty) group.
    """
    groups: list[list[int]] = [[]]
    used = reserved
    for index, size in enumerate(sizes):
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += size
    return groups


def token_gram(
    inputs: torch.Tensor, grads: torch.Tensor, *, memory_budget: int = DEFAULT_MEMORY_BUDGET
) -> torch.Tensor:
    """Full-weight kernel from token quantities: K_ij = sum_a sum_{t,t'} <Delta_iat, Delta_jat'> <X_it, X_jt'>.

    Args:
        inputs: X (n, T, in), the module inputs (zero at padding).
        grads: Delta (n, c, T, out), the gradients of each output w.r.t. the module output at each token.
        memory_budget: bytes for the (b T, n T) float64 intermediates of a block of b rows (b >= 1).

    Returns:
        K (n, n) float64, symmetric.
    """
    n, outputs, length, out_features = grads.shape
    x = inputs.double().reshape(n * length, -1)
    d = grads.double().transpose(1, 2).reshape(n * length, outputs * out_features)  # sum over a inside d d^T
    rows = max(1, memory_budget // (2 * n * length * length * _FLOAT64_BYTES))
    kernel = torch.empty(n, n, dtype=torch.float64, device=grads.device)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        span = slice(start * length, stop * length)
        products = (x[span] @ x.T) * (d[span] @ d.T)
        kernel[start:stop] = products.reshape(stop - start, length, n, length).sum(dim=(1, 3))
    return 0.5 * (kernel + kernel.T)


def output_count(model: nn.Module, batch: dict[str, torch.Tensor], output: str) -> int:
    """c, the number of output components: 1 for ``margin`` and ``loss``; for ``trace``, from one sample's logits
    (run on the model's device, in eval mode)."""
    if output != "trace":
        return 1
    _, device = model_dtype_device(model)
    one = {key: value[:1].to(device) for key, value in batch.items()}
    with torch.no_grad(), evaluation_mode(model):
        return int(sample_outputs(logits_of(model(**model_inputs(one))), one, output).shape[1])


def module_inputs(
    model: nn.Module, batch: dict[str, torch.Tensor], names: Sequence[str], *, unpadded: bool, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Inputs X (n, T, in) of the named modules, in ``dtype`` and zero at padding, from passes without gradients.

    ``unpadded``: one pass per sample without its right padding (the ``reference`` engine's semantics); else
    one pass over the padded batch (those of ``func`` and ``hooks``).
    """
    modules = dict(model.named_modules())
    mask = batch["attention_mask"]
    n, length = mask.shape
    samples = [unpadded_sample(batch, i) for i in range(n)] if unpadded else [batch]
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in names}

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            captured[name].append(args[0].detach().to(dtype))

        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in names]
    try:
        with torch.no_grad():
            for sample in samples:
                model(**model_inputs(sample))
    finally:
        for handle in handles:
            handle.remove()
    inputs = {}
    for name, parts in captured.items():
        if len(parts) != len(samples) or any(part.dim() != 3 for part in parts):
            raise KernelComputationError(
                f"module {name!r} ran {len(parts)} times for {len(samples)} forward passes, or not on "
                "(batch, tokens, features) inputs: its expected kernel needs one call per pass; use kernel='lora'"
            )
        if unpadded:
            x = torch.zeros(n, length, parts[0].shape[-1], dtype=dtype, device=mask.device)
            for i, part in enumerate(parts):
                x[i, : part.shape[1]] = part[0]
        else:
            (x,) = parts
        inputs[name] = x * mask[..., None].to(dtype)
    return inputs


def expected_kernels(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    candidates: Sequence[Candidate],
    config: LoraConfig,
    base: Mapping[str, LinearProbe],
    output: str,
    *,
    engine: Engine,
    unpadded_inputs: bool,
    chunk_size: int = 8,
    progress: bool = False,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    formulation: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Base kernel K and the expected contributions E_A[S_l], on the model's device (model in eval mode).

    Args:
        base: probes of the base kernel's parameters, by module name.
        engine: one of ``ENGINES`` (per-sample Jacobians w.r.t. probes).
        unpadded_inputs: capture module inputs per sample without padding (pass True with ``reference``).
        memory_budget: bytes of features per engine pass and of token Gram intermediates.
        formulation: ``weight`` or ``tokens`` for every candidate; None chooses per candidate.

    Returns:
        ``(K, S)``: K (n, n) and S (L, n, n) float64, S in candidate order.
    """
    if formulation is not None and formulation not in FORMULATIONS:
        raise InvalidConfigError(f"unknown formulation {formulation!r}: choose one of {FORMULATIONS} or None")
    dtype, device = model_dtype_device(model)
    probe_dtype = feature_dtype(dtype)
    itemsize = torch.empty((), dtype=probe_dtype).element_size()
    n, length = batch["input_ids"].shape
    shape = {"n": n, "length": length, "outputs": output_count(model, batch, output)}
    plan = {}
    for c in candidates:
        costs = formulation_costs(c.in_features, c.out_features, **shape)
        plan[c.name] = formulation or choose_formulation(
            c.in_features, c.out_features, **shape, itemsize=itemsize, memory_budget=memory_budget
        )
        logger.debug(
            "expected kernel of %s (in %d, out %d; n %d, T %d, c %d): %s formulation%s; work weight %.3g, "
            "tokens %.3g; weight features %.3g bytes, budget %d",
            c.name, c.in_features, c.out_features, n, length, shape["outputs"], plan[c.name],
            " (forced)" if formulation else "", costs["weight"], costs["tokens"],
            feature_count("weight", c.in_features, c.out_features, **shape) * itemsize, memory_budget,
        )  # fmt: skip
    probes: dict[str, Probe] = {
        c.name: LinearProbe(c.in_features, c.out_features, False)
        if plan[c.name] == "weight"
        else TokenProbe(length, c.out_features)
        for c in candidates
    }
    sizes = [feature_count(plan[c.name], c.in_features, c.out_features, **shape) * itemsize for c in candidates]
    base_values = sum(math.prod(size) for probe in base.values() for size in probe.shapes())
    reserved = n * shape["outputs"] * base_values * itemsize
    passes = pack_passes(sizes, memory_budget, reserved=reserved)
    logger.debug("expected kernels: %d candidates in %d engine passes", len(candidates), len(passes))
    base_kernel = torch.zeros(n, n, dtype=torch.float64, device=device)
    contributions = torch.zeros(len(candidates), n, n, dtype=torch.float64, device=device)
    for number, group in enumerate(passes):
        members = [candidates[i] for i in group]
        pass_probes = {**(base if number == 0 else {}), **{c.name: probes[c.name] for c in members}}
        features = engine(model, batch, pass_probes, output, chunk_size=chunk_size, progress=progress)
        if number == 0:
            for name in base:
                base_kernel += gram(features.pop(name))
        tokens = list(dict.fromkeys(c.name for c in members if plan[c.name] == "tokens"))
        inputs = module_inputs(model, batch, tokens, unpadded=unpadded_inputs, dtype=probe_dtype) if tokens else {}
        blocks: dict[str, torch.Tensor] = {}  # K_W of each module once, shared by its rank options
        for i, c in zip(group, members, strict=True):
            if c.name not in blocks:
                grads = features.pop(c.name)
                if plan[c.name] == "weight":
                    blocks[c.name] = gram(grads)
                else:
                    grads = grads.reshape(n, shape["outputs"], length, c.out_features)
                    blocks[c.name] = token_gram(inputs.pop(c.name), grads, memory_budget=memory_budget)
            contributions[i] = expected_factor(config, c.name, c.in_features, c.rank) * blocks[c.name]
    return base_kernel, contributions

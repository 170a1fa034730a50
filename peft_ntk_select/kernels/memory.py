"""Bounded memory for the kernel pass: a chunk plan under a cap (``NTKSelector(max_memory=...)``).

The cap bounds what the kernel pass adds to the process beyond the model's own weights. Three things take
memory: the activations autograd saves for a chunk of samples (and as much again during the backward passes,
``TRANSIENT``), the per-sample features of the probes of one engine pass (held for all n samples until their
kernels are formed, twice while the chunks are joined), and the kernels themselves. The plan measures the
saved activations of one sample (the longest) with the probes attached, then picks:

- ``passes``: candidates packed in order into engine passes whose features fit ``FEATURE_SHARE`` of the cap
  (each pass runs the samples again; one pass when everything fits); a module's rank options (rank
  allocation) share one probe, counted once and kept in one pass;
- ``chunk_size``: as many samples per forward pass as the rest of the cap allows (at most the one asked for).

A cap that cannot hold one sample raises ``InvalidConfigError`` with the bytes it would need. The default cap
is ``DEFAULT_FRACTION`` of the device's free memory (``torch.cuda.mem_get_info``; on CPU, the available RAM).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from peft import LoraConfig
from torch import nn

from ..errors import InvalidConfigError
from .base import base_probes
from .compute import check_batch
from .expected import pack_passes
from .forward import (
    evaluation_mode,
    feature_dtype,
    frozen_forward,
    logits_of,
    model_dtype_device,
    model_inputs,
)
from .lora_init import draw_adapter_init, lora_probes
from .outputs import sample_outputs
from .probes import Probe, attached, probe_zeros

if TYPE_CHECKING:
    from ..candidates import Candidate

logger = logging.getLogger(__name__)

DEFAULT_FRACTION = {"cuda": 0.8, "cpu": 0.5}  # of the free memory, when no cap is given
FEATURE_SHARE = 0.25  # of the cap, for the features of one engine pass (held twice while joined)
TRANSIENT = 2.0  # peak of a chunk's forward + backward, in units of its saved activations
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20,
         "gib": 2**30, "tib": 2**40}  # fmt: skip


def parse_memory(value: int | str) -> int:
    """Bytes from an int or a string like ``"8GB"``, ``"512 MiB"``, ``"1.5e9"``; ``InvalidConfigError`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(value).lower())
    if isinstance(value, str) and match and match.group(2) in UNITS:
        try:
            number = float(match.group(1))
        except ValueError:
            number = 0.0
        if number > 0:
            return int(number * UNITS[match.group(2)])
    raise InvalidConfigError(f"max_memory={value!r}: pass a positive number of bytes or a size like '8GB' or '512MiB'")


def free_memory(device: torch.device) -> int:
    """Free bytes on ``device``: CUDA's free memory, else the available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def default_max_memory(device: torch.device) -> int:
    """``DEFAULT_FRACTION`` of the free memory of ``device``."""
    return int(DEFAULT_FRACTION.get(device.type, DEFAULT_FRACTION["cpu"]) * free_memory(device))


def feature_budget(max_memory: int) -> int:
    """Bytes of features one engine pass may hold under ``max_memory``."""
    return max(1, int(FEATURE_SHARE * max_memory) // 2)


@dataclass(frozen=True)
class MemoryPlan:
    """How the kernel pass is cut to stay under ``max_memory`` bytes (see the module docstring).

    ``passes``: candidate indices per engine pass; ``activation_bytes``: saved activations of one sample;
    ``feature_bytes``: features of the largest pass; ``estimated_peak``: bytes the plan expects to add.
    """

    max_memory: int
    chunk_size: int
    passes: list[list[int]]
    activation_bytes: int
    feature_bytes: int
    estimated_peak: int

    @property
    def feature_budget(self) -> int:
        """Bytes of features one engine pass may hold: ``FEATURE_SHARE`` of the cap, held twice while joined."""
        return feature_budget(self.max_memory)

    def summary(self) -> dict[str, object]:
        """JSON-ready fields (stored in ``SelectionResult.memory_plan``)."""
        return asdict(self)

    def describe(self) -> str:
        return (f"cap {self.max_memory / 2**20:.0f} MiB: {self.chunk_size} samples per forward pass, "
                f"{len(self.passes)} engine pass(es), {self.activation_bytes / 2**20:.1f} MiB of activations per "
                f"sample, {self.feature_bytes / 2**20:.1f} MiB of features per pass, estimated peak "
                f"{self.estimated_peak / 2**20:.0f} MiB")  # fmt: skip


def measure_sample(
    model: nn.Module, sample: dict[str, torch.Tensor], probes: dict[str, Probe], output: str
) -> tuple[int, int]:
    """One forward of ``sample`` (a batch of one, on the model's device, eval mode) with the probes attached and
    requiring grad: (bytes of the distinct storages autograd saves, what a chunk keeps per sample until its
    backward passes; c, the number of output components)."""
    dtype, device = model_dtype_device(model)
    zeros = probe_zeros(probes, batch=1, dtype=feature_dtype(dtype), device=device)
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.device.type != "meta":
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    values = {name: tuple(t.requires_grad_() for t in tensors) for name, tensors in zeros.items()}
    with (
        evaluation_mode(model),
        attached(model, probes, values),
        torch.enable_grad(),
        torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
    ):
        outputs = sample_outputs(logits_of(frozen_forward(model)(model_inputs(sample))), sample, output)
    return sum(storages.values()), int(outputs.shape[1])


def plan_memory(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    candidates: Sequence[Candidate],
    lora_config: LoraConfig,
    output: str,
    *,
    max_memory: int,
    chunk_size: int,
) -> MemoryPlan:
    """The chunk plan for ``batch`` (n, T) on the model's device; see the module docstring."""
    check_batch(model, batch, output)  # the measuring forward needs what the kernel pass needs
    model_dtype, device = model_dtype_device(model)
    itemsize = torch.empty((), dtype=feature_dtype(model_dtype)).element_size()
    n, length = batch["input_ids"].shape
    base = base_probes(model, lora_config, exclude=[c.name for c in candidates])
    init = draw_adapter_init(candidates, lora_config, seed=0)  # sizes only: any draw measures the same
    lora: dict[str, Probe] = dict(lora_probes(candidates, lora_config, init))
    longest = int(batch["attention_mask"].sum(-1).argmax())
    sample = {key: value[longest : longest + 1].to(device) for key, value in batch.items()}
    activations, outputs = measure_sample(model, sample, {**base, **lora}, output)

    def feature_size(probe: Probe) -> int:
        return n * outputs * sum(math.prod(shape) for shape in probe.shapes()) * itemsize

    # One probe per module, shared by its rank options (rank allocation): pack modules, each counted once and
    # never split over two passes, then list every option of a module in its module's pass.
    options: dict[str, list[int]] = {}
    for index, candidate in enumerate(candidates):
        options.setdefault(candidate.name, []).append(index)
    sizes = [feature_size(lora[name]) for name in options]
    reserved = sum(feature_size(probe) for probe in base.values())
    module_passes = pack_passes(sizes, feature_budget(max_memory), reserved=reserved)
    names = list(options)
    passes = [[index for m in group for index in options[names[m]]] for group in module_passes]
    largest = max(sum(sizes[m] for m in group) + (reserved if number == 0 else 0) for number, group in
                  enumerate(module_passes))  # fmt: skip
    kernels = (len(candidates) + 1) * n * n * 8
    held = 2 * largest + kernels
    room = max_memory - held
    fits = int(room // (TRANSIENT * activations)) if activations else n
    if fits < 1:
        need = held + TRANSIENT * activations
        raise InvalidConfigError(
            f"max_memory={max_memory} bytes cannot hold the kernel pass of one sample of {length} tokens (about "
            f"{need:.3g} bytes: {activations:.3g} of saved activations, {largest:.3g} of features): raise "
            "max_memory, shorten the samples (max_length), or narrow the candidates (kinds=, layers=)"
        )
    chunk = max(1, min(chunk_size, n, fits))
    return MemoryPlan(max_memory=max_memory, chunk_size=chunk, passes=passes, activation_bytes=activations,
                      feature_bytes=largest, estimated_peak=int(held + TRANSIENT * activations * chunk))  # fmt: skip

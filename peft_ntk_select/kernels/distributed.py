"""Several processes (``accelerate launch``, ``torchrun``): each computes the features of its shard of samples.

When ``torch.distributed`` is initialised with more than one process, the n samples are cut into contiguous
shards, one per rank; every rank runs the engine (``sharded``) on its shard, the per-sample features are gathered
(``all_gather``) so that every rank forms the same (n, n) kernels, and rank 0's kernels are broadcast so
that all ranks rank subsets on bit-identical numbers. With one process nothing changes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def process_group() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one.

    Under ``accelerate launch`` / ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) a group not yet
    initialised is initialised by ``accelerate.PartialState`` (gloo on CPU, nccl on GPUs).
    """
    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        PartialState()
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True on rank 0 (and without a process group): where progress bars and logs belong."""
    return process_group()[0] == 0


def shard(n: int, rank: int, world: int) -> slice:
    """Rank's contiguous share of n samples: ceil(n / world) each, the last one shorter."""
    size = math.ceil(n / world)
    return slice(min(rank * size, n), min((rank + 1) * size, n))


def shards_samples(n: int, world: int) -> bool:
    """True when the samples are split over the ranks: several processes and no rank left without a sample
    (with fewer samples than that, every rank computes all of them)."""
    last = shard(n, world - 1, world)
    return world > 1 and last.stop > last.start


def gather_samples(features: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """Every rank's per-sample features {name: (n_rank, ...)} -> all samples {name: (n, ...)} in sample order."""
    _, world = process_group()
    size = math.ceil(n / world)
    counts = [shard(n, r, world).stop - shard(n, r, world).start for r in range(world)]
    gathered = {}
    for name, local in features.items():
        padded = torch.zeros(size, *local.shape[1:], dtype=local.dtype, device=local.device)
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        gathered[name] = torch.cat([part[:count] for part, count in zip(parts, counts, strict=True)])
    return gathered


def sharded(engine: Callable[..., dict[str, torch.Tensor]]) -> Callable[..., dict[str, torch.Tensor]]:
    """``engine`` run on this rank's shard of the samples, its features gathered from every rank; the engine
    itself when the samples are not sharded (one process, or fewer samples than ranks need)."""

    def run(model: nn.Module, batch: dict[str, torch.Tensor], *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        n = batch["input_ids"].shape[0]
        rank, world = process_group()
        if not shards_samples(n, world):
            return engine(model, batch, *args, **kwargs)
        mine = {key: value[shard(n, rank, world)] for key, value in batch.items()}
        return gather_samples(engine(model, mine, *args, **kwargs), n)

    return run


def broadcast_kernels(*kernels: torch.Tensor) -> None:
    """Overwrite ``kernels`` in place with rank 0's, so every rank holds the same numbers (no-op alone)."""
    if process_group()[1] == 1:
        return
    for kernel in kernels:
        dist.broadcast(kernel, src=0)

"""Custody of the user's model while a computation borrows it: one computation at a time per model, checks
that it can be given back intact, and the device and dtype moves undone afterwards.

Every entry point that runs or changes the model (``NTKSelector.select``/``stability``, ``compute_kernels``,
``linearity_curve``) holds ``exclusive_use(model)``: a second thread that calls one of them on the same model
waits until the first is done, because both swap the model's weights (``functional_call``, dtype casts, head
values) and would otherwise save each other's temporary tensors as the originals.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import InvalidConfigError

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _lock_of(model: nn.Module) -> threading.RLock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextmanager
def exclusive_use(model: nn.Module) -> Iterator[None]:
    """Hold the model's lock for the block (re-entrant: nested entry points in one thread do not wait), after
    checking that the model can be borrowed and given back (``check_custody``)."""
    with _lock_of(model):
        check_custody(model)
        yield


def check_custody(model: nn.Module) -> None:
    """``InvalidConfigError`` for a module registered under several names (a layer shared between two places):
    ``functional_call`` swaps its weights once per name and would put a temporary tensor back in place of the
    weight. Tied parameters (one ``nn.Parameter`` in two modules, e.g. embeddings and LM head) are fine."""
    names: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if next(module.parameters(recurse=False), None) is not None:
            names.setdefault(id(module), []).append(name)
    shared = [found for found in names.values() if len(found) > 1]
    if shared:
        listed = "; ".join(" = ".join(found) for found in shared[:3])
        raise InvalidConfigError(
            f"the model registers one module under several names ({listed}{'; ...' if len(shared) > 3 else ''}): "
            "its weights cannot be swapped and put back safely; give each place its own module "
            "(e.g. copy.deepcopy the shared layer) or tie only the weights (module_b.weight = module_a.weight)"
        )


def check_device(device: str | torch.device | None) -> None:
    """``InvalidConfigError`` unless ``device`` is None or a device this torch build can allocate on. ``meta``
    holds no data, so moving the model there would lose its weights."""
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InvalidConfigError(f"device={device!r} is not a torch device: pass e.g. 'cpu' or 'cuda:0'") from err
    if parsed.type == "meta":
        raise InvalidConfigError(
            "device='meta' holds no data: the model's weights would be lost there; pass a real device "
            "('cpu', 'cuda') or None to compute where the model is"
        )
    try:
        torch.empty(1, device=parsed)
    except (RuntimeError, AssertionError) as err:
        raise InvalidConfigError(
            f"device={device!r} cannot be used by this torch build ({str(err).splitlines()[0]}): pass a device "
            f"it has (cuda available: {torch.cuda.is_available()}), or None to compute where the model is"
        ) from err


@contextmanager
def on_device(model: nn.Module, device: str | torch.device | None) -> Iterator[None]:
    """Run on ``device``: move the model there for the block and back afterwards (no-op when None)."""
    if device is None:
        yield
        return
    original = {param.device for param in model.parameters()} | {buf.device for buf in model.buffers()}
    if len(original) != 1:
        raise InvalidConfigError(
            "the model is spread over several devices (device_map): leave device=None to run it where it is"
        )
    model.to(device)
    try:
        yield
    finally:
        model.to(original.pop())


@contextmanager
def in_dtype(model: nn.Module, dtype: torch.dtype | None) -> Iterator[None]:
    """Run with every floating-point parameter and buffer cast to ``dtype``; the original tensors (not
    re-cast copies) are put back afterwards, so nothing is rounded (no-op when None)."""
    if dtype is None:
        yield
        return
    parameters = [(p, p.data) for p in model.parameters() if p.is_floating_point()]
    buffers = [(module, name, buffer) for module in model.modules() for name, buffer in module._buffers.items()
               if buffer is not None and buffer.is_floating_point()]  # fmt: skip
    try:
        for parameter, data in parameters:
            parameter.data = data.to(dtype)
        for module, name, buffer in buffers:
            module._buffers[name] = buffer.to(dtype)
        yield
    finally:
        for parameter, data in parameters:
            parameter.data = data
        for module, name, buffer in buffers:
            module._buffers[name] = buffer

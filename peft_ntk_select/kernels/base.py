"""The base kernel's parameters: those trained whatever the pick (PEFT's ``modules_to_save``)."""

from __future__ import annotations

from collections.abc import Sequence

from peft import LoraConfig
from torch import nn

from ..candidates import linear_shape
from ..errors import InvalidConfigError
from .probes import LinearProbe

CLASSIFIER_MODULE_NAMES = ("classifier", "score")  # PEFT trains these for task_type="SEQ_CLS"


def base_module_names(model: nn.Module, config: LoraConfig) -> list[str]:
    """Modules PEFT would fully train: ``modules_to_save`` plus the classifier for ``SEQ_CLS``.

    Matching follows PEFT's rule (a module name ending with an entry).
    """
    targets = list(config.modules_to_save or [])
    if config.task_type == "SEQ_CLS":
        targets += CLASSIFIER_MODULE_NAMES
    return [name for name, _ in model.named_modules() if name and any(name.endswith(t) for t in targets)]


def base_probes(model: nn.Module, config: LoraConfig, exclude: Sequence[str] = ()) -> dict[str, LinearProbe]:
    """One ``LinearProbe`` per Linear/Conv1D layer inside the base modules, by full module name."""
    probes: dict[str, LinearProbe] = {}
    for top in base_module_names(model, config):
        module = model.get_submodule(top)
        covered = set()
        for name, sub in module.named_modules(prefix=top):
            shape = linear_shape(sub)
            if shape is None:
                continue
            probes[name] = LinearProbe(shape[0], shape[1], getattr(sub, "bias", None) is not None)
            covered |= {id(p) for p in sub.parameters(recurse=False)}
        others = [n for n, p in module.named_parameters(prefix=top) if id(p) not in covered]
        if others:
            raise InvalidConfigError(
                f"modules_to_save module {top!r} has parameters outside Linear layers ({others[:3]}): their "
                "kernel is not modelled; remove it from modules_to_save for selection"
            )
    clash = sorted(set(probes) & set(exclude))
    if clash:
        raise InvalidConfigError(f"modules {clash} are both candidates and in modules_to_save: choose one role")
    return probes

"""Candidate modules: the attention projections of a transformers model that could receive LoRA.

One candidate per (layer, kind) with kind in ``q``, ``k``, ``v``; GPT-2's fused ``c_attn`` is one
candidate of kind ``qkv``. Names are full module names of the model passed in, so that a
``LoraConfig(target_modules=[...])`` built from them matches exactly those modules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from torch import nn

from .errors import InvalidConfigError, NoCandidatesError

KIND_OF_SUFFIX = {
    "query": "q", "q_proj": "q", "q_lin": "q", "q": "q",
    "key": "k", "k_proj": "k", "k_lin": "k", "k": "k",
    "value": "v", "v_proj": "v", "v_lin": "v", "v": "v",
    "c_attn": "qkv",
}  # fmt: skip
KINDS = ("q", "k", "v", "qkv")


@dataclass(frozen=True)
class Candidate:
    """A module that could receive LoRA.

    ``num_params`` is the LoRA parameter count r * (in_features + out_features) at the config's rank;
    ``fan_in_fan_out`` marks a ``Conv1D`` (weight stored as (in, out), as GPT-2's ``c_attn``).
    """

    name: str
    layer: int
    kind: str
    in_features: int
    out_features: int
    num_params: int
    fan_in_fan_out: bool = False


def linear_shape(module: nn.Module) -> tuple[int, int] | None:
    """(in_features, out_features) of an ``nn.Linear`` or transformers ``Conv1D``; None for other modules."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
        in_features, out_features = module.weight.shape
        return int(in_features), int(out_features)
    return None


def is_conv1d(module: nn.Module) -> bool:
    """True for transformers' ``Conv1D`` (weight stored as (in, out); LoRA needs ``fan_in_fan_out``)."""
    return type(module).__name__ == "Conv1D"


def _layer_index(name: str) -> int:
    numbers = re.findall(r"\.(\d+)(?=\.)", f".{name}.")
    return int(numbers[-1]) if numbers else -1


def _kind(name: str) -> str:
    return KIND_OF_SUFFIX.get(name.rsplit(".", 1)[-1], name.rsplit(".", 1)[-1])


def discover_candidates(
    model: nn.Module,
    *,
    rank: int | Callable[[str], int] = 8,
    kinds: Iterable[str] | None = None,
    layers: Iterable[int] | None = None,
    modules: Sequence[str] | None = None,
) -> list[Candidate]:
    """List the candidate modules of ``model`` in module order.

    Args:
        model: a transformers model (bare, with a task head, or nested under any prefix).
        rank: LoRA rank used to count parameters, or a function of the module name (``rank_pattern``).
        kinds: keep only these kinds (subset of ``q``, ``k``, ``v``, ``qkv``).
        layers: keep only these layer indices.
        modules: explicit full module names (``nn.Linear`` or ``Conv1D``); replaces discovery by name.
    """
    if type(model).__name__.startswith("Peft") or hasattr(model, "peft_config"):
        raise InvalidConfigError(
            "the model already carries a PEFT adapter: pass the base transformers model "
            "(before get_peft_model), or peft_model.get_base_model() after unloading the adapter"
        )
    named = dict(model.named_modules())
    if modules is not None:
        missing = [name for name in modules if name not in named]
        if missing:
            raise NoCandidatesError(
                f"modules {missing} are not in the model: use full names from model.named_modules(), "
                "e.g. 'bert.encoder.layer.0.attention.self.query'"
            )
        not_linear = [name for name in modules if linear_shape(named[name]) is None]
        if not_linear:
            raise NoCandidatesError(f"modules {not_linear} are not nn.Linear or Conv1D: LoRA cannot target them")
        names = list(dict.fromkeys(modules))
    else:
        names = [
            name for name, module in named.items()
            if name.rsplit(".", 1)[-1] in KIND_OF_SUFFIX and linear_shape(module) is not None
        ]  # fmt: skip
    wanted_kinds = None if kinds is None else set(kinds)
    if wanted_kinds is not None and not wanted_kinds <= set(KINDS):
        raise InvalidConfigError(f"unknown kinds {sorted(wanted_kinds - set(KINDS))}: choose among {KINDS}")
    wanted_layers = None if layers is None else {int(layer) for layer in layers}
    candidates = []
    for name in names:
        kind, layer = _kind(name), _layer_index(name)
        if wanted_kinds is not None and kind not in wanted_kinds:
            continue
        if wanted_layers is not None and layer not in wanted_layers:
            continue
        in_features, out_features = linear_shape(named[name])  # type: ignore[misc]
        r = rank(name) if callable(rank) else rank
        num_params = r * (in_features + out_features)
        candidates.append(Candidate(name, layer, kind, in_features, out_features, num_params, is_conv1d(named[name])))
    if not candidates:
        raise NoCandidatesError(
            f"no candidate module matched (kinds={sorted(wanted_kinds) if wanted_kinds else 'all'}, "
            f"layers={sorted(wanted_layers) if wanted_layers is not None else 'all'}): the model has no attention "
            "projection named query/key/value, q_proj/k_proj/v_proj, q_lin/k_lin/v_lin or c_attn under that "
            "filter; widen kinds/layers or pass modules=[full module names]"
        )
    return candidates

"""Candidate modules: the linear modules of a transformers model that could receive LoRA.

One candidate per (layer, kind). Attention kinds (the default): ``q``, ``k``, ``v``, and ``qkv`` for GPT-2's
fused ``c_attn``. With ``kinds="all-linear"`` (PEFT's word) also ``o`` (the attention output), and the MLP's
``up``, ``down`` and ``gate``. Names are full module names of the model passed in, so that a
``LoraConfig(target_modules=[...])`` built from them matches exactly those modules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace

from peft import LoraConfig
from peft.tuners.tuners_utils import check_target_module_exists
from torch import nn

from .errors import InvalidConfigError, NoCandidatesError

# The kind of a module from the end of its full name, first match wins (``o`` before ``down``: BERT's
# attention output is ``attention.output.dense``, its MLP output ``output.dense``). Families: BERT/RoBERTa,
# Llama, GPT-2 (Conv1D), DistilBERT, OPT.
KIND_PATTERNS = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("q", r"\.(query|q_proj|q_lin|q)$"),
        ("k", r"\.(key|k_proj|k_lin|k)$"),
        ("v", r"\.(value|v_proj|v_lin|v)$"),
        ("qkv", r"\.c_attn$"),
        ("o", r"\.(attention\.output\.dense|o_proj|attn\.c_proj|out_lin|self_attn\.out_proj)$"),
        ("up", r"\.(intermediate\.dense|up_proj|mlp\.c_fc|lin1|fc1)$"),
        ("down", r"\.(output\.dense|down_proj|mlp\.c_proj|lin2|fc2)$"),
        ("gate", r"\.gate_proj$"),
    )
)
ATTENTION_KINDS = ("q", "k", "v", "qkv")  # the default candidates
KINDS = (*ATTENTION_KINDS, "o", "up", "down", "gate")
ALL_LINEAR = "all-linear"
PEFT_DEFAULT_KINDS = ("q", "v", "qkv")  # PEFT's usual placement: query and value (GPT-2: the fused c_attn)


@dataclass(frozen=True)
class Candidate:
    """A module that could receive LoRA.

    ``num_params`` is the LoRA parameter count r * (in_features + out_features) at its rank: ``rank`` for a
    rank option (rank allocation, ``rank_options``), else the config's rank for the module (``rank`` None);
    ``fan_in_fan_out`` marks a ``Conv1D`` (weight stored as (in, out), as GPT-2's ``c_attn``).
    """

    name: str
    layer: int
    kind: str
    in_features: int
    out_features: int
    num_params: int
    fan_in_fan_out: bool = False
    rank: int | None = None


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


def module_kind(name: str) -> str | None:
    """The kind of the module with this full name (``KIND_PATTERNS``), or None."""
    return next((kind for kind, pattern in KIND_PATTERNS if pattern.search(f".{name}")), None)


def named_kinds(kinds: Iterable[str] | str) -> set[str]:
    """The kinds named: ``"all-linear"`` (every kind, alone or in a list) or kinds, or ``InvalidConfigError``."""
    if isinstance(kinds, str) and kinds != ALL_LINEAR:
        raise InvalidConfigError(
            f"kinds={kinds!r} is one string: pass a list, e.g. kinds=('q', 'v'), or kinds='{ALL_LINEAR}'"
        )
    wanted: set[str] = set()
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        wanted |= set(KINDS) if kind == ALL_LINEAR else {kind}
    if not wanted <= set(KINDS):
        raise InvalidConfigError(f"unknown kinds {sorted(wanted - set(KINDS))}: choose among {KINDS} or '{ALL_LINEAR}'")
    return wanted


def explicit_targets(config: LoraConfig | None) -> bool:
    """True when the config names its own ``target_modules`` (names or a regex; not None or ``"all-linear"``)."""
    targets = None if config is None else config.target_modules
    return targets is not None and targets != ALL_LINEAR


def config_allows(config: LoraConfig, name: str) -> bool:
    """Whether PEFT would adapt the module ``name`` under the config's ``target_modules`` (when explicit),
    ``exclude_modules``, ``layers_to_transform``/``layers_pattern`` and ``modules_to_save``: PEFT's own
    ``check_target_module_exists``, so the candidate pool is what ``get_peft_model`` would accept."""
    if explicit_targets(config):
        return bool(check_target_module_exists(config, name))
    # No explicit targets: ask with the name's last part as the target, so that the layer filter still applies.
    fields = {field: getattr(config, field, None) for field in ("exclude_modules", "modules_to_save",
              "target_parameters", "layers_to_transform", "layers_pattern")}  # fmt: skip
    return bool(check_target_module_exists(SimpleNamespace(**fields, target_modules={name.rsplit(".", 1)[-1]}), name))


def discover_candidates(
    model: nn.Module,
    *,
    rank: int | Callable[[str], int] = 8,
    kinds: Iterable[str] | None = None,
    layers: Iterable[int] | None = None,
    modules: Sequence[str] | None = None,
    lora_config: LoraConfig | None = None,
) -> list[Candidate]:
    """List the candidate modules of ``model`` in module order.

    Args:
        model: a transformers model (bare, with a task head, or nested under any prefix).
        rank: LoRA rank used to count parameters, or a function of the module name (``rank_pattern``).
        kinds: keep only these kinds (of ``KINDS``: ``q``, ``k``, ``v``, ``qkv``, ``o``, ``up``, ``down``, ``gate``),
            or ``"all-linear"`` for all of them; None: the attention kinds ``q``, ``k``, ``v``, ``qkv`` (every kind
            when the config's ``target_modules`` is ``"all-linear"``; no filter when it names its own targets).
        layers: keep only these layer indices.
        modules: explicit full module names (``nn.Linear`` or ``Conv1D``); replaces discovery by name.
        lora_config: the user's config is the contract (``config_allows``): its ``target_modules`` (names or a
            regex) make the pool (every linear module they match; ``"all-linear"``: every kind), and its
            ``exclude_modules``, ``layers_to_transform`` and ``modules_to_save`` take modules out of it. Explicit
            ``modules`` the config leaves out are an ``InvalidConfigError``.
    """
    check_supported_model(model)
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
        refused = [name for name in modules if lora_config is not None and not config_allows(lora_config, name)]
        if refused:
            raise InvalidConfigError(
                f"modules {refused} are left out by lora_config (target_modules, exclude_modules, "
                "layers_to_transform or modules_to_save): drop them from modules=, or change the config"
            )
    else:
        by_config = explicit_targets(lora_config)
        names = [name for name, module in named.items()
                 if (by_config or module_kind(name)) and linear_shape(module) is not None]  # fmt: skip
        if lora_config is not None:
            names = [name for name in names if config_allows(lora_config, name)]
    wanted = None if kinds is None else named_kinds(kinds)
    if wanted is None and modules is None and not explicit_targets(lora_config):
        all_linear = lora_config is not None and lora_config.target_modules == ALL_LINEAR
        wanted = set(KINDS if all_linear else ATTENTION_KINDS)
    wanted_layers = None if layers is None else {int(layer) for layer in layers}
    candidates = []
    for name in names:
        kind, layer = module_kind(name) or name.rsplit(".", 1)[-1], _layer_index(name)
        if wanted is not None and kind not in wanted:
            continue
        if wanted_layers is not None and layer not in wanted_layers:
            continue
        in_features, out_features = linear_shape(named[name])  # type: ignore[misc]
        r = rank(name) if callable(rank) else rank
        num_params = r * (in_features + out_features)
        candidates.append(Candidate(name, layer, kind, in_features, out_features, num_params, is_conv1d(named[name])))
    if not candidates:
        config_note = "" if lora_config is None else (
            f", lora_config target_modules={lora_config.target_modules!r}, exclude_modules="
            f"{lora_config.exclude_modules!r}, layers_to_transform={lora_config.layers_to_transform!r}"
        )  # fmt: skip
        present = sorted({_layer_index(name) for name in names} - {-1})
        if wanted_layers is not None and present and not wanted_layers & set(present):
            config_note += f"; the model's layers are {present[0]} to {present[-1]}"
        raise NoCandidatesError(
            f"no candidate module matched (kinds={sorted(wanted) if wanted else 'all'}, "
            f"layers={sorted(wanted_layers) if wanted_layers is not None else 'all'}{config_note}): no linear module "
            "of the model has a known name (query/key/value, q_proj/k_proj/v_proj, c_attn, o_proj, up_proj, ...) "
            "under that filter; widen kinds/layers/the config's targets or pass modules=[full module names]"
        )
    return candidates


def check_supported_model(model: nn.Module) -> None:
    """``InvalidConfigError`` for a model the kernels cannot run: one that already carries a PEFT adapter, an
    encoder-decoder (T5, BART: two stacks whose layers share indices), or a model whose input is not token ids
    (vision, audio)."""
    if type(model).__name__.startswith("Peft") or hasattr(model, "peft_config"):
        raise InvalidConfigError(
            "the model already carries a PEFT adapter: pass the base transformers model "
            "(before get_peft_model), or peft_model.get_base_model() after unloading the adapter"
        )
    config = getattr(model, "config", None)
    supported = "text encoders and decoders: BERT, RoBERTa, DistilBERT, GPT-2, Llama-style and OPT models"
    if getattr(config, "is_encoder_decoder", False):
        raise InvalidConfigError(
            f"{type(model).__name__} is an encoder-decoder model, which the selector does not support: it supports "
            f"{supported}; for T5/BART-style models choose target_modules by hand"
        )
    main_input = getattr(model, "main_input_name", "input_ids")
    if main_input != "input_ids":
        raise InvalidConfigError(
            f"{type(model).__name__} takes {main_input!r}, not token ids: the selector supports {supported} "
            "(vision and audio models are not supported)"
        )


def rank_options(candidates: Sequence[Candidate], ranks: Iterable[int]) -> list[Candidate]:
    """Rank allocation: each candidate module once per rank of ``ranks`` (ascending), with that rank and its
    parameter count; a search space then takes at most one option per module (``ParamBudget.from_candidates``)."""
    chosen = check_ranks(ranks)
    return [
        replace(candidate, rank=rank, num_params=rank * (candidate.in_features + candidate.out_features))
        for candidate in candidates
        for rank in chosen
    ]


def check_ranks(ranks: Iterable[int]) -> tuple[int, ...]:
    """``ranks`` as distinct ascending integers >= 1, or ``InvalidConfigError`` saying what to pass."""
    if isinstance(ranks, (str, bytes)) or not isinstance(ranks, Iterable):
        raise InvalidConfigError(f"ranks={ranks!r} must be a list of LoRA ranks, e.g. ranks=(4, 8, 16)")
    values = tuple(ranks)
    if not values or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in values):
        raise InvalidConfigError(f"ranks={ranks!r} must be a nonempty list of integers >= 1, e.g. ranks=(4, 8, 16)")
    if len(set(values)) < len(values):
        raise InvalidConfigError(f"ranks={ranks!r} lists a rank twice: list each rank once")
    return tuple(sorted(values))


def placement_params(model: nn.Module, kinds: Iterable[str] | str, rank: int) -> int:
    """LoRA parameters of a placement: every module of ``kinds`` in every layer at ``rank``, e.g. PEFT's default
    placement ``("q", "v")``. ``NoCandidatesError`` when the model lacks a kind named (``"all-linear"``: every
    kind it has), since the count would silently be that of a smaller placement."""
    listed = [kinds] if isinstance(kinds, str) else list(kinds)
    if not listed:
        raise InvalidConfigError("a placement needs at least one kind, e.g. ('q', 'v')")
    wanted = named_kinds(kinds if isinstance(kinds, str) else listed)
    every = discover_candidates(model, rank=rank, kinds=ALL_LINEAR)
    present = {c.kind for c in every}
    missing = [] if ALL_LINEAR in listed else sorted(wanted - present)
    if missing:
        fused = " (q, k and v are fused here, as in GPT-2's c_attn: kind qkv)" if "qkv" in present else ""
        raise NoCandidatesError(
            f"the placement {tuple(listed)} needs kinds {missing} that this model lacks; its kinds are "
            f"{sorted(present)}{fused}: name kinds it has, or give a number of LoRA parameters"
        )
    return sum(c.num_params for c in every if c.kind in wanted)

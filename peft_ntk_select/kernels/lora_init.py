"""The LoRA initialisation at which kernels are taken: ranks, scales and the random A of each candidate.

PEFT's default init draws A and sets B = 0, so f is unchanged and only B has a gradient. The kernel of a
candidate is then s^2 sum_{t,t'} <delta_t, delta'_t'> <A x_t, A x'_t'> (docs/science.md section 4), and its
expectation over A is s^2 r Var(A_ij) times the full-weight kernel (``expected_factor``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from peft import LoraConfig
from peft.utils.other import get_pattern_key

from ..errors import InvalidConfigError

if TYPE_CHECKING:
    from ..candidates import Candidate

ADDITIVE_INITS = (True, "gaussian")


def validate_lora_config(config: LoraConfig) -> None:
    """Raise ``InvalidConfigError`` unless the config's LoRA starts at B = 0 on untouched base weights."""
    if not isinstance(config, LoraConfig):
        raise InvalidConfigError(
            f"lora_config is {type(config).__name__}: pass a peft.LoraConfig, e.g. LoraConfig(r=8, lora_alpha=8)"
        )
    init = config.init_lora_weights
    if not any(init is allowed or init == allowed for allowed in ADDITIVE_INITS):
        raise InvalidConfigError(
            f"init_lora_weights={init!r} starts LoRA with B != 0 or rewrites the base weights, so the kernel "
            "of a subset is not the sum of its modules' kernels: select with the default init "
            "(init_lora_weights=True or 'gaussian'), then switch the init of result.lora_config if you wish"
        )
    if config.use_dora:
        raise InvalidConfigError(
            "use_dora=True trains a magnitude vector and normalises the update, which this kernel does not "
            "model: select with use_dora=False, then set result.lora_config.use_dora = True if you wish"
        )
    if config.lora_bias:
        raise InvalidConfigError("lora_bias=True is not supported: select with lora_bias=False")
    if config.bias != "none":
        raise InvalidConfigError(
            f"bias={config.bias!r} trains bias vectors, whose kernel is not modelled yet: select with "
            "bias='none', then set result.lora_config.bias if you wish"
        )


def module_rank(config: LoraConfig, name: str) -> int:
    """LoRA rank PEFT gives module ``name`` (``rank_pattern`` first, then ``r``)."""
    key = get_pattern_key(list(config.rank_pattern or {}), name)
    return int((config.rank_pattern or {}).get(key, config.r))


def module_scale(config: LoraConfig, name: str) -> float:
    """LoRA scale s PEFT gives module ``name``: alpha / r, or alpha / sqrt(r) with ``use_rslora``."""
    key = get_pattern_key(list(config.alpha_pattern or {}), name)
    alpha = float((config.alpha_pattern or {}).get(key, config.lora_alpha))
    r = module_rank(config, name)
    return alpha / math.sqrt(r) if config.use_rslora else alpha / r


def a_variance(config: LoraConfig, name: str, in_features: int) -> float:
    """Var(A_ij) of PEFT's draw (``draw_adapter_init``): 1/(3 in_features) for the kaiming-uniform default
    U(-1/sqrt(in), 1/sqrt(in)), 1/r^2 for ``"gaussian"``."""
    if config.init_lora_weights == "gaussian":
        return 1.0 / module_rank(config, name) ** 2
    return 1.0 / (3.0 * in_features)


def expected_factor(config: LoraConfig, name: str, in_features: int) -> float:
    """s^2 r Var(A_ij): E_A[S_l] = expected_factor * K_W, since A has iid zero-mean entries and
    E_A[<A x, A x'>] = r Var(A_ij) <x, x'>."""
    return module_scale(config, name) ** 2 * module_rank(config, name) * a_variance(config, name, in_features)


def draw_adapter_init(candidates: Sequence[Candidate], config: LoraConfig, seed: int) -> dict[str, torch.Tensor]:
    """Draw lora_A for every candidate as PEFT's init does.

    ``init_lora_weights=True``: kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in));
    ``"gaussian"``: N(0, 1/r^2). Returns {candidate name: A (r, in_features) float32}.
    """
    generator = torch.Generator().manual_seed(seed)
    adapter_init = {}
    for candidate in candidates:
        r = module_rank(config, candidate.name)
        if config.init_lora_weights == "gaussian":
            a = torch.randn(r, candidate.in_features, generator=generator) / r
        else:
            bound = 1.0 / math.sqrt(candidate.in_features)
            a = (torch.rand(r, candidate.in_features, generator=generator) * 2 - 1) * bound
        adapter_init[candidate.name] = a
    return adapter_init

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
from .probes import LoraProbe

if TYPE_CHECKING:
    from ..candidates import Candidate

ADDITIVE_INITS = (True, "gaussian")


def validate_lora_config(config: LoraConfig) -> None:
    """Raise ``InvalidConfigError`` unless the config's LoRA starts at B = 0 on untouched base weights."""
    if not isinstance(config, LoraConfig):
        raise InvalidConfigError(
            f"lora_config is {type(config).__name__}: pass a peft.LoraConfig, e.g. LoraConfig(r=8, lora_alpha=8)"
        )
    _check_ranks_and_alphas(config)
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


def _check_ranks_and_alphas(config: LoraConfig) -> None:
    """Typed errors for a rank that is not an integer >= 1 or an alpha that is not a finite number > 0, in
    ``r``/``lora_alpha`` or in ``rank_pattern``/``alpha_pattern`` (PEFT takes them and fails later, or never)."""
    ranks = {"r": config.r, **{f"rank_pattern[{key!r}]": value for key, value in (config.rank_pattern or {}).items()}}
    for name, rank in ranks.items():
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise InvalidConfigError(f"lora_config {name}={rank!r}: a LoRA rank is an integer >= 1, e.g. r=8")
    alphas = {"lora_alpha": config.lora_alpha,
              **{f"alpha_pattern[{key!r}]": value for key, value in (config.alpha_pattern or {}).items()}}  # fmt: skip
    for name, alpha in alphas.items():
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
            raise InvalidConfigError(
                f"lora_config {name}={alpha!r}: LoRA's alpha is a finite number > 0 (the scale is alpha / r), "
                "e.g. lora_alpha=8"
            )


def module_rank(config: LoraConfig, name: str) -> int:
    """LoRA rank PEFT gives module ``name`` (``rank_pattern`` first, then ``r``)."""
    key = get_pattern_key(list(config.rank_pattern or {}), name)
    return int((config.rank_pattern or {}).get(key, config.r))


def candidate_rank(config: LoraConfig, candidate: Candidate) -> int:
    """The rank of a candidate: its own for a rank option (``Candidate.rank``), else the config's for its module."""
    return candidate.rank if candidate.rank is not None else module_rank(config, candidate.name)


def module_scale(config: LoraConfig, name: str, rank: int | None = None) -> float:
    """LoRA scale s PEFT gives module ``name`` at ``rank`` (None: the config's rank for it): alpha / r, or
    alpha / sqrt(r) with ``use_rslora``."""
    key = get_pattern_key(list(config.alpha_pattern or {}), name)
    alpha = float((config.alpha_pattern or {}).get(key, config.lora_alpha))
    r = rank or module_rank(config, name)
    return alpha / math.sqrt(r) if config.use_rslora else alpha / r


def a_variance(config: LoraConfig, name: str, in_features: int, rank: int | None = None) -> float:
    """Var(A_ij) of PEFT's draw at ``rank`` (None: the config's rank for the module): 1/(3 in_features) for the
    kaiming-uniform default U(-1/sqrt(in), 1/sqrt(in)), 1/r^2 for ``"gaussian"``."""
    if config.init_lora_weights == "gaussian":
        return 1.0 / (rank or module_rank(config, name)) ** 2
    return 1.0 / (3.0 * in_features)


def expected_factor(config: LoraConfig, name: str, in_features: int, rank: int | None = None) -> float:
    """s^2 r Var(A_ij) at ``rank`` (None: the config's): E_A[S_l] = expected_factor * K_W, since A has iid
    zero-mean entries and E_A[<A x, A x'>] = r Var(A_ij) <x, x'>."""
    r = rank or module_rank(config, name)
    return module_scale(config, name, r) ** 2 * r * a_variance(config, name, in_features, r)


def draw_adapter_init(candidates: Sequence[Candidate], config: LoraConfig, seed: int) -> dict[str, torch.Tensor]:
    """Draw lora_A for every candidate module as PEFT's init does, in module order.

    ``init_lora_weights=True``: kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in));
    ``"gaussian"``: N(0, 1/r^2). A module with several rank options (rank allocation) is drawn once, at its
    largest rank R; the A of a smaller rank r is then its first r rows (``option_a``), itself a draw at r.
    Returns {module name: A (R, in_features) float32}.
    """
    drawn_rank: dict[str, int] = {}
    for candidate in candidates:
        drawn_rank[candidate.name] = max(drawn_rank.get(candidate.name, 0), candidate_rank(config, candidate))
    generator = torch.Generator().manual_seed(seed)
    features = {candidate.name: candidate.in_features for candidate in candidates}
    adapter_init = {}
    for name, r in drawn_rank.items():
        if config.init_lora_weights == "gaussian":
            a = torch.randn(r, features[name], generator=generator) / r
        else:
            bound = 1.0 / math.sqrt(features[name])
            a = (torch.rand(r, features[name], generator=generator) * 2 - 1) * bound
        adapter_init[name] = a
    return adapter_init


def option_a(a: torch.Tensor, config: LoraConfig, rank: int) -> torch.Tensor:
    """The lora_A (rank, in) of a rank-``rank`` adapter from a module's draw ``a`` (R, in) at R >= rank: its first
    rows, rescaled to the init's spread at ``rank`` (``"gaussian"``: N(0, 1/r^2); kaiming-uniform: unchanged)."""
    return a[:rank] * _spread_ratio(config, rank, a.shape[0])


def _spread_ratio(config: LoraConfig, rank: int, drawn_rank: int) -> float:
    """std(A_ij) at ``rank`` over std at ``drawn_rank``: R / r for ``"gaussian"`` (N(0, 1/r^2)), else 1."""
    return drawn_rank / rank if config.init_lora_weights == "gaussian" else 1.0


def option_factor(config: LoraConfig, name: str, rank: int, drawn_rank: int) -> float:
    """B-gradient features of a rank-``rank`` option from those of the module's probe at ``drawn_rank``: the first
    ``rank`` columns of B times s(rank) std(rank) / (s(R) std(R)) (``option_a`` and the scale PEFT applies)."""
    if rank == drawn_rank:
        return 1.0
    spread = _spread_ratio(config, rank, drawn_rank)
    return module_scale(config, name, rank) / module_scale(config, name, drawn_rank) * spread


def lora_probes(
    candidates: Sequence[Candidate], config: LoraConfig, adapter_init: dict[str, torch.Tensor]
) -> dict[str, LoraProbe]:
    """One LoRA probe per candidate module, at its drawn A (R, in) and the scale PEFT applies at R."""
    out_features = {candidate.name: candidate.out_features for candidate in candidates}
    return {
        name: LoraProbe(a, module_scale(config, name, a.shape[0]), out_features[name])
        for name, a in adapter_init.items()
    }


def candidate_options(
    candidates: Sequence[Candidate], config: LoraConfig, adapter_init: dict[str, torch.Tensor]
) -> list[tuple[str, int, int, float]]:
    """Per candidate: (module probe name, drawn rank R, its rank r, ``option_factor``), which turn the features of
    the module's probe into the candidate's (``probes.option_features``)."""
    options = []
    for candidate in candidates:
        drawn, rank = adapter_init[candidate.name].shape[0], candidate_rank(config, candidate)
        options.append((candidate.name, drawn, rank, option_factor(config, candidate.name, rank, drawn)))
    return options

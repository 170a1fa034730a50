"""``compute_kernels``: base kernel K and one contribution S_l per candidate, with any engine and kernel."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from accelerate.utils import send_to_device
from peft import LoraConfig
from torch import nn

from ..errors import InvalidConfigError, InvalidInputError, KernelComputationError
from .base import base_probes
from .custody import exclusive_use
from .distributed import broadcast_kernels, is_main_process, sharded
from .expected import DEFAULT_MEMORY_BUDGET, expected_kernels
from .forward import check_padding_token, evaluation_mode, model_dtype_device, untraceable_reason
from .func import jacobians as func_jacobians
from .hooks import jacobians as hooks_jacobians
from .lora_init import candidate_options, draw_adapter_init, lora_probes, validate_lora_config
from .outputs import default_output, is_token_level, validate_output
from .probes import Probe, gram, option_features, sign_gram
from .reference import jacobians as reference_jacobians

if TYPE_CHECKING:
    from ..candidates import Candidate

logger = logging.getLogger(__name__)

Engine = Callable[..., dict[str, torch.Tensor]]
ENGINES: dict[str, Engine] = {"func": func_jacobians, "hooks": hooks_jacobians, "reference": reference_jacobians}
KERNELS = ("lora", "expected", "adam")


def validate_engine(engine: str, *, allow_auto: bool = False) -> None:
    choices = ["auto", *sorted(ENGINES)] if allow_auto else sorted(ENGINES)
    if engine not in choices:
        raise InvalidConfigError(f"unknown engine {engine!r}: choose one of {choices}")


def resolve_engine(engine: str, model: nn.Module) -> str:
    """``auto`` -> ``hooks`` when torch.func cannot trace the model or the model runs on a CUDA device (logged),
    else ``func``; others unchanged.

    On the GPU, ``hooks`` was faster than ``func`` in every case measured (H100: RoBERTa-base float32 and a
    0.79B Llama in bfloat16, trace and margin, chunk 8 and 32: ``benchmarks/gpu/results``); on the CPU the two
    are close, and ``func`` stays the default there.
    """
    if engine != "auto":
        return engine
    reason = untraceable_reason(model)
    if reason is None and model_dtype_device(model)[1].type == "cuda":
        reason = "the model runs on a CUDA device, where hooks measured faster than func"
    if reason is None:
        return "func"
    logger.info("engine='auto' uses 'hooks': %s", reason)
    return "hooks"


def validate_kernel(kernel: str) -> None:
    """A typed error for an unknown kernel."""
    if kernel not in KERNELS:
        raise InvalidConfigError(
            f"unknown kernel {kernel!r}: choose one of {KERNELS} ('lora': the LoRA kernel at the seeded A; "
            "'expected': its exact mean over A; 'adam': the SignGD kernel of Adam at the seeded A)"
        )


def validate_memory_budget(memory_budget: int) -> None:
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, int) or memory_budget < 1:
        raise InvalidConfigError(f"memory_budget={memory_budget!r}: pass a positive number of bytes, e.g. 2**30")


def compute_kernels(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    candidates: Sequence[Candidate],
    lora_config: LoraConfig,
    *,
    engine: str = "auto",
    output_mode: str | None = None,
    seed: int = 0,
    chunk_size: int = 8,
    show_progress: bool = False,
    kernel: str = "lora",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    candidate_passes: Sequence[Sequence[int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """NTK of the base parameters and of each candidate's LoRA at init, on one padded batch.

    Args:
        model: the transformers model (left unchanged).
        batch: ``input_ids`` and ``attention_mask`` (n, T), optional ``token_type_ids``, ``labels``.
        candidates: the L candidate modules.
        lora_config: r, lora_alpha, use_rslora, rank/alpha patterns, init, modules_to_save, task_type.
        engine: ``func``, ``hooks`` or ``reference`` (same kernels, different cost), or ``auto``: ``func``,
            or ``hooks`` where torch.func cannot trace the model (``resolve_engine``).
        output_mode: ``trace``, ``margin`` or ``loss``; None picks ``loss`` for causal LMs, else ``trace``.
        seed: seed of the LoRA A draw.
        kernel: ``lora``: S_l is the LoRA kernel at the seeded A (a random rank-r sketch);
            ``expected``: S_l is its exact mean over A, s^2 r Var(A_ij) times the kernel of the module's
            full weight (deterministic; see ``kernels.expected`` for the two formulations and the rule
            that picks one per candidate, logged at debug level). K is the same for both. ``adam``: the
            SignGD kernel of Adam at the seeded A, entry (i, j) = sum_a <grad f_a(x_i), sign grad f_a(x_j)> over
            the trained parameters (the head in K, each candidate's B in S_l): asymmetric; the search ranks by
            its symmetric part (``search.rank``).
        memory_budget: bytes, ``expected`` only: bound on the features held per engine pass and on the
            token Gram intermediates (more passes when exceeded).
        candidate_passes: ``lora`` and ``adam`` only: candidate indices per engine pass, so that one pass's features are
            held at a time (``memory.plan_memory`` makes them); None: one pass.

    Under an initialised ``torch.distributed`` with several processes (``accelerate launch``), the samples
    of every engine pass are sharded over the ranks and their features gathered (``kernels.distributed``);
    every rank returns rank 0's kernels; progress shows on rank 0 only.

    Returns:
        ``(K, S, adapter_init)``: K (n, n) float64, zero when no parameter is trained in every pick;
        S (L, n, n) float64 in candidate order; {candidate name: lora_A (r, in_features)}, the seeded draw
        (with ``expected``, the kernels do not depend on it, but the draw is returned all the same so that
        a result can still start fine-tuning from it).
    """
    validate_lora_config(lora_config)
    validate_engine(engine, allow_auto=True)
    validate_kernel(kernel)
    validate_memory_budget(memory_budget)
    output = output_mode or default_output(model)
    check_batch(model, batch, output)
    with exclusive_use(model):
        return kernel_pass(
            model, batch, candidates, lora_config, engine=resolve_engine(engine, model), output=output, seed=seed,
            chunk_size=chunk_size, show_progress=show_progress, kernel=kernel, memory_budget=memory_budget,
            candidate_passes=candidate_passes,
        )  # fmt: skip


def check_batch(model: nn.Module, batch: dict[str, torch.Tensor], output: str) -> None:
    """Typed errors for a batch the kernel pass cannot use with ``output``: too few samples, a mode that does
    not fit the model or the labels, padding without a pad token."""
    validate_output(output, model, batch)
    if batch["input_ids"].shape[0] < 2:
        raise InvalidInputError("a kernel needs at least 2 samples: pass more examples")
    check_padding_token(model, batch, is_token_level(model))


def kernel_pass(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    candidates: Sequence[Candidate],
    lora_config: LoraConfig,
    *,
    engine: str,
    output: str,
    seed: int,
    chunk_size: int,
    show_progress: bool,
    kernel: str,
    memory_budget: int,
    candidate_passes: Sequence[Sequence[int]] | None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``compute_kernels`` for arguments already validated (``engine`` resolved, ``output`` a mode that fits the
    batch): ``NTKSelector`` validates each once, at construction or in ``plan_memory``, then calls this."""
    adapter_init = draw_adapter_init(candidates, lora_config, seed)
    base = base_probes(model, lora_config, exclude=[c.name for c in candidates])
    _, device = model_dtype_device(model)
    batch = send_to_device(batch, device)
    progress = show_progress and is_main_process()
    if kernel == "expected":
        with evaluation_mode(model):
            base_kernel, contributions = expected_kernels(
                model, batch, candidates, lora_config, base, output, engine=sharded(ENGINES[engine]),
                unpadded_inputs=engine == "reference", chunk_size=chunk_size, progress=progress,
                memory_budget=memory_budget,
            )  # fmt: skip
    else:
        lora: dict[str, Probe] = dict(lora_probes(candidates, lora_config, adapter_init))
        options = candidate_options(candidates, lora_config, adapter_init)
        product = sign_gram if kernel == "adam" else gram
        base_kernel, contributions = lora_kernels(model, batch, base, lora, options, engine, output, chunk_size,
                                                  progress, candidate_passes, product)  # fmt: skip
    broadcast_kernels(base_kernel, contributions)
    check_finite(base_kernel, contributions, candidates, model)
    return base_kernel.cpu(), contributions.cpu(), adapter_init


def lora_kernels(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    base: dict[str, Probe],
    lora: dict[str, Probe],
    options: Sequence[tuple[str, int, int, float]],
    engine: str,
    output: str,
    chunk_size: int,
    progress: bool,
    candidate_passes: Sequence[Sequence[int]] | None = None,
    product: Callable[[torch.Tensor], torch.Tensor] = gram,
) -> tuple[torch.Tensor, torch.Tensor]:
    """K (n, n) from the ``base`` probes and S (L, n, n), one per candidate of ``options``, float64.

    ``lora``: the LoRA probes by module name; ``options``: per candidate, (probe name, the probe's rank R, the
    candidate's rank r, factor), see ``lora_init.candidate_options`` (r = R and factor 1 without rank allocation).
    ``product``: features (n, c, P) -> kernel (n, n): ``gram`` (the SGD kernel) or ``sign_gram`` (Adam's).

    ``candidate_passes``: candidate indices per engine pass (the base probes ride with the first), so that only
    one pass's features are held at a time; None: one pass. Under several processes each rank runs the
    engine on its shard of the samples and the features are gathered, so every rank forms all n x n kernels.
    """
    n = batch["input_ids"].shape[0]
    run = sharded(ENGINES[engine])
    base_kernel = torch.zeros(n, n, dtype=torch.float64, device=batch["input_ids"].device)
    contributions = torch.zeros(len(options), n, n, dtype=torch.float64, device=base_kernel.device)
    for number, group in enumerate(candidate_passes or [range(len(options))]):
        modules = dict.fromkeys(options[i][0] for i in group)
        probes = {**(base if number == 0 else {}), **{name: lora[name] for name in modules}}
        with evaluation_mode(model):
            features = run(model, batch, probes, output, chunk_size=chunk_size, progress=progress)
        if number == 0:
            for name in base:
                base_kernel += product(features.pop(name))
        for i in group:
            name, drawn_rank, rank, factor = options[i]
            contributions[i] = product(option_features(features[name], drawn_rank, rank, factor))
    return base_kernel, contributions


def check_finite(
    base_kernel: torch.Tensor, contributions: torch.Tensor, candidates: Sequence[Candidate], model: nn.Module
) -> None:
    """Raise ``KernelComputationError`` naming the kernels with inf/nan entries (overflow in half precision)."""
    bad = [c.name for c, part in zip(candidates, contributions, strict=True) if not bool(torch.isfinite(part).all())]
    if not bool(torch.isfinite(base_kernel).all()):
        bad.insert(0, "the base kernel K (the head)")
    if bad:
        dtype, _ = model_dtype_device(model)
        raise KernelComputationError(
            f"non-finite kernel values for {', '.join(bad[:3])}{' and others' if len(bad) > 3 else ''} with the "
            f"model in {str(dtype).removeprefix('torch.')}: the forward or backward pass overflowed; compute the "
            "kernels in float32 (NTKSelector(..., dtype=torch.float32)), or check the model's weights and inputs"
        )

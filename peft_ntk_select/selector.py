"""``NTKSelector``: orchestrates inputs -> candidates -> kernels -> search -> result."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from peft import LoraConfig
from torch import nn

from .candidates import ALL_LINEAR, Candidate, discover_candidates, placement_params, rank_options
from .diagnostics.stability import StabilityReport, stability
from .errors import InvalidConfigError, NoCandidatesError
from .inputs import prepare_samples
from .kernels.compute import kernel_pass, resolve_engine, validate_kernel
from .kernels.custody import exclusive_use, in_dtype, on_device
from .kernels.forward import model_dtype_device
from .kernels.head import HeadFit, fit_head, redraw_head, swapped_parameters
from .kernels.lora_init import module_rank, validate_lora_config
from .kernels.memory import MemoryPlan, default_max_memory, plan_memory
from .kernels.outputs import default_output, is_token_level
from .result import SelectionResult
from .sample_checks import check_samples
from .search import (
    DEFAULT_BEAM_WIDTH,
    DEFAULT_MAX_NODES,
    DEFAULT_MAX_SUBSETS,
    DEFAULT_OBJECTIVE,
    SearchSpace,
    get_objective,
    is_integer,
    regression_targets,
)
from .settings import KernelSettings, RankingSettings

logger = logging.getLogger(__name__)
DEFAULT_BUDGET = 3
STABILITY_SUBSETS = 20_000  # stability() compares whole rankings up to this many subsets


class NTKSelector:
    """Rank subsets of LoRA target modules by the spectrum of the empirical NTK (Algorithm 2).

    ``select(data)`` computes the base kernel K (parameters trained in every pick: the task head) and one
    contribution S_l per candidate, then ranks the admissible subsets C (by default: every subset of
    ``budget`` candidates) by ``objective``; the default ranks the spectral ratio
    r_C = lambda_max(K + S_C + sigma I) / lambda_max(K + sigma I) highest first, the direction that trained
    best in ``benchmarks/compare_picks.py`` on two tasks (``objective="min_ratio"``: lowest first, Algorithm 2
    as printed).

    Args:
        model: a transformers model (not a PeftModel); it is left exactly as it was.
        lora_config: the LoRA settings to select for (r, lora_alpha, use_rslora, patterns, task_type,
            modules_to_save); it is never modified, and it is the contract: its ``target_modules`` (names, a regex
            or ``"all-linear"``) are the candidate pool, and ``exclude_modules`` and ``layers_to_transform`` (with
            ``layers_pattern``) take candidates out (``discover_candidates``); the pick's ``lora_config`` keeps them.
        budget: number of modules in a subset (the default space, ``Budget(budget)``); None: 3, unless one of the
            three options below defines the space instead (giving both is an error).
        param_budget: instead, every nonempty subset whose LoRA parameters sum to at most this; or kinds, e.g.
            ``("q", "v")``: the LoRA parameters of those kinds in every layer at the config's ``r``
            (``placement_params``: PEFT's default placement), so picks are compared at equal parameters.
        layers_per_pick, kind_sets: instead, the paper's structured space: every choice of
            ``layers_per_pick`` layers with one kind set, e.g. ``kind_sets=[("q", "v"), ("k",)]``.
        space: instead, any ready space from ``peft_ntk_select.search.spaces`` over these candidates.
        search: ``auto`` (exhaustive up to ``max_subsets`` subsets, else exact branch-and-bound for the
            objectives that admit a bound, beam search for the others), ``exhaustive``, ``exact``, ``greedy``
            or ``beam`` (see ``rank_subsets``).
        top: ranked subsets kept; None: all with exhaustive search, 10 otherwise.
        max_nodes, time_limit, beam_width: limits of the non-exhaustive searches.
        num_samples: samples drawn (with ``seed``) from the data.
        sigma: ridge strength sigma > 0.
        seed: seed of the sample draw and, unless ``init_seed`` is given, of the LoRA A draw.
        init_seed: seed of the LoRA A draw; None: ``seed``.
        kernel: ``lora`` (the kernel at the drawn A, what training starts from) or ``expected`` (its exact
            mean over the init's distribution of A: deterministic, see ``compute_kernels``).
        objective: what subsets are ranked by, best first (``peft_ntk_select.search.objectives.OBJECTIVES``):
            ``min_ratio`` is Algorithm 2 as printed; ``max_ratio``, ``max_lambda_max``, ``min_risk``,
            ``max_alignment``, ``min_kappa``, ``max_effective_rank``, ``min_loo_error`` are the alternatives.
        base: ``head`` (K = kernel of the parameters trained in every pick, the new head) or ``none`` (K = 0).
        dtype: compute the kernels with the model cast to this dtype (e.g. ``torch.float32`` for a half-precision
            model that overflows); the model's own tensors are put back afterwards. None: the model's dtype.
        engine: ``func`` (torch.func), ``hooks`` (batched with hooks), ``reference`` (per-sample loop), or
            ``auto``: ``hooks`` on a CUDA device (faster there in every measured case) or where torch.func cannot
            trace the model (dispatched by accelerate, gradient checkpointing's input hooks, backward hooks), else
            ``func``; the same kernels either way (``kernels.compute.resolve_engine``).
        output_mode: ``trace``, ``margin`` or ``loss``; None: ``loss`` for causal LMs, else ``trace``.
        kinds, layers, modules: narrow the candidates (see ``discover_candidates``).
        ranks: rank allocation, e.g. ``(4, 8, 16)``: each candidate module may get one of these ranks or none,
            within ``param_budget`` (required). Each rank's kernel is taken at an A drawn at that rank (the first
            rows of the module's draw at the largest) with the scale PEFT applies there (alpha / r, or
            alpha / sqrt(r) with rsLoRA); the pick's ``lora_config`` carries a ``rank_pattern`` and every ranked
            entry its ``ranks``. None: every module at the config's rank.
        device: where to compute (the model is moved there and back); None: where the model is.
        max_memory: cap on what the kernel pass adds beyond the model's weights, in bytes or as "8GB";
            samples per forward pass and candidates per pass are planned to stay under it (``memory``; the
            plan is logged and kept in ``result.memory_plan``). None: a safe fraction of the free memory.
        show_progress: tqdm progress bars.
        chunk_size: the most samples per forward pass (fewer when ``max_memory`` requires).
        max_subsets: largest space searched exhaustively.
        head: ``init`` (the head as it is: a new head's random init) or ``probe`` (LP-FT: fit the head's
            output layer by linear probing on the samples first, see ``peft_ntk_select.kernels.head``; needs labels).

    The keywords are collected into ``self.kernel_settings`` (``KernelSettings``: how the kernels are made)
    and ``self.ranking_settings`` (``RankingSettings``: how subsets are ranked), each validated once on
    construction; ``SelectionResult.rerank`` changes the ranking settings without recomputing the kernels.
    """

    def __init__(
        self,
        model: nn.Module,
        lora_config: LoraConfig,
        *,
        budget: int | None = None,
        param_budget: int | Sequence[str] | str | None = None,
        layers_per_pick: int | None = None,
        kind_sets: Sequence[Sequence[str] | str] = (("q", "v"),),
        space: SearchSpace | None = None,
        search: str = "auto",
        top: int | None = None,
        max_nodes: int | None = DEFAULT_MAX_NODES,
        time_limit: float | None = None,
        beam_width: int = DEFAULT_BEAM_WIDTH,
        num_samples: int = 32,
        sigma: float = 1e-4,
        seed: int = 0,
        engine: str = "auto",
        output_mode: str | None = None,
        kinds: Iterable[str] | None = None,
        layers: Iterable[int] | None = None,
        modules: Sequence[str] | None = None,
        ranks: Sequence[int] | None = None,
        device: str | torch.device | None = None,
        show_progress: bool = True,
        chunk_size: int = 8,
        max_subsets: int = DEFAULT_MAX_SUBSETS,
        head: str = "init",
        init_seed: int | None = None,
        kernel: str = "lora",
        objective: str = DEFAULT_OBJECTIVE,
        base: str = "head",
        dtype: torch.dtype | None = None,
        max_memory: int | str | None = None,
    ) -> None:
        validate_lora_config(lora_config)
        spaces = [name for name, value in (("param_budget", param_budget), ("layers_per_pick", layers_per_pick),
                                           ("space", space)) if value is not None]  # fmt: skip
        if budget is not None and spaces:
            raise InvalidConfigError(f"budget and {spaces[0]} each define the search space: give only one")
        if param_budget is not None and not is_integer(param_budget):
            if not _is_kinds(param_budget):
                raise InvalidConfigError(
                    f"param_budget={param_budget!r}: pass a number of LoRA parameters (an integer), or kinds whose "
                    "placement in every layer sets it, e.g. param_budget=('q', 'v')"
                )
            try:
                placement, param_budget = param_budget, placement_params(model, param_budget, lora_config.r)
            except NoCandidatesError as err:
                raise NoCandidatesError(f"param_budget={param_budget!r}: {err}") from err
            logger.info("param_budget: %s LoRA parameters, those of %s in every layer at r=%d", f"{param_budget:,}",
                        placement, lora_config.r)  # fmt: skip
        self.kernel_settings = KernelSettings(
            num_samples=num_samples, seed=seed, init_seed=init_seed, kernel=kernel, base=base, head=head,
            engine=engine, output_mode=output_mode or default_output(model), kinds=kinds, layers=layers,
            modules=modules, ranks=ranks, chunk_size=chunk_size, max_memory=max_memory, dtype=dtype, device=device,
            show_progress=show_progress,
        )  # fmt: skip
        self.ranking_settings = RankingSettings(
            budget=DEFAULT_BUDGET if budget is None else budget, param_budget=param_budget,
            layers_per_pick=layers_per_pick, kind_sets=kind_sets, space=space, objective=objective, sigma=sigma,
            search=search, top=top, max_nodes=max_nodes, time_limit=time_limit, beam_width=beam_width,
            max_subsets=max_subsets,
        )  # fmt: skip
        self.model = model
        self.lora_config = lora_config
        self.candidates: list[Candidate] = discover_candidates(
            model,
            rank=lambda name: module_rank(lora_config, name),
            kinds=self.kernel_settings.kinds,
            layers=self.kernel_settings.layers,
            modules=self.kernel_settings.modules,
            lora_config=lora_config,
        )
        _log_absent_kinds(self.kernel_settings.kinds, self.candidates)
        if self.kernel_settings.ranks is not None:
            check_rank_allocation(lora_config, self.ranking_settings)
            self.candidates = rank_options(self.candidates, self.kernel_settings.ranks)
        self.space = self.ranking_settings.space_for(self.candidates)

    def select(self, data: Any) -> SelectionResult:
        """Compute the kernels on ``num_samples`` samples of ``data`` and rank the admissible subsets.

        Args:
            data: a dict of tensors (tokenizer output), a tokenized ``datasets.Dataset`` or any map-style
                dataset of dicts, or a DataLoader of dict batches; ``labels``/``label`` are optional.
        """
        settings = self.kernel_settings
        return self._select(data, settings.seed, settings.adapter_seed, settings.kernel)

    def stability(
        self,
        data: Any,
        seeds: Sequence[int] = (0, 1, 2, 3, 4),
        sample_draws: Sequence[int] = (0, 1, 2, 3, 4),
        kernels: Sequence[str] = ("lora", "expected"),
        redraw_head: bool = True,
    ) -> list[StabilityReport]:
        """Rerun the selection over init seeds and over sample draws, and compare the rankings.

        An init seed draws the LoRA A and, with ``redraw_head`` (for a new, untrained head; pass False
        for a trained one), a new head as transformers initialises it (``head.redraw_head``). Returns one
        ``StabilityReport`` per kernel and varied axis (Kendall tau between runs, top-1 agreement, how
        often each candidate is picked); ``format_stability`` prints them as a table. Kendall tau compares
        every subset of a space of at most ``STABILITY_SUBSETS`` subsets, else the union of the runs'
        rankings. Costs one kernel computation per run. The model is left unchanged.
        """
        for kernel in kernels:
            validate_kernel(kernel)
        count = len(self.candidates)
        subsets = list(self.space.subsets(count)) if self.space.size(count) <= STABILITY_SUBSETS else None

        def run(sample_seed: int, init_seed: int, kernel: str, axis: str) -> SelectionResult:
            head_seed = init_seed if redraw_head and axis == "init" else None
            return self._select(data, sample_seed, init_seed, kernel, head_seed)

        return stability(
            run, seeds=seeds, sample_draws=sample_draws, base_seed=self.kernel_settings.seed, kernels=kernels,
            subsets=subsets, redraw_head=redraw_head,
        )  # fmt: skip

    def _select(
        self, data: Any, seed: int, init_seed: int, kernel: str, head_seed: int | None = None
    ) -> SelectionResult:
        """``select`` with explicit seeds; ``head_seed``: redraw the head with it first (None: keep it)."""
        settings = self.kernel_settings
        pad_token_id = getattr(getattr(self.model, "config", None), "pad_token_id", None)
        batch, indices = prepare_samples(data, num_samples=settings.num_samples, seed=seed, pad_token_id=pad_token_id)
        check_samples(self.model, batch, needs_labels=self._needs_labels())
        get_objective(self.ranking_settings.objective, "labels" in batch)  # labels it needs: before the kernels
        new_head = None if head_seed is None else redraw_head(self.model, self.lora_config, head_seed)
        with (
            exclusive_use(self.model),
            on_device(self.model, settings.device),
            in_dtype(self.model, settings.dtype),
            swapped_parameters(self.model, new_head),
        ):
            engine = resolve_engine(settings.engine, self.model)  # where the model now is
            logger.info(
                "NTK selection: %d candidates, %d samples of length %d, engine=%s, output_mode=%s, kernel=%s",
                len(self.candidates), len(indices), batch["input_ids"].shape[1], engine, settings.output_mode, kernel,
            )  # fmt: skip
            fit = self._fit_head(batch)
            with swapped_parameters(self.model, None if fit is None else fit.values()):
                plan = self._plan_memory(batch)
                base_kernel, contributions, adapter_init = kernel_pass(
                    self.model, batch, self.candidates, self.lora_config, engine=engine,
                    output=settings.output_mode, seed=init_seed, chunk_size=plan.chunk_size,
                    show_progress=settings.show_progress, kernel=kernel, memory_budget=plan.feature_budget,
                    candidate_passes=plan.passes,
                )  # fmt: skip
        if settings.base == "none":
            base_kernel = torch.zeros_like(base_kernel)
        return SelectionResult.from_kernels(
            self.candidates, base_kernel, contributions, self.lora_config, settings=self.ranking_settings,
            targets=self._targets(batch), adapter_init=adapter_init, seed=seed, sample_indices=indices,
            engine=engine, output_mode=settings.output_mode, head=settings.head,
            head_fit=None if fit is None else fit.summary(), init_seed=init_seed, kernel=kernel, base=settings.base,
            memory_plan=plan.summary(),
        )  # fmt: skip

    def _needs_labels(self) -> bool:
        """True when the kernels use the sample labels: the linear-probe head, or a sequence classifier's loss."""
        settings = self.kernel_settings
        return settings.head == "probe" or (settings.output_mode == "loss" and not is_token_level(self.model))

    def _plan_memory(self, batch: dict[str, torch.Tensor]) -> MemoryPlan:
        """The chunk plan under ``max_memory`` (default: a fraction of the device's free memory), logged."""
        settings = self.kernel_settings
        cap = settings.max_memory or default_max_memory(model_dtype_device(self.model)[1])
        plan = plan_memory(self.model, batch, self.candidates, self.lora_config, settings.output_mode,
                           max_memory=cap, chunk_size=settings.chunk_size)  # fmt: skip
        logger.info("memory plan: %s", plan.describe())
        return plan

    def _fit_head(self, batch: dict[str, torch.Tensor]) -> HeadFit | None:
        """The linear-probe head for ``head="probe"``, else None."""
        if self.kernel_settings.head != "probe":
            return None
        fit = fit_head(self.model, batch, self.lora_config, batch.get("labels"))
        logger.info(
            "head='probe': %s fitted on %d samples (accuracy %.3f), weight norm %.3g -> %.3g",
            fit.layer, batch["input_ids"].shape[0], fit.train_accuracy, fit.norm_before, fit.norm_after,
        )  # fmt: skip
        return fit

    def _targets(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Regression targets from sample labels (classifiers only), for the risk and its bounds."""
        labels = batch.get("labels")
        if labels is None or labels.dim() != 1:
            return None
        num_labels = int(getattr(getattr(self.model, "config", None), "num_labels", 1) or 1)
        return regression_targets(labels, num_labels, signed=self.kernel_settings.output_mode == "margin")


def _log_absent_kinds(kinds: tuple[str, ...] | None, candidates: Sequence[Candidate]) -> None:
    """A warning naming the ``kinds`` asked for that no candidate has (the others are used): e.g. ``gate`` on BERT,
    or ``q`` on GPT-2, whose q, k and v are one fused ``qkv`` module. None and ``"all-linear"`` name no kind."""
    if kinds is None or ALL_LINEAR in kinds:
        return
    found = {candidate.kind for candidate in candidates}
    absent = sorted(set(kinds) - found)
    if absent:
        logger.warning("kinds %s match no candidate module (the candidates' kinds: %s): only %s are used", absent,
                       sorted(found), sorted(set(kinds) & found))  # fmt: skip


def check_rank_allocation(lora_config: LoraConfig, ranking: RankingSettings) -> None:
    """Typed errors for ``ranks=`` without a parameter budget, or beside a ``rank_pattern`` of the user's."""
    if ranking.param_budget is None:
        raise InvalidConfigError(
            "ranks= allocates ranks within a parameter budget: pass param_budget= too, e.g. "
            "param_budget=('q', 'v') (the LoRA parameters of PEFT's default placement)"
        )
    if lora_config.rank_pattern:
        raise InvalidConfigError(
            "ranks= chooses each module's rank, but lora_config has a rank_pattern: drop one of them "
            "(the pick's lora_config carries the chosen ranks as its rank_pattern)"
        )


def find_ntk_target_modules(
    model: nn.Module,
    data: Any,
    budget: int | None = None,
    lora_config: LoraConfig | None = None,
    **selector_options: Any,
) -> list[str]:
    """The full names of the modules ``NTKSelector`` picks (``budget`` of them; None: 3, or a ``param_budget`` in
    ``selector_options``), for ``LoraConfig(target_modules=...)``.

    The one-line form of ``NTKSelector(model, lora_config, budget=budget, **selector_options).select(data)``
    (like PEFT's ``find_kappa_target_modules``). ``lora_config`` None: ``LoraConfig(r=8, lora_alpha=8)`` with the
    task type of the model's head (``SEQ_CLS`` for classifiers, ``CAUSAL_LM`` for causal LMs), so that the base
    kernel is that of the head PEFT will train. Returns the picked modules in candidate order.
    """
    config = lora_config if lora_config is not None else LoraConfig(r=8, lora_alpha=8, task_type=_task_type(model))
    result = NTKSelector(model, config, budget=budget, **selector_options).select(data)
    return list(result.ranking[0].modules)


def _is_kinds(value: object) -> bool:
    """True for a kind name or a list of them (``param_budget=("q", "v")``)."""
    return isinstance(value, str) or (isinstance(value, Iterable) and all(isinstance(kind, str) for kind in value))


def _task_type(model: nn.Module) -> str | None:
    if is_token_level(model):
        return "CAUSAL_LM"
    return "SEQ_CLS" if type(model).__name__.endswith("ForSequenceClassification") else None

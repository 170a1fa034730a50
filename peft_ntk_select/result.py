"""``SelectionResult``: the ranking, the chosen ``LoraConfig``, the kernels, and JSON round-trip."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig
from peft.config import PeftConfigMixin
from torch import nn

from .candidates import Candidate
from .errors import InvalidConfigError, InvalidInputError
from .kernels.lora_init import candidate_rank, option_a
from .output import atomic_folder
from .report import plot_report, spectrum_rows
from .search import OBJECTIVES, Budget, Certificate, ScoredSubset, objective_values, score_subsets
from .settings import RankingSettings

FORMAT = "peft_ntk_select.SelectionResult"
FORMAT_VERSION = 2  # 2: ranking settings kept (for rerank), output -> output_mode, certificate.search
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class RankedSubset:
    """One ranked subset: its modules and the spectrum of K + S_C (see ``spectral`` for conventions)."""

    modules: tuple[str, ...]
    ratio: float
    lambda_max: float
    lambda_min: float
    kappa: float
    num_params: int
    risk: float | None = None
    risk_lower: float | None = None
    risk_upper: float | None = None
    accuracy: float | None = None
    score: float | None = None
    ranks: dict[str, int] | None = None


def ranked(entry: ScoredSubset, candidates: Sequence[Candidate], config: LoraConfig) -> RankedSubset:
    """A scored subset of candidate indices as a ranked subset of module names with its parameter count and
    the LoRA rank of each module (``ranks``)."""
    chosen = [candidates[i] for i in entry.indices]
    return RankedSubset(
        modules=tuple(c.name for c in chosen),
        num_params=sum(c.num_params for c in chosen),
        ranks={c.name: candidate_rank(config, c) for c in chosen},
        **{key: value for key, value in asdict(entry).items() if key != "indices"},
    )


def config_with_targets(config: LoraConfig, candidates: Sequence[Candidate]) -> LoraConfig:
    """A copy of ``config`` targeting exactly these candidates by full module name (the user's is untouched);
    with rank options (rank allocation), ``rank_pattern`` gives each its rank, keyed by its escaped full name
    so that it matches that module alone."""
    picked = copy.deepcopy(config)
    picked.target_modules = {candidate.name for candidate in candidates}
    picked.fan_in_fan_out = any(candidate.fan_in_fan_out for candidate in candidates)
    if any(candidate.rank is not None for candidate in candidates):
        picked.rank_pattern = {re.escape(c.name): candidate_rank(config, c) for c in candidates}
    return picked


def _config_to_json(config: LoraConfig) -> dict[str, Any]:
    return {key: sorted(value) if isinstance(value, set) else value for key, value in config.to_dict().items()}


def _tensor_to_json(tensor: torch.Tensor | None) -> dict[str, Any] | None:
    return None if tensor is None else {"dtype": str(tensor.dtype).removeprefix("torch."), "data": tensor.tolist()}


def _tensor_from_json(value: dict[str, Any] | None) -> torch.Tensor | None:
    return None if value is None else torch.tensor(value["data"], dtype=getattr(torch, value["dtype"]))


@dataclass
class SelectionResult:
    """What ``NTKSelector.select`` found.

    Attributes:
        candidates: the L candidates, in the order of ``contributions``.
        ranking: ranked subsets, best first by ``objective`` (each entry's ``score``).
        lora_config: a copy of the user's config targeting ``ranking[0].modules``.
        base_kernel: K (n, n) float64; contributions: S (L, n, n) float64.
        adapter_init: {candidate name: lora_A (r, in_features)} at which the kernels were taken.
        settings: how the ranking was made (``RankingSettings``: space, objective, sigma, search);
            ``sigma``, ``objective`` and ``budget`` read from it.
        seed, sample_indices, engine, output_mode: how the kernels were made.
        targets: Y (n, c) float64 built from the sample labels (None without labels), for the risk.
        space: the admissible space searched (its description); certificate: what the search proved.
        init_seed: seed of the LoRA A draw; kernel: ``lora`` or ``expected`` (mean over A).
        base: ``head`` (K = the kernel of the parameters trained in every pick) or ``none`` (K = 0).
        head: ``init`` or ``probe``; head_fit: for ``probe``, the fitted layer, its accuracy on the
            samples and its weight norm before and after (``HeadFit.summary``).
        memory_plan: how the kernel pass was cut to fit its memory cap (``MemoryPlan.summary``).
    """

    candidates: list[Candidate]
    ranking: list[RankedSubset]
    lora_config: LoraConfig
    base_kernel: torch.Tensor
    contributions: torch.Tensor
    adapter_init: dict[str, torch.Tensor]
    settings: RankingSettings
    seed: int = 0
    sample_indices: list[int] = field(default_factory=list)
    engine: str = ""
    output_mode: str = ""
    targets: torch.Tensor | None = None
    space: str = ""
    certificate: Certificate | None = None
    head: str = "init"
    head_fit: dict[str, Any] | None = None
    init_seed: int | None = None
    kernel: str = "lora"
    base: str = "head"
    memory_plan: dict[str, Any] | None = None

    @property
    def sigma(self) -> float:
        return self.settings.sigma

    @property
    def objective(self) -> str:
        return self.settings.objective

    @property
    def budget(self) -> int | None:
        """k of a ``Budget`` space, else None."""
        settings = self.settings
        if isinstance(settings.space, Budget):
            return settings.space.k
        defined = (settings.space, settings.param_budget, settings.layers_per_pick)
        return settings.budget if all(value is None for value in defined) else None

    @classmethod
    def from_kernels(
        cls,
        candidates: Sequence[Candidate],
        base_kernel: torch.Tensor,
        contributions: torch.Tensor,
        lora_config: LoraConfig,
        *,
        settings: RankingSettings | None = None,
        targets: torch.Tensor | None = None,
        adapter_init: dict[str, torch.Tensor] | None = None,
        **metadata: Any,
    ) -> SelectionResult:
        """Rank the subsets of ``candidates`` on given kernels, as ``NTKSelector.select`` does after computing them.

        Args:
            candidates: the L candidates; base_kernel: K (n, n); contributions: S (L, n, n).
            lora_config: the user's config (copied, targeting the best subset).
            settings: the ranking settings (default ``RankingSettings()``: budget 3, the default objective).
            targets: Y (n, c) for the label objectives and the risk, or None.
            adapter_init: the lora_A the kernels were taken at (for ``apply_init``), or None.
            metadata: the other fields (``seed``, ``sample_indices``, ``engine``, ``output_mode``, ``kernel``...).
        """
        settings = settings or RankingSettings()
        space, found = settings.rank(contributions, base_kernel, candidates, targets)
        best = [candidates[i] for i in found.ranking[0].indices]
        return cls(
            candidates=list(candidates), ranking=[ranked(entry, candidates, lora_config) for entry in found.ranking],
            lora_config=config_with_targets(lora_config, best), base_kernel=base_kernel.double(),
            contributions=contributions.double(), adapter_init=dict(adapter_init or {}), settings=settings,
            targets=targets, space=space.describe(), certificate=found.certificate,
            **metadata,
        )  # fmt: skip

    def rerank(self, **ranking: Any) -> SelectionResult:
        """The result a fresh ``select`` with these ranking settings would give, from the stored kernels.

        ``ranking``: any ``RankingSettings`` field (``objective``, ``budget``, ``param_budget``,
        ``layers_per_pick``/``kind_sets``, ``space``, ``sigma``, ``search``, ``top``, ...); the others keep
        this result's values. Giving one of ``budget``, ``param_budget``, ``layers_per_pick`` or ``space``
        replaces how the space was defined. No engine runs: the kernels, samples and init stay.
        """
        unknown = sorted(set(ranking) - {f.name for f in fields(RankingSettings)})
        if unknown:
            raise InvalidConfigError(f"rerank() got {unknown}: pass fields of RankingSettings, e.g. objective=")
        space_keys = {"budget", "param_budget", "layers_per_pick", "space"}
        previous = self.settings
        if space_keys & set(ranking):
            previous = replace(previous, **{key: None for key in space_keys - {"budget"}})
        elif previous.space_for(self.candidates).describe() != self.space:
            raise InvalidConfigError(
                f"this result was ranked over a custom space ({self.space}) that is not saved: pass space="
            )
        settings = replace(previous, **ranking)
        metadata = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("candidates", "ranking", "lora_config", "base_kernel", "contributions", "adapter_init",
                    "settings", "targets", "space", "certificate"):  # fmt: skip
            metadata.pop(key)
        return SelectionResult.from_kernels(
            self.candidates, self.base_kernel, self.contributions, self.lora_config, settings=settings,
            targets=self.targets, adapter_init=self.adapter_init, **metadata,
        )  # fmt: skip

    def score(self, modules: Sequence[str], ranks: Mapping[str, int] | None = None) -> RankedSubset:
        """Spectral ratio, spectrum, risk and objective score of any set of candidates (e.g. PEFT's default);
        ``ranks``: module -> rank, needed where the candidates offer several ranks per module (rank allocation)."""
        indices = self._indices(modules, ranks)
        entry = score_subsets(
            self.contributions, self.base_kernel, torch.tensor([indices]), sigma=self.sigma, targets=self.targets
        )[0]
        value = objective_values(
            self.contributions, self.base_kernel, [tuple(indices)], OBJECTIVES[self.objective], sigma=self.sigma,
            targets=self.targets,
        )  # fmt: skip
        return ranked(replace(entry, score=float(value[0])), self.candidates, self.lora_config)

    def _indices(self, modules: Sequence[str], ranks: Mapping[str, int] | None = None) -> list[int]:
        """Candidate indices of ``modules`` (at ``ranks`` where a module has several rank options)."""
        options: dict[str, dict[int, int]] = {}
        for i, candidate in enumerate(self.candidates):
            options.setdefault(candidate.name, {})[candidate_rank(self.lora_config, candidate)] = i
        unknown = [name for name in modules if name not in options]
        if unknown:
            raise InvalidConfigError(f"modules {unknown} are not candidates of this result")
        if len(set(modules)) < len(modules):
            raise InvalidConfigError(f"modules {list(modules)} name a module twice: name each module once")
        indices = []
        for name in modules:
            by_rank = options[name]
            if ranks is None and len(by_rank) == 1:
                indices.append(next(iter(by_rank.values())))
            elif ranks is not None and ranks.get(name) in by_rank:
                indices.append(by_rank[ranks[name]])
            else:
                raise InvalidConfigError(
                    f"{name} is a candidate at ranks {sorted(by_rank)}: pass ranks={{module: rank}} with one of them"
                )
        return indices

    @property
    def allocates_ranks(self) -> bool:
        """True when the candidates are rank options (``ranks=``): an entry is then its modules and their ranks."""
        return any(candidate.rank is not None for candidate in self.candidates)

    def entry_indices(self, entry: RankedSubset) -> tuple[int, ...]:
        """The candidate indices of a ranked entry (its modules, at its ranks under rank allocation), sorted."""
        return tuple(sorted(self._indices(entry.modules, entry.ranks if self.allocates_ranks else None)))

    def config_for(self, modules: Sequence[str], ranks: Mapping[str, int] | None = None) -> LoraConfig:
        """A ``LoraConfig`` like ``lora_config`` but targeting ``modules`` (names of candidates; ``ranks``: module ->
        rank where they offer several, as ``score``)."""
        return config_with_targets(self.lora_config, [self.candidates[i] for i in self._indices(modules, ranks)])

    def apply_init(self, peft_model: nn.Module, adapter_name: str = "default") -> None:
        """Copy the lora_A at which the kernels were taken (and B = 0) into a model built from this config.

        Training then starts exactly where the kernel was measured. ``peft_model`` is the result of
        ``get_peft_model(model, result.lora_config)`` (or of ``config_for(...)``).
        """
        root = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
        modules = dict(root.named_modules())
        adapted = [name for name in self.adapter_init if name in modules and hasattr(modules[name], "lora_A")]
        if not adapted:
            raise InvalidConfigError(
                "the model has no LoRA layer on any candidate: build it with get_peft_model(model, result.lora_config)"
            )
        with torch.no_grad():
            for name in adapted:
                layer = modules[name]
                if adapter_name not in layer.lora_A:
                    raise InvalidConfigError(f"{name} has no adapter {adapter_name!r}: pass adapter_name=")
                a_weight, b_weight = layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight
                drawn = self.adapter_init[name]  # (R, in): a smaller rank's A is its first rows (option_a)
                if a_weight.shape[1:] != drawn.shape[1:] or a_weight.shape[0] > drawn.shape[0]:
                    raise InvalidConfigError(
                        f"{name}: lora_A has shape {tuple(a_weight.shape)}, the kernels used "
                        f"{tuple(drawn.shape)}: build the model from result.lora_config"
                    )
                a_weight.copy_(option_a(drawn, self.lora_config, a_weight.shape[0]))
                b_weight.zero_()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict holding everything (``from_dict`` rebuilds the result exactly)."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "candidates": [asdict(candidate) for candidate in self.candidates],
            "ranking": [{**asdict(entry), "modules": list(entry.modules)} for entry in self.ranking],
            "lora_config": _config_to_json(self.lora_config),
            "base_kernel": _tensor_to_json(self.base_kernel),
            "contributions": _tensor_to_json(self.contributions),
            "adapter_init": {name: _tensor_to_json(a) for name, a in self.adapter_init.items()},
            "settings": self.settings.to_dict(),
            "seed": self.seed,
            "sample_indices": list(self.sample_indices),
            "engine": self.engine,
            "output_mode": self.output_mode,
            "targets": _tensor_to_json(self.targets),
            "space": self.space,
            "certificate": None if self.certificate is None else asdict(self.certificate),
            "head": self.head,
            "head_fit": self.head_fit,
            "init_seed": self.init_seed,
            "kernel": self.kernel,
            "base": self.base,
            "memory_plan": self.memory_plan,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SelectionResult:
        """Rebuild a result from ``to_dict()`` output; a foreign, older or newer dict raises ``InvalidInputError``."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InvalidInputError("not a peft_ntk_select result (no 'format' field naming it)")
        if data.get("version") != FORMAT_VERSION:
            raise InvalidInputError(
                f"result format version {data.get('version')!r} is not {FORMAT_VERSION}: "
                "use the peft_ntk_select version that wrote it, or recompute the result"
            )
        try:
            return cls(
                candidates=[Candidate(**candidate) for candidate in data["candidates"]],
                ranking=[RankedSubset(**{**entry, "modules": tuple(entry["modules"])}) for entry in data["ranking"]],
                lora_config=PeftConfigMixin.from_peft_type(**data["lora_config"]),
                base_kernel=_tensor_from_json(data["base_kernel"]),
                contributions=_tensor_from_json(data["contributions"]),
                adapter_init={name: _tensor_from_json(a) for name, a in data["adapter_init"].items()},
                settings=RankingSettings.from_dict(data["settings"]),
                seed=data["seed"],
                sample_indices=list(data["sample_indices"]),
                engine=data["engine"],
                output_mode=data["output_mode"],
                targets=_tensor_from_json(data["targets"]),
                space=data["space"],
                certificate=None if data["certificate"] is None else Certificate(**data["certificate"]),
                head=data["head"],
                head_fit=data["head_fit"],
                init_seed=data["init_seed"],
                kernel=data["kernel"],
                base=data["base"],
                memory_plan=data["memory_plan"],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise InvalidInputError(f"corrupt peft_ntk_select result: {err!r}") from err

    def save(self, directory: str | Path) -> Path:
        """Write ``result.json`` and the picked ``adapter_config.json`` (``LoraConfig.from_pretrained`` loads it)
        into the folder ``directory``; return it.

        The folder is written whole (``peft_ntk_select.output.atomic_folder``): into a hidden folder beside it,
        then moved into place, so it holds only this result's files afterwards (an earlier run's ``report.png``
        or ``stability.json`` are gone), and a save that fails or is interrupted leaves the earlier folder as it
        was. ``InvalidConfigError`` (nothing written) when ``directory`` is a file, or a folder holding files
        peft_ntk_select does not write (``OUTPUT_FILES``): those are the user's and are never replaced.
        """
        with atomic_folder(directory) as folder:
            self._write(folder)
        return Path(directory)

    def _write(self, folder: Path) -> None:
        """Write ``result.json`` and ``adapter_config.json`` into the existing ``folder`` as it is (no swap: the
        caller writes other files beside them inside ``atomic_folder``, as the command line does)."""
        (folder / RESULT_FILE).write_text(json.dumps(self.to_dict()))
        self.lora_config.save_pretrained(str(folder))

    @classmethod
    def load(cls, directory: str | Path) -> SelectionResult:
        """Read a result written by ``save``; a missing, corrupt or foreign file raises ``InvalidInputError``."""
        path = Path(directory) / RESULT_FILE
        if not path.is_file():
            raise InvalidInputError(f"{path} does not exist: pass the folder written by SelectionResult.save")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InvalidInputError(f"{path} is not valid JSON ({err}): the file is corrupt; recompute it") from err
        return cls.from_dict(data)

    def plot(self, path: str | Path | None = None, top: int = 5, *, stability=None, linearity=None):
        """Spectra of K + S_C for the ``top`` picks, the ratio of every ranked subset and a table of their
        conditioning, Theorem 1 bounds and leave-one-out accuracy; with ``stability`` (from
        ``NTKSelector.stability``) and ``linearity`` (from ``linearity_curve``), their panels too. Needs matplotlib.
        """
        short = {c.name: f"L{c.layer}.{c.kind}" for c in self.candidates}
        options = self.allocates_ranks
        picks = [self.entry_indices(entry) for entry in self.ranking[:top]]
        labels = [
            f"#{rank} " + " ".join(short[m] + (f"@{entry.ranks[m]}" if options and entry.ranks else "")
                                   for m in entry.modules)
            for rank, entry in enumerate(self.ranking[:top])
        ]  # fmt: skip
        return plot_report(
            self.base_kernel, self.contributions, picks, labels, [entry.ratio for entry in self.ranking], path,
            table=spectrum_rows(self.ranking[:top], labels), stability=stability, linearity=linearity,
        )  # fmt: skip

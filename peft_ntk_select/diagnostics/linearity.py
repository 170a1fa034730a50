"""Algorithm 1, the linearity check: how fast does the model's sensitivity to its input change around θ0?

For each radius r, ``num_models`` models θ = θ0 + r·v/||v|| (v ~ N(0, I) over the perturbed parameters) are run on
the same samples. For each model, L_max is the largest ratio ||f_θ(x') − f_θ(x)|| / ||x' − x|| over sample pairs,
where x is the input embedding sequence the model receives (``inputs_embeds``, zero at padded positions) and f
the logits (zero at padded positions for token-level logits). L_avg(r) is the mean of L_max over the models,
L_upper(r) the max. A flat curve says the function barely changes within radius r of θ0, so the linearization
(and the kernel view behind the selection) is trustworthy there; a rising curve says it is not.

The user's model is never modified: perturbed weights live in a copy of the parameter dict passed to
``torch.func.functional_call``, in eval mode, without autograd.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from tqdm.auto import tqdm

from ..candidates import Candidate, discover_candidates
from ..errors import InvalidConfigError, InvalidInputError
from ..figures import new_figure
from ..inputs import prepare_samples
from ..kernels.custody import exclusive_use
from ..kernels.forward import (
    evaluation_mode,
    feature_dtype,
    frozen_state,
    is_causal,
    logits_of,
    model_dtype_device,
    require_weights_in_memory,
)

logger = logging.getLogger(__name__)

DEFAULT_RADII = (0.0, 0.5, 1.0, 2.0, 4.0)
PERTURB_MODES = ("all", "candidates")
FORWARD_KEYS = ("attention_mask", "token_type_ids")


@dataclass(frozen=True, eq=False)
class LinearityCurve:
    """What ``linearity_curve`` measured.

    Attributes:
        radii: the radii r, in the order given.
        l_avg: L_avg(r), the mean over the models of each model's largest pair ratio.
        l_upper: L_upper(r), the max over the models.
        per_model: L_max of every model, (R, num_models) float64 (the same direction v_k in row after row).
        num_samples: samples the pairs were drawn from (n samples give n(n-1)/2 pairs).
        perturb: ``"all"``, ``"candidates"``, or the names that were passed.
        seed: seed of the sample draw and of the directions.
        parameters: names of the perturbed parameters.
        weight_norm: ||θ0|| over the perturbed parameters, to read r against.
    """

    radii: tuple[float, ...]
    l_avg: tuple[float, ...]
    l_upper: tuple[float, ...]
    per_model: torch.Tensor
    num_samples: int
    perturb: str | tuple[str, ...]
    seed: int = 0
    parameters: tuple[str, ...] = ()
    weight_norm: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return {
            "radii": list(self.radii),
            "l_avg": list(self.l_avg),
            "l_upper": list(self.l_upper),
            "per_model": self.per_model.tolist(),
            "num_samples": self.num_samples,
            "perturb": self.perturb if isinstance(self.perturb, str) else list(self.perturb),
            "seed": self.seed,
            "parameters": list(self.parameters),
            "weight_norm": self.weight_norm,
        }

    def plot(self, path: str | Path | None = None):
        """L_avg and L_upper against r, each model's L_max as dots (needs matplotlib); saved to ``path`` if given.

        Returns:
            The matplotlib ``Figure``.
        """
        figure = new_figure(figsize=(6, 4.2))
        axis = figure.add_subplot()
        for row, radius in zip(self.per_model.tolist(), self.radii, strict=True):
            axis.plot([radius] * len(row), row, ".", color="0.7", zorder=1)
        axis.plot(self.radii, self.l_avg, "o-", label="L_avg (mean over models)", zorder=2)
        axis.plot(self.radii, self.l_upper, "s--", label="L_upper (max over models)", zorder=2)
        axis.set(
            title=f"Linearity check (Algorithm 1), perturb={self._perturb_label()}, n={self.num_samples}",
            xlabel=f"radius r = ||θ − θ0||   (||θ0|| = {self.weight_norm:.4g})",
            ylabel="max over pairs ||f(x') − f(x)|| / ||x' − x||",
        )
        axis.set_ylim(0, 1.15 * max(self.per_model.max().item(), 1e-12))
        axis.legend(fontsize=8, loc="lower right")
        figure.tight_layout()
        if path is not None:
            figure.savefig(path, dpi=120)
        return figure

    def _perturb_label(self) -> str:
        return self.perturb if isinstance(self.perturb, str) else f"{len(self.perturb)} named"


def check_radii(radii: Iterable[float]) -> tuple[float, ...]:
    """The radii as floats; a typed error unless they are a nonempty list of finite numbers >= 0."""
    if isinstance(radii, (int, float, str)) or not isinstance(radii, Iterable):
        raise InvalidConfigError(f"radii={radii!r} must be a list of numbers >= 0, e.g. radii=[0, 0.5, 1, 2, 4]")
    try:
        values = tuple(float(radius) for radius in radii)
    except (TypeError, ValueError) as err:
        raise InvalidConfigError(f"radii={radii!r} must be numbers >= 0, e.g. radii=[0, 0.5, 1, 2, 4]") from err
    if not values:
        raise InvalidConfigError("radii is empty: pass at least one radius, e.g. radii=[0, 0.5, 1, 2, 4]")
    bad = [radius for radius in values if not math.isfinite(radius) or radius < 0]
    if bad:
        raise InvalidConfigError(f"radii {bad} are negative or not finite: every radius r = ||θ − θ0|| must be >= 0")
    return values


def _check_count(name: str, value: Any, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidConfigError(f"{name}={value!r} must be an integer >= {minimum}{hint}")
    return value


def _parameter_names_by_identity(model: nn.Module) -> dict[int, str]:
    return {id(param): name for name, param in model.named_parameters()}


def _input_embedding(model: nn.Module) -> nn.Module:
    getter = getattr(model, "get_input_embeddings", None)
    embedding = getter() if callable(getter) else None
    if not isinstance(embedding, nn.Module):
        raise InvalidConfigError(
            f"{type(model).__name__} has no input embedding module (get_input_embeddings()): the linearity check "
            "feeds inputs_embeds, so pass a transformers model or define get_input_embeddings()"
        )
    return embedding


def _input_table_only(model: nn.Module) -> set[str]:
    """Name of the input embedding table unless an output head shares it (it only makes x, it is not part of f)."""
    weight = getattr(_input_embedding(model), "weight", None)
    getter = getattr(model, "get_output_embeddings", None)
    output = getter() if callable(getter) else None
    if weight is None or (output is not None and getattr(output, "weight", None) is weight):
        return set()
    names = _parameter_names_by_identity(model)
    return {names[id(weight)]} if id(weight) in names else set()


def _named_weights(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Parameter names for module names (their ``weight``) or parameter names (as given)."""
    parameters = dict(model.named_parameters())
    modules = dict(model.named_modules())
    by_identity = _parameter_names_by_identity(model)
    found, unknown = [], []
    for name in names:
        if name in parameters:
            found.append(name)
            continue
        weight = getattr(modules[name], "weight", None) if name in modules else None
        if isinstance(weight, nn.Parameter) and id(weight) in by_identity:
            found.append(by_identity[id(weight)])
        else:
            unknown.append(name)
    if unknown:
        raise InvalidConfigError(
            f"{unknown} are neither modules with a weight nor parameters of the model: use full names from "
            "model.named_modules() (e.g. 'bert.encoder.layer.0.attention.self.query') or model.named_parameters()"
        )
    return list(dict.fromkeys(found))


def perturbed_parameters(
    model: nn.Module,
    perturb: str | Sequence[str] = "all",
    candidates: Sequence[Candidate | str] | None = None,
) -> list[str]:
    """Names of the parameters that get a random direction.

    Args:
        perturb: ``"all"``: every floating-point parameter f uses (the input embedding table only makes x, so
            it stays unless tied to the output head); ``"candidates"``: the weights of ``candidates``
            (default: every candidate of ``discover_candidates``), i.e. the weights LoRA would adapt;
            or a list of module names (their ``weight``) and parameter names.
        candidates: ``Candidate`` objects or module names, only with ``perturb="candidates"``.
    """
    if isinstance(perturb, str) and perturb not in PERTURB_MODES:
        raise InvalidConfigError(f"unknown perturb {perturb!r}: choose 'all', 'candidates' or a list of module names")
    if candidates is not None and perturb != "candidates":
        raise InvalidConfigError(
            "candidates only apply with perturb='candidates': pass perturb='candidates' or drop candidates"
        )
    if perturb == "all":
        skip = _input_table_only(model)
        names = [name for name, param in model.named_parameters() if param.is_floating_point() and name not in skip]
    elif perturb == "candidates":
        chosen = discover_candidates(model) if candidates is None else candidates
        names = _named_weights(model, [c.name if isinstance(c, Candidate) else c for c in chosen])
    else:
        names = _named_weights(model, list(perturb))
    parameters = dict(model.named_parameters())
    names = [name for name in names if parameters[name].is_floating_point()]
    if not names:
        raise InvalidConfigError(f"perturb={perturb!r} selects no floating-point parameter: name modules with weights")
    return names


def input_embeddings(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """x: the embedding sequences (n, T, d) of the batch under θ0, zero at padded positions."""
    embeds = _input_embedding(model)(batch["input_ids"])
    return embeds * batch["attention_mask"][..., None].to(embeds.dtype)


def pairwise_distances(rows: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of ``rows`` (n, D): (n, n) float64, without the Gram shortcut."""
    flat = rows.reshape(rows.shape[0], -1).double()
    return torch.cdist(flat[None], flat[None], compute_mode="donot_use_mm_for_euclid_dist")[0]


def largest_ratio(output_distances: torch.Tensor, input_distances: torch.Tensor) -> float:
    """max over pairs i < j with x_i != x_j of ||f_i − f_j|| / ||x_i − x_j||; both (n, n)."""
    upper = torch.triu(torch.ones_like(input_distances, dtype=torch.bool), diagonal=1) & (input_distances > 0)
    return float((output_distances[upper] / input_distances[upper]).max())


def _model_logits(output: Any) -> torch.Tensor:
    """Logits of a model output: a tensor as is, a dict's ``"logits"``, else ``output.logits``."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    return logits_of(output)


def _accepted(model: nn.Module, kwargs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keyword arguments ``model.forward`` takes (all of them when it has ``**kwargs``)."""
    parameters = inspect.signature(model.forward).parameters
    if any(param.kind is inspect.Parameter.VAR_KEYWORD for param in parameters.values()):
        return kwargs
    if "inputs_embeds" not in parameters:
        raise InvalidConfigError(
            f"{type(model).__name__}.forward takes no inputs_embeds: the linearity check feeds the input "
            "embeddings, so pass a transformers model or accept inputs_embeds in forward"
        )
    return {key: value for key, value in kwargs.items() if key in parameters}


def sample_logits(
    model: nn.Module, state: dict[str, torch.Tensor], embeds: torch.Tensor, batch: dict[str, torch.Tensor]
) -> torch.Tensor:
    """f_θ(x) for every sample, flattened: (n, D) float64; token-level logits are zero at padded positions.

    Encoders run as one padded batch with the attention mask. Decoders run one group per sequence length,
    unpadded: a sequence classifier fed ``inputs_embeds`` cannot find the last real token of a padded row.
    """
    mask = batch["attention_mask"]
    n, length = mask.shape
    lengths = mask.sum(-1)
    if is_causal(model):
        groups = [(torch.nonzero(lengths == size).flatten(), int(size)) for size in lengths.unique().tolist()]
    else:
        groups = [(torch.arange(n, device=mask.device), length)]
    parts: list[torch.Tensor] = [torch.empty(0)] * n
    for rows, size in groups:
        kwargs = {"inputs_embeds": embeds[rows, :size]}
        kwargs.update({key: batch[key][rows, :size] for key in FORWARD_KEYS if key in batch})
        logits = _model_logits(functional_call(model, state, args=(), kwargs=_accepted(model, kwargs)))
        if logits.dim() >= 3 and logits.shape[1] == size:  # token-level: (g, size, ...)
            logits = logits * mask[rows, :size].reshape(len(rows), size, *[1] * (logits.dim() - 2)).to(logits.dtype)
            logits = nn.functional.pad(logits.movedim(1, -1), (0, length - size)).movedim(-1, 1)
        for position, row in enumerate(rows.tolist()):
            parts[row] = logits[position].reshape(-1).double()
    return torch.stack(parts)


def _norm(tensors: Iterable[torch.Tensor]) -> float:
    """Euclidean norm of the concatenation of ``tensors``."""
    return math.sqrt(sum(float(torch.linalg.vector_norm(tensor)) ** 2 for tensor in tensors))


@contextmanager
def _quiet_padding_warning(model: nn.Module) -> Iterator[None]:
    """Mute transformers' "will not detect padding tokens in inputs_embeds": decoders run here unpadded."""
    source = logging.getLogger(getattr(type(model).forward, "__module__", None) or "transformers")

    def keep(record: logging.LogRecord) -> bool:
        return "will not detect padding tokens" not in record.getMessage()

    source.addFilter(keep)
    try:
        yield
    finally:
        source.removeFilter(keep)


def perturbed_state(
    state: dict[str, torch.Tensor], names: Sequence[str], radius: float, seed: int
) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with θ + radius·v/||v|| on ``names``, v ~ N(0, I) drawn on the CPU from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    direction = {
        name: torch.randn(state[name].shape, generator=generator, dtype=feature_dtype(state[name].dtype))
        for name in names
    }
    scale = radius / _norm(direction.values())
    perturbed = dict(state)
    for name, v in direction.items():
        perturbed[name] = state[name] + (scale * v).to(device=state[name].device, dtype=state[name].dtype)
    return perturbed


def linearity_curve(
    model: nn.Module,
    data: Any,
    radii: Iterable[float] = DEFAULT_RADII,
    num_models: int = 5,
    *,
    num_samples: int = 32,
    seed: int = 0,
    perturb: str | Sequence[str] = "all",
    candidates: Sequence[Candidate | str] | None = None,
    show_progress: bool = True,
) -> LinearityCurve:
    """Algorithm 1: L_avg(r) and L_upper(r), the Lipschitz estimates of random models at radius r from θ0.

    Model k at every radius uses the same direction v_k (drawn from ``seed``), so the curve shows how each
    direction bends as r grows; at r = 0 every model is θ0. The model is left exactly as it was.

    Args:
        model: a transformers model with a task head (any module with ``get_input_embeddings()`` whose forward
            takes ``inputs_embeds`` and returns logits, an object with ``.logits``, or a dict with ``"logits"``).
        data: a dict of tensors (tokenizer output), a tokenized ``datasets.Dataset`` or any map-style dataset
            of dicts, or a DataLoader of dict batches (as for ``NTKSelector.select``).
        radii: the radii r = ||θ − θ0||, each >= 0.
        num_models: random models per radius (n_T).
        num_samples: samples drawn (with ``seed``); every pair of them is compared.
        seed: seed of the sample draw and of the random directions.
        perturb: ``"all"`` parameters, the weights of the ``"candidates"`` (the weights LoRA would adapt),
            or a list of module names (their ``weight``) and parameter names.
        candidates: with ``perturb="candidates"``: ``Candidate`` objects or module names (default: every
            candidate ``discover_candidates(model)`` finds).
        show_progress: tqdm progress bar over the radii.
    """
    radii = check_radii(radii)
    require_weights_in_memory(model, "the linearity check")
    _check_count("num_models", num_models, 1, " (random models per radius, e.g. 5)")
    _check_count("num_samples", num_samples, 2, ": every pair of samples is compared (e.g. 32)")
    names = perturbed_parameters(model, perturb, candidates)
    pad_token_id = getattr(getattr(model, "config", None), "pad_token_id", None)
    batch, _ = prepare_samples(data, num_samples=num_samples, seed=seed, pad_token_id=pad_token_id)
    _, device = model_dtype_device(model)
    batch = {key: value.to(device) for key, value in batch.items()}
    count = batch["input_ids"].shape[0]
    directions = torch.randint(0, 2**62, (num_models,), generator=torch.Generator().manual_seed(seed)).tolist()
    logger.info(
        "linearity check: %d samples, %d radii, %d models per radius, %d perturbed parameters",
        count, len(radii), num_models, len(names),
    )  # fmt: skip
    with exclusive_use(model), evaluation_mode(model), torch.no_grad(), _quiet_padding_warning(model):
        embeds = input_embeddings(model, batch)
        input_distances = pairwise_distances(embeds)
        if not bool((input_distances > 0).any()):
            raise InvalidInputError(f"all {count} samples embed to the same input: pass distinct examples")
        state = frozen_state(model)
        weight_norm = _norm(state[name] for name in names)

        def lipschitz(weights: dict[str, torch.Tensor]) -> float:
            return largest_ratio(pairwise_distances(sample_logits(model, weights, embeds, batch)), input_distances)

        at_theta0: float | None = None
        rows = []
        for radius in tqdm(radii, desc="linearity", disable=not show_progress):
            if radius == 0:
                at_theta0 = lipschitz(state) if at_theta0 is None else at_theta0
                rows.append([at_theta0] * num_models)
            else:
                rows.append([lipschitz(perturbed_state(state, names, radius, seed_k)) for seed_k in directions])
    per_model = torch.tensor(rows, dtype=torch.float64)
    return LinearityCurve(
        radii=radii,
        l_avg=tuple(per_model.mean(dim=1).tolist()),
        l_upper=tuple(per_model.max(dim=1).values.tolist()),
        per_model=per_model,
        num_samples=count,
        perturb=perturb if isinstance(perturb, str) else tuple(perturb),
        seed=seed,
        parameters=tuple(names),
        weight_norm=weight_norm,
    )

"""The ``trace`` (Adam), ``margin`` and ``loss`` kernels of every engine equal an independent reference built
on PEFT itself, for the ``lora`` kernel and Adam's SignGD kernel (``kernel="adam"``).

Reference (no library code): ``get_peft_model`` with LoRA on exactly the candidates, in eval mode, the library's
lora_A copied in and B = 0; per sample, without its padding (a batch of one), f is the model's own output
(``margin``: logit_1 - logit_0; ``loss``: the model's own ``labels=`` loss) and plain ``torch.autograd.grad``
gives the features. A causal LM's own loss is float32 inside transformers, so its kernels are matched to float32
precision, and to float64 precision with the same mean next-token cross-entropy taken from the float64 logits.
S_l is the Gram matrix of the gradients w.r.t. candidate l's LoRA parameters (for ``adam``: gradients against
their signs); K that of the other trainable parameters (PEFT's ``modules_to_save`` head copy for SEQ_CLS, none
for causal LMs).
"""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from peft_ntk_select import compute_kernels, discover_candidates
from peft_ntk_select.candidates import rank_options
from tests.helpers import CAUSAL_LMS, PAD, VOCAB, make_model, model_snapshot

LENGTHS = (7, 5, 3, 6)  # ragged, right-padded to T = 7
ENGINES = ("func", "hooks", "reference")


def library_kernels(model, batch, candidates, config, engine, mode, kernel="lora"):
    """The one call into the library (a keyword rename is a one-line change here)."""
    return compute_kernels(model, batch, candidates, config, engine=engine, output_mode=mode, seed=0, kernel=kernel)


# ---- a ragged batch for the tiny float64 models of tests.helpers ------------------------------------------


def ragged_batch(*, labels: bool, seed: int = 3) -> dict[str, torch.Tensor]:
    """input_ids / attention_mask (n, T) right-padded with PAD, real tokens never PAD; labels (n,) if asked."""
    generator = torch.Generator().manual_seed(seed)
    n, length = len(LENGTHS), max(LENGTHS)
    input_ids = torch.randint(2, VOCAB, (n, length), generator=generator)
    attention_mask = (torch.arange(length)[None, :] < torch.tensor(LENGTHS)[:, None]).long()
    input_ids[attention_mask == 0] = PAD
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if labels:
        batch["labels"] = torch.tensor([0, 1, 1, 0])
    return batch


# ---- LoRA configs: plain, rank/alpha patterns (PEFT's key matching), rsLoRA --------------------------------

PATTERNS = {  # (rank_pattern, alpha_pattern): some keys are suffixes for every layer, some one layer's module
    "bert": ({"query": 3, "layer.1.attention.self.value": 1}, {"layer.0.attention.self.query": 9, "value": 3}),
    "llama": ({"q_proj": 3, "layers.1.self_attn.v_proj": 1}, {"layers.0.self_attn.q_proj": 9, "v_proj": 3}),
    "gpt2": ({"h.0.attn.c_attn": 3}, {"1.attn.c_attn": 9}),
}


def lora_config(name: str, family: str) -> LoraConfig:
    task_type = "CAUSAL_LM" if family in CAUSAL_LMS else "SEQ_CLS"
    common = {"task_type": task_type, "fan_in_fan_out": family.startswith("gpt2")}  # GPT-2's Conv1D layers
    if name == "plain":
        return LoraConfig(r=2, lora_alpha=4, **common)
    if name == "patterns":
        rank_pattern, alpha_pattern = PATTERNS[family.removesuffix("_lm")]
        return LoraConfig(r=2, lora_alpha=4, rank_pattern=rank_pattern, alpha_pattern=alpha_pattern, **common)
    assert name == "rslora"
    return LoraConfig(r=4, lora_alpha=4, use_rslora=True, **common)


# ---- the independent reference -------------------------------------------------------------------------------


def sample_output(peft_model, input_ids: torch.Tensor, label: torch.Tensor | None, mode: str, exact: bool):
    """f of one unpadded sample (1, t): the model's own margin or its own ``labels=`` loss.

    transformers computes a causal LM's own loss on ``logits.float()``, i.e. in float32 even for a float64 model;
    ``exact`` takes the same mean next-token cross-entropy from the float64 logits instead.
    """
    if mode == "margin":
        logits = peft_model(input_ids=input_ids).logits[0]
        return logits[1] - logits[0]
    if mode == "trace":  # a classifier's logits
        return peft_model(input_ids=input_ids).logits[0]
    if label is not None:
        return peft_model(input_ids=input_ids, labels=label).loss
    output = peft_model(input_ids=input_ids, labels=input_ids)
    if not exact:
        return output.loss
    return torch.nn.functional.cross_entropy(output.logits[0, :-1], input_ids[0, 1:])


def reference_kernels(model, batch, names, config, adapter_init, mode, *, exact=True, kernel="lora"):
    """(K, S, number of K's parameter tensors) by plain per-sample autograd on get_peft_model(model copy) with
    LoRA on ``names``: sum over outputs a of <g_a(x_i), g_a(x_j)>, or of <g_a(x_i), sign g_a(x_j)> for ``adam``."""
    targeted = copy.deepcopy(config)
    targeted.target_modules = set(names)
    peft_model = get_peft_model(copy.deepcopy(model), targeted).eval()
    lora_params = {}
    for name in names:
        module = peft_model.get_base_model().get_submodule(name)
        with torch.no_grad():
            module.lora_A["default"].weight.copy_(adapter_init[name])  # shape check: PEFT's rank for this module
            module.lora_B["default"].weight.zero_()
        lora_params[name] = [p for key, p in module.named_parameters() if key.startswith("lora_")]
        assert lora_params[name] and all(p.requires_grad for p in lora_params[name])
    lora_ids = {id(p) for params in lora_params.values() for p in params}
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float64 for p in trainable)
    groups = [[p for p in trainable if id(p) not in lora_ids], *lora_params.values()]
    flat = [p for group in groups for p in group]
    features = [[] for _ in groups]
    for i in range(batch["input_ids"].shape[0]):
        keep = batch["attention_mask"][i].bool()
        input_ids = batch["input_ids"][i][keep][None]
        label = batch["labels"][i : i + 1] if "labels" in batch else None
        outputs = sample_output(peft_model, input_ids, label, mode, exact).reshape(-1)  # c outputs (1 but trace)
        per_output = [[] for _ in groups]
        for f in outputs:
            grads = torch.autograd.grad(f, flat, retain_graph=True, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(flat, grads, strict=True)]
            position = 0
            for group, rows in zip(groups, per_output, strict=True):
                part = grads[position : position + len(group)]
                rows.append(torch.cat([g.flatten() for g in part]) if part else torch.zeros(0, dtype=torch.float64))
                position += len(group)
        for rows, sample_rows in zip(features, per_output, strict=True):
            rows.append(torch.stack(sample_rows))  # (c, P)
    other = (lambda g: g.sign()) if kernel == "adam" else (lambda g: g)
    grams = [torch.einsum("icp,jcp->ij", torch.stack(rows), other(torch.stack(rows))) for rows in features]
    return grams[0], torch.stack(grams[1:]), len(groups[0])


def assert_kernel_close(actual: torch.Tensor, expected: torch.Tensor, what: str, *, rtol: float = 1e-8) -> None:
    scale = float(expected.abs().max())
    assert scale > 0, f"{what}: the reference kernel is zero"
    torch.testing.assert_close(
        actual,
        expected,
        rtol=rtol,
        atol=rtol * 1e-2 * scale,
        msg=lambda m: f"{what} (max |reference| {scale:.3e}): {m}",
    )


# ---- tests --------------------------------------------------------------------------------------------------

CASES = [
    ("margin", "bert"),
    ("margin", "llama"),
    ("margin", "gpt2"),
    ("loss", "llama_lm"),
    ("loss", "gpt2_lm"),
    ("loss", "bert"),
    ("loss", "gpt2"),
]


@pytest.mark.parametrize("config_name", ["plain", "patterns", "rslora"])
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("mode", "family"), CASES, ids=[f"{m}-{f}" for m, f in CASES])
def test_kernels_equal_per_sample_autograd_on_the_peft_model(mode, family, engine, config_name):
    model = make_model(family)
    batch = ragged_batch(labels=family not in CAUSAL_LMS)
    config = lora_config(config_name, family)
    candidates = discover_candidates(model, rank=config.r, kinds="all-linear")  # every kind of linear module
    names = [c.name for c in candidates]
    base, contributions, adapter_init = library_kernels(model, batch, candidates, config, engine, mode)
    assert sorted(adapter_init) == sorted(names)
    if config_name == "patterns":  # the patterns give some modules another rank (PEFT checks the A shapes below)
        assert len({a.shape[0] for a in adapter_init.values()}) > 1
    base_ref, contributions_ref, head_params = reference_kernels(model, batch, names, config, adapter_init, mode)
    assert contributions.shape == (len(names), len(LENGTHS), len(LENGTHS))
    for name, s, s_ref in zip(names, contributions, contributions_ref, strict=True):
        assert_kernel_close(s, s_ref, f"S of {name}")
    if family in CAUSAL_LMS:
        assert head_params == 0
        assert torch.equal(base, torch.zeros_like(base))
        # the model's own loss (float32 inside transformers) gives the same kernels to float32 precision
        _, contributions_own, _ = reference_kernels(model, batch, names, config, adapter_init, mode, exact=False)
        for name, s, s_own in zip(names, contributions, contributions_own, strict=True):
            assert_kernel_close(s, s_own, f"S of {name} (model's own float32 loss)", rtol=1e-5)
    else:
        assert head_params > 0
        assert_kernel_close(base, base_ref, "K")


ADAM_CASES = [("trace", "bert"), ("trace", "llama"), ("trace", "gpt2"), ("margin", "bert"), ("margin", "gpt2"),
              ("loss", "llama_lm"), ("loss", "gpt2_lm"), ("loss", "bert")]  # fmt: skip


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("mode", "family"), ADAM_CASES, ids=[f"{m}-{f}" for m, f in ADAM_CASES])
def test_adam_kernel_equals_per_sample_autograd_with_signs(mode, family, engine):
    """kernel="adam": entry (i, j) = sum_a <grad f_a(x_i), sign grad f_a(x_j)> over the trained parameters."""
    model = make_model(family)
    batch = ragged_batch(labels=family not in CAUSAL_LMS)
    config = lora_config("plain", family)
    candidates = discover_candidates(model, rank=config.r, kinds="all-linear")
    names = [c.name for c in candidates]
    before = model_snapshot(model)
    base, contributions, adapter_init = library_kernels(model, batch, candidates, config, engine, mode, "adam")
    assert model_snapshot(model) == before  # the user's model is left as it was
    base_ref, contributions_ref, _ = reference_kernels(model, batch, names, config, adapter_init, mode, kernel="adam")
    for name, s, s_ref in zip(names, contributions, contributions_ref, strict=True):
        assert_kernel_close(s, s_ref, f"Adam S of {name}")
    assert not torch.allclose(contributions, contributions.transpose(1, 2))  # asymmetric, as defined
    if family in CAUSAL_LMS:
        assert torch.equal(base, torch.zeros_like(base))
    else:
        assert_kernel_close(base, base_ref, "Adam K")


RANK_CASES = [(kernel, family, init) for kernel in ("lora", "adam") for family in ("bert", "llama", "gpt2")
              for init in ("plain", "gaussian", "rslora")]  # fmt: skip


@pytest.mark.parametrize(("kernel", "family", "init"), RANK_CASES, ids=["-".join(case) for case in RANK_CASES])
def test_rank_options_equal_per_sample_autograd_at_each_rank(kernel, family, init):
    """Rank allocation: the kernel of module l at rank r is that of a PEFT model built at rank r, whose A is the
    first r rows of the module's draw at the largest rank (gaussian: rescaled to N(0, 1/r^2)), scale alpha / r
    (rsLoRA: alpha / sqrt(r))."""
    model = make_model(family)
    batch = ragged_batch(labels=True)
    config = lora_config("rslora" if init == "rslora" else "plain", family)
    if init == "gaussian":
        config.init_lora_weights = "gaussian"
    ranks = (1, 2, 3)
    plain = discover_candidates(model, rank=config.r, kinds="all-linear")
    options = rank_options(plain, ranks)
    _, contributions, adapter_init = compute_kernels(model, batch, options, config, engine="func",
                                                     output_mode="margin", seed=0, kernel=kernel)  # fmt: skip
    assert {name: a.shape[0] for name, a in adapter_init.items()} == {c.name: 3 for c in plain}
    names = [c.name for c in plain]
    for rank in ranks:
        at_rank = copy.deepcopy(config)
        at_rank.r = rank
        spread = 3 / rank if init == "gaussian" else 1.0  # N(0, 1/9) rows -> N(0, 1/rank^2)
        first_rows = {name: adapter_init[name][:rank].double() * spread for name in names}
        _, expected, _ = reference_kernels(model, batch, names, at_rank, first_rows, "margin", kernel=kernel)
        for name, s_ref in zip(names, expected, strict=True):
            (i,) = [i for i, c in enumerate(options) if c.name == name and c.rank == rank]
            assert_kernel_close(contributions[i], s_ref, f"S of {name} at rank {rank}")


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_expected_kernel_of_a_rank_option_is_that_of_the_config_at_that_rank(family):
    model = make_model(family)
    batch = ragged_batch(labels=True)
    config = lora_config("plain", family)
    plain = discover_candidates(model, rank=config.r, kinds="all-linear")
    _, options, _ = compute_kernels(model, batch, rank_options(plain, (1, 4)), config, output_mode="margin",
                                    kernel="expected")  # fmt: skip
    for rank in (1, 4):
        at_rank = copy.deepcopy(config)
        at_rank.r = rank
        _, direct, _ = compute_kernels(model, batch, plain, at_rank, output_mode="margin", kernel="expected")
        picked = [i for i, c in enumerate(rank_options(plain, (1, 4))) if c.rank == rank]
        torch.testing.assert_close(options[picked], direct, rtol=1e-10, atol=0.0)

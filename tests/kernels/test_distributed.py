"""Several processes (gloo, 2 CPU ranks): sharded kernels equal the single-process ones; every rank ranks alike.

The ranks are spawned the way ``torchrun``/``accelerate launch`` start them (an initialised default process
group); each one writes what it computed to a file that the test then compares.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from peft import LoraConfig

from peft_ntk_select import NTKSelector
from peft_ntk_select.candidates import discover_candidates
from peft_ntk_select.kernels import compute as compute_module
from peft_ntk_select.kernels import compute_kernels
from peft_ntk_select.kernels.distributed import shard, shards_samples
from tests.helpers import make_batch, make_model, model_snapshot

CONFIG = LoraConfig(r=2, lora_alpha=4, task_type="SEQ_CLS")
WORLD = 2
CASES = [("bert", "hooks", "lora", 7), ("llama", "func", "lora", 6), ("gpt2", "hooks", "lora", 5),
         ("bert", "reference", "lora", 2), ("bert", "hooks", "expected", 6)]  # fmt: skip


def compute(family: str, engine: str, kernel: str, n: int) -> dict:
    """Kernels, the samples each engine call saw, and a whole ranking, on n samples."""
    model = make_model(family)
    batch = make_batch(n=n)
    before = model_snapshot(model)
    candidates = discover_candidates(model, rank=2)
    seen = []
    run = compute_module.ENGINES[engine]

    def recording(model, batch, *args, **kwargs):
        seen.append(batch["input_ids"].shape[0])
        return run(model, batch, *args, **kwargs)

    compute_module.ENGINES[engine] = recording
    try:
        base, parts, _ = compute_kernels(model, batch, candidates, CONFIG, engine=engine, kernel=kernel, chunk_size=2)
    finally:
        compute_module.ENGINES[engine] = run
    result = NTKSelector(model, CONFIG, budget=2, engine=engine, kernel=kernel, num_samples=n,
                         show_progress=False).select(batch)  # fmt: skip
    unchanged = model_snapshot(model) == before
    return {"base": base, "parts": parts, "seen": seen, "ranking": [entry.modules for entry in result.ranking],
            "ratios": [entry.ratio for entry in result.ranking], "unchanged": unchanged}  # fmt: skip


def _rank_main(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.save({case: compute(*case) for case in CASES}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_the_single_process_kernels_and_rankings(tmp_path):
    mp.spawn(_rank_main, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    for case in CASES:
        alone = compute(*case)
        for found in (ranks[r][case] for r in range(WORLD)):
            torch.testing.assert_close(found["base"], alone["base"], rtol=1e-10, atol=1e-14)
            torch.testing.assert_close(found["parts"], alone["parts"], rtol=1e-10, atol=1e-14)
            assert found["ranking"] == alone["ranking"] and found["unchanged"]
        *_, kernel, n = case
        shards = [{(n + 1) // 2}, {n // 2}]  # each rank ran every engine pass on its shard only
        assert [set(ranks[r][case]["seen"]) for r in range(WORLD)] == shards, kernel
        assert ranks[0][case]["ranking"] == ranks[1][case]["ranking"]
        assert ranks[0][case]["ratios"] == ranks[1][case]["ratios"]  # bit-identical on every rank
        assert torch.equal(ranks[0][case]["parts"], ranks[1][case]["parts"])


def test_shards_cover_the_samples_in_order():
    for n in range(1, 12):
        for world in range(1, 5):
            covered = [i for rank in range(world) for i in range(n)[shard(n, rank, world)]]
            assert covered == list(range(n))
    assert shards_samples(7, 2) and not shards_samples(1, 2) and not shards_samples(5, 1)
    assert not shards_samples(5, 4)  # 2 + 2 + 1 + 0: a rank would have nothing, so nobody shards


LAUNCHED = """
import json, sys
import torch
sys.path.insert(0, {root!r})
from tests.helpers import make_batch, make_model
from peft import LoraConfig
from peft_ntk_select import NTKSelector
from peft_ntk_select.kernels.distributed import process_group

model = make_model("bert")
result = NTKSelector(model, LoraConfig(r=2, lora_alpha=4, task_type="SEQ_CLS"), budget=2, engine="hooks",
                     num_samples=6, show_progress=False).select(make_batch(n=6))
rank, world = process_group()
with open(f"{out}/launched{{rank}}.json", "w") as handle:
    json.dump({{"world": world, "ranking": [list(e.modules) for e in result.ranking],
               "parts": result.contributions.flatten().tolist()}}, handle)
"""


def test_accelerate_launch_initialises_the_group_and_every_rank_agrees(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 script.py` on a machine without GPUs (2 gloo ranks),
    with no process-group code in the script."""
    root = str(Path(__file__).resolve().parents[2])
    script = tmp_path / "script.py"
    script.write_text(LAUNCHED.format(root=root, out=str(tmp_path)))
    # --multi_gpu on a machine without GPUs: accelerate starts 2 CPU ranks with torchrun, PartialState picks gloo
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               str(free_port()), str(script)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = [json.loads((tmp_path / f"launched{r}.json").read_text()) for r in range(2)]
    assert [f["world"] for f in found] == [2, 2]
    assert found[0]["ranking"] == found[1]["ranking"] and found[0]["parts"] == found[1]["parts"]
    alone = NTKSelector(make_model("bert"), CONFIG, budget=2, engine="hooks", num_samples=6,
                        show_progress=False).select(make_batch(n=6))  # fmt: skip
    assert found[0]["ranking"] == [list(e.modules) for e in alone.ranking]
    torch.testing.assert_close(torch.tensor(found[0]["parts"], dtype=torch.float64), alone.contributions.flatten(),
                               rtol=1e-10, atol=1e-14)  # fmt: skip


def free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]

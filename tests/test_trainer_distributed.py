"""Data parallel: 2 processes under torchrun (gloo on loopback) match 1 process with the same global batch.

Both runs see the same trajectories (scripted per question and sample, see tests/dist_worker.py), so
any difference comes from the distribution itself: which rank computes which rows, the all-gathers,
the gradient all-reduce. Tolerance: fp32 sums taken in another order (per-rank partial gradients, then
the all-reduce) differ by a few ulps; Adam divides by sqrt(v), which turns a relative error of ~1e-7
on a gradient into about the same relative error on the step, so after 3 steps at lr 1e-3 the
weights agree to ~1e-8 absolute. We allow 1e-6 on weights and 1e-5 (relative) on per-step metrics:
loose enough for any x86-64 BLAS, three orders below one optimizer step's size, so a wrong global
statistic (a per-rank group mean, a per-rank token normaliser, a missing all-reduce) fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tolerances import assert_same_after_adam

WORKER = Path(__file__).resolve().parent / "dist_worker.py"

STEPS, LR = 3, 1e-3
COMMON = [
    f"train.steps={STEPS}",
    "train.prompts_per_step=4",
    "rollout.group_size=2",
    "train.lora_r=0",
    f"train.lr={LR}",
    "train.critic_lr=0.001",
    "rollout.max_turns=4",
    "rollout.max_new_tokens=24",
    "rollout.max_context=768",
    "train.checkpoint_every=2",
]
OURS = {
    "grpo": [
        "train.algorithm=grpo",
        "train.kl_coef=0.01",
        "train.mini_batch=4",
        "train.micro_batch=1",
        "train.epochs=2",
    ],
    "reinforce_pp_baseline": [
        "train.algorithm=reinforce_pp_baseline",
        "train.kl_coef=0.01",
        "train.kl_in_reward=true",
        "train.mini_batch=8",
        "train.micro_batch=2",
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_worker(engine: str, out: Path, overrides: list[str], nproc: int) -> dict:  # type: ignore[type-arg]
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    if nproc == 1:
        cmd = [sys.executable, str(WORKER)]
    else:
        launcher = ["-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={nproc}"]
        cmd = [sys.executable, *launcher, "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(WORKER)]
        env.pop("WORLD_SIZE", None)
    res = subprocess.run([*cmd, engine, str(out), *overrides], capture_output=True, text=True, timeout=420, env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    return torch.load(out / "result.pt", weights_only=False)  # type: ignore[no-any-return]


def assert_same_run(one: dict, two: dict, skip: tuple[str, ...]) -> None:  # type: ignore[type-arg]
    assert len(one["history"]) == len(two["history"]) > 0
    for step, (a, b) in enumerate(zip(one["history"], two["history"], strict=True)):
        keys = {k for k in a if not k.startswith(skip)}
        assert keys == {k for k in b if not k.startswith(skip)}, step
        for k in keys:
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), (step, k, a[k], b[k])
    assert one["weights"].keys() == two["weights"].keys()
    for name, w in one["weights"].items():  # after Adam: summation-order noise is amplified (tests/tolerances.py)
        assert_same_after_adam(name, w, two["weights"][name], lr=LR, steps=STEPS)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:  # type: ignore[type-arg]
    """The 1-process reference run of each algorithm (shared by the tests below)."""
    root = tmp_path_factory.mktemp("one")
    return {a: run_worker("ours", root / a, [*COMMON, *o], 1) for a, o in OURS.items()}


def test_prompts_must_split_evenly_over_ranks() -> None:
    from searchrl.trainer.distributed import Distributed

    assert Distributed(rank=1, world=2).share(4) == range(2, 4)
    with pytest.raises(ValueError, match=r"train\.prompts_per_step=3 must be a multiple of the world size 2"):
        Distributed(rank=0, world=2).share(3)


@pytest.mark.parametrize("algorithm", sorted(OURS))
def test_two_processes_match_one(tmp_path: Path, algorithm: str, one_process: dict[str, dict]) -> None:  # type: ignore[type-arg]
    overrides = [*COMMON, *OURS[algorithm]]
    one = one_process[algorithm]
    two = run_worker("ours", tmp_path / "two", overrides, 2)
    assert_same_run(one, two, skip=("perf/", "retrieval/seconds", "retrieval/latency"))
    assert any(h["reward/std"] > 0 for h in one["history"]), "rewards never varied: the test trains nothing"
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and (tmp_path / "two" / "latest").is_file()  # rank 0 alone logs and checkpoints


def test_resume_from_another_world_size(tmp_path: Path, one_process: dict[str, dict]) -> None:  # type: ignore[type-arg]
    """2 processes train 2 steps and checkpoint; 1 process resumes for step 3: the same as 3 steps in one."""
    overrides = [*COMMON, *OURS["grpo"]]
    run_worker("ours", tmp_path / "run", [*overrides, "train.steps=2"], 2)
    from dist_worker import EXAMPLES, PromptScripted
    from helpers.rollout import CORPUS, KeywordRetriever
    from searchrl.config import load_config
    from searchrl.models import load_tokenizer, tiny_model
    from searchrl.trainer.loop import Trainer

    cfg = load_config(None, [f"output_dir={tmp_path / 'run'}", *overrides])
    tok = load_tokenizer("smollm2-135m-instruct")
    model = tiny_model(tok, layers=1, hidden=32, heads=2, seed=0)
    backend = PromptScripted(tok, cfg.rollout.group_size)
    trainer = Trainer(cfg, model, tok, KeywordRetriever(CORPUS), EXAMPLES, tmp_path / "run", backend=backend)
    assert trainer.resume() and trainer.state.step == 2
    last = trainer.fit()
    straight = one_process["grpo"]
    assert_same_run(
        {"history": straight["history"][2:], "weights": straight["weights"]},
        {"history": last, "weights": {n: p.detach() for n, p in trainer.policy.named_parameters()}},
        skip=("perf/", "retrieval/seconds", "retrieval/latency"),
    )


def test_trl_two_processes_match_one(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    # one optimizer step per generation batch: TRL shuffles a generation batch and deals it out to the ranks,
    # so smaller mini-batches hold different samples at different world sizes (same global batch, other order)
    overrides = [*COMMON, "train.algorithm=grpo", "train.kl_coef=0", "train.mini_batch=8", "train.micro_batch=2"]
    one = run_worker("trl", tmp_path / "one", overrides, 1)
    two = run_worker("trl", tmp_path / "two", overrides, 2)
    assert_same_run(one, two, skip=("step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second"))

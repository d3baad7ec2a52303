"""Step time of searchrl's trainer vs TRL's GRPOTrainer on the same model, prompts, group size and rollout.

Both engines train SmolLM2-135M-Instruct with the same LoRA, GRPO settings (KL 0.001 in the loss,
one epoch, one optimizer step per RL step) and the same rollouts: a scripted backend replays fixed
multi-turn texts (searches whose ``<information>`` blocks hold a real wiki-18 passage), so both
train on identical token sequences and rewards and the comparison is the trainers' cost only (log-probs,
reference, loss, backward, optimizer), not sampling luck. One run; the first step is a warm-up.
Usage: .venv/bin/python benchmarks/trl_step.py [--steps 3] [--prompts 4] [--group 4]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rollout import QUESTIONS, FixedRetriever
from searchrl.config import load_config
from searchrl.models import load_policy
from searchrl.rollout.scripted import ScriptedBackend
from searchrl.types import QAExample, Trajectory

THINK = "<think> I need to find this out. " + "Let me look it up carefully. " * 6 + "</think>"


def scripts(n: int) -> list[list[str]]:
    """Per row: 0 or 1 search, then an answer; lengths vary across the group."""
    return [
        [*[f"{THINK} <search> {QUESTIONS[i % len(QUESTIONS)]} </search>"] * (i % 2), f"{THINK} <answer> {i} </answer>"]
        for i in range(n)
    ]


def reward(traj: Trajectory, golds: tuple[str, ...]) -> float:
    """Deterministic in the trajectory (identical for both engines): the share of odd policy token ids."""
    sampled = [t for t, m in zip(traj.ids, traj.loss_mask, strict=True) if m]
    return sum(t % 2 for t in sampled) / max(1, len(sampled))


def overrides(out: Path, args: argparse.Namespace) -> list[str]:
    batch = args.prompts * args.group
    return [
        f"output_dir={out}",
        "train.algorithm=grpo",
        f"train.steps={args.steps}",
        f"train.prompts_per_step={args.prompts}",
        f"rollout.group_size={args.group}",
        f"train.mini_batch={batch}",
        "train.micro_batch=4",
        "train.lora_r=16",
        "train.kl_coef=0.001",
        "train.lr=1e-5",
        "train.checkpoint_every=1000",
        "rollout.max_turns=4",
        "rollout.max_new_tokens=96",
        "rollout.max_context=4096",
        "retrieval.topk=1",  # one real passage per <information> block keeps the eager-attention backward in RAM
    ]


def time_ours(args: argparse.Namespace, examples: list[QAExample], out: Path) -> list[float]:
    from searchrl.trainer.loop import Trainer

    cfg = load_config(None, overrides(out, args))
    model, tok = load_policy("smollm2-135m-instruct")
    backend = ScriptedBackend(tok, scripts(args.prompts * args.group))
    trainer = Trainer(cfg, model, tok, FixedRetriever(), examples, out, reward_fn=reward, backend=backend)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        trainer.step()
        times.append(time.perf_counter() - t0)
    return times


def time_trl(args: argparse.Namespace, examples: list[QAExample], out: Path) -> list[float]:
    from transformers import TrainerCallback

    from searchrl.engines.trl import build_grpo_trainer

    cfg = load_config(None, overrides(out, args))
    model, tok = load_policy("smollm2-135m-instruct")
    backend = ScriptedBackend(tok, scripts(args.prompts * args.group))
    trainer = build_grpo_trainer(
        cfg, model, tok, FixedRetriever(), examples, reward_fn=reward, backend=lambda t: backend
    )
    marks: list[float] = []

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            marks.append(time.perf_counter())

        def on_step_end(self, *a: Any, **k: Any) -> None:
            marks.append(time.perf_counter())

    trainer.add_callback(Clock())
    trainer.train()
    return [marks[i + 1] - marks[i] for i in range(0, len(marks) - 1, 2)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=4)
    args = ap.parse_args()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    torch.manual_seed(0)
    examples = [QAExample(f"bench/{i}", q, ("x",), "bench") for i, q in enumerate(QUESTIONS)]
    with tempfile.TemporaryDirectory() as tmp:
        ours = time_ours(args, examples, Path(tmp) / "ours")
        print(f"ours done, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB", flush=True)
        trl = time_trl(args, examples, Path(tmp) / "trl")
        print(f"TRL done, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB", flush=True)
    mean = lambda xs: sum(xs[1:]) / max(1, len(xs) - 1)  # noqa: E731 - the first step is a warm-up
    print(f"batch {args.prompts} prompts x {args.group} samples, LoRA r=16, threads {torch.get_num_threads()}")
    print("ours steps (s): " + " ".join(f"{t:.1f}" for t in ours))
    print("TRL  steps (s): " + " ".join(f"{t:.1f}" for t in trl))
    print(f"ratio ours/TRL step time (after the warm-up) = {mean(ours) / mean(trl):.2f}")


if __name__ == "__main__":
    main()

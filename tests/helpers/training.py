"""A tiny trainer with a reward it can learn on CPU: the share of sampled tokens in the lower half of the vocabulary.

The random model (scaled so its next-token distributions are peaked, like a trained LM's) starts near
0.5, and the policy can only raise the reward by shifting probability mass through the loss_mask-driven
losses.
"""

from __future__ import annotations

from pathlib import Path

import torch

from searchrl.config import load_config
from searchrl.models import tiny_model
from searchrl.trainer.loop import Trainer
from searchrl.types import Passage, QAExample, Trajectory


class NoSearch:
    def search(self, queries, k):  # type: ignore[no-untyped-def]
        return [[Passage("p", "t", "x", 0.0)] * k for _ in queries]


def low_half_reward(vocab: int):  # type: ignore[no-untyped-def]
    def reward(traj: Trajectory, golds: tuple[str, ...]) -> float:
        sampled = [t for t, m in zip(traj.ids, traj.loss_mask, strict=True) if m]
        return sum(t < vocab // 2 for t in sampled) / max(1, len(sampled))

    return reward


EXAMPLES = [QAExample(f"toy/{i}", f"Question {i}?", ("x",), "toy") for i in range(4)]


def make_trainer(smol_tokenizer, algorithm: str, run_dir: Path, steps: int = 12, extra=(), examples=None):  # type: ignore[no-untyped-def]
    cfg = load_config(
        None,
        [
            f"train.algorithm={algorithm}",
            f"train.steps={steps}",
            "train.lora_r=0",
            "train.lr=0.01",
            "train.critic_lr=0.01",
            "train.kl_coef=0",
            "train.prompts_per_step=2",
            "train.mini_batch=16",
            "train.micro_batch=8",
            "train.epochs=2",
            "train.checkpoint_every=4",
            "rollout.group_size=8",
            "rollout.max_turns=1",
            "rollout.max_new_tokens=8",
            "rollout.on_budget=stop",
            *extra,
        ],
    )
    model = tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0)
    with torch.no_grad():  # peaked next-token distributions, like a trained LM's (logit std ~3)
        model.get_output_embeddings().weight.mul_(30.0)
    return Trainer(
        cfg,
        model,
        smol_tokenizer,
        NoSearch(),
        examples or EXAMPLES,
        run_dir,
        reward_fn=low_half_reward(len(smol_tokenizer)),
    )

"""Learning on CPU: a tiny model trained by PPO, GRPO and REINFORCE++ raises a simple reward.

The reward is the share of sampled tokens whose id lies in the lower half of the vocabulary: the
random model (scaled so its next-token distributions are peaked, like a trained LM's) starts near 0.5,
and the policy can only raise it by shifting probability mass through the loss_mask-driven losses
(``helpers.training``).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from helpers.training import EXAMPLES, NoSearch, make_trainer
from searchrl.config import load_config
from searchrl.models import tiny_model
from searchrl.trainer.loop import Trainer


@pytest.mark.parametrize("algorithm", ["grpo", "reinforce_pp", "ppo"])
def test_algorithms_raise_reward(smol_tokenizer, tmp_path: Path, algorithm: str) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    trainer = make_trainer(smol_tokenizer, algorithm, tmp_path)
    history = trainer.fit()
    rewards = [h["reward/mean"] for h in history]
    start = rewards[0]  # step 1 samples from the initial policy, before any update
    best = max((a + b) / 2 for a, b in itertools.pairwise(rewards))  # two-step average
    assert start < 0.75 and best > start + 0.25, (algorithm, [round(r, 2) for r in rewards])
    assert all(h["actor/skipped_steps"] == 0 for h in history)


def test_reward_schedule_switches_by_step_and_survives_resume(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """train.reward_schedule picks the reward by RL step (R1-Searcher's two stages in one run)."""
    schedule = "train.reward_schedule=[{reward: em, until_step: 2}, {reward: f1}]"

    def build(run_dir: Path) -> Trainer:
        cfg = load_config(
            None,
            [
                "train.lora_r=0",
                "train.kl_coef=0",
                "train.prompts_per_step=1",
                "train.mini_batch=4",
                "rollout.group_size=4",
                "rollout.max_turns=1",
                "rollout.max_new_tokens=4",
                "train.checkpoint_every=1",
                schedule,
            ],
        )
        model = tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0)
        trainer = Trainer(cfg, model, smol_tokenizer, NoSearch(), EXAMPLES, run_dir)
        assert set(trainer.scheduled) == {"em", "f1"}
        trainer.scheduled = {"em": lambda traj, golds: 0.25, "f1": lambda traj, golds: 0.75}  # tell the stages apart
        return trainer

    metrics = build(tmp_path / "a").fit(3)
    assert [m["reward/stage"] for m in metrics] == [0.0, 0.0, 1.0]
    assert [m["reward/mean"] for m in metrics] == [0.25, 0.25, 0.75]
    first = build(tmp_path / "b")
    first.fit(2)
    resumed = build(tmp_path / "b")
    assert resumed.resume() and resumed.state.step == 2
    (after,) = resumed.fit(3)
    assert after["reward/stage"] == 1.0 and after["reward/mean"] == 0.75

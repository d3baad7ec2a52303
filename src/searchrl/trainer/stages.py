"""What the named stages of an RL step compute, outside the Trainer's object wiring.

``named_reward`` turns the config's reward name into the callable the stages use; ``advantages`` applies the configured estimator; ``rollout_metrics`` summarises a step's
trajectories. All of them take plain values and return plain values: the Trainer owns the models.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from searchrl.algorithms.registry import ADVANTAGE_ESTIMATORS, KL_ESTIMATORS
from searchrl.config import TrainConfig
from searchrl.data.protocols import TagProtocol
from searchrl.rewards.outcome import REWARD_FUNCTIONS, reward_input
from searchrl.trainer.batch import RolloutBatch
from searchrl.types import Trajectory

TrajectoryReward = Callable[[Trajectory, tuple[str, ...]], float]

ESTIMATOR_OF = {
    "ppo": "gae",
    "grpo": "grpo",
    "dr_grpo": "dr_grpo",
    "reinforce_pp": "reinforce_pp",
    "reinforce_pp_baseline": "reinforce_pp_baseline",
    "rloo": "rloo",
}


def named_reward(name: str, protocol: TagProtocol) -> TrajectoryReward:
    """The config's reward: a function of the trajectory's RewardInput (see searchrl.rewards.outcome)."""
    fn = REWARD_FUNCTIONS[name]
    return lambda traj, golds: fn(reward_input(traj, golds, protocol))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Scored:
    """A rollout batch with everything the update needs (all [B, T-1] unless noted)."""

    batch: RolloutBatch
    old_logprobs: torch.Tensor | None  # None: fully on-policy, the update uses the detached new log-probs
    ref_logprobs: torch.Tensor | None
    old_values: torch.Tensor | None
    advantages: torch.Tensor
    returns: torch.Tensor
    trajectories: list[Trajectory] = field(default_factory=list)


@torch.no_grad()
def advantages(
    t: TrainConfig,
    batch: RolloutBatch,
    old: torch.Tensor | None,
    ref: torch.Tensor | None,
    values: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) [B, T-1] of ``train.algorithm``'s estimator, the KL-in-reward term included."""
    kl = None
    if ref is not None and t.kl_in_reward and t.kl_coef > 0:  # a reference kept for logging adds no term
        assert old is not None  # the on-policy fast path never drops old log-probs when the KL is in the reward
        kl = KL_ESTIMATORS[t.kl_estimator](old, ref) * batch.loss_mask
    estimator = ADVANTAGE_ESTIMATORS[ESTIMATOR_OF[t.algorithm]]
    return estimator(
        rewards=batch.rewards,
        loss_mask=batch.loss_mask,
        group=batch.group,
        values=values,
        kl=kl,
        kl_coef=t.kl_coef if kl is not None else 0.0,
        gamma=t.gamma,
        lam=t.lam,
    )


def rollout_metrics(trajs: list[Trajectory], rewards: list[float], em: list[float]) -> dict[str, float]:
    n = len(trajs)
    return {
        "reward/mean": float(np.mean(rewards)),
        "reward/std": float(np.std(rewards)),
        "reward/em": float(np.mean(em)),
        "rollout/searches": sum(t.n_searches for t in trajs) / n,
        "rollout/invalid": sum(t.n_invalid for t in trajs) / n,
        "rollout/answered": sum(t.answer is not None for t in trajs) / n,
        "rollout/response_tokens": sum(len(t.ids) - t.prompt_len for t in trajs) / n,
        "rollout/policy_tokens": sum(t.n_policy_tokens for t in trajs) / n,
        "retrieval/seconds_per_search": sum(x.retrieval_s for t in trajs for x in t.turns if x.action == "search")
        / max(1, sum(t.n_searches for t in trajs)),
    }

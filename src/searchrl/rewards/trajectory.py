"""Rewards of a finished trajectory: what the trainer and the TRL adapter call for each sample.

A reward of ``REWARD_FUNCTIONS`` reads a :class:`~searchrl.rewards.outcome.RewardInput`;
:func:`named_reward` turns it into a function of the trajectory and its gold answers (through
:func:`~searchrl.rewards.outcome.reward_input`), and :func:`scheduled_rewards` builds one for every
reward a :class:`~searchrl.rewards.schedules.RewardSchedule` names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from searchrl.rewards.outcome import REWARD_FUNCTIONS, reward_input
from searchrl.types import Trajectory

if TYPE_CHECKING:
    from searchrl.data.protocols import TagProtocol
    from searchrl.rewards.schedules import RewardSchedule

__all__ = ["TrajectoryReward", "named_reward", "scheduled_rewards"]

TrajectoryReward = Callable[[Trajectory, tuple[str, ...]], float]


def named_reward(name: str, protocol: TagProtocol) -> TrajectoryReward:
    """The reward ``REWARD_FUNCTIONS[name]`` of a trajectory whose tags follow ``protocol``."""
    fn = REWARD_FUNCTIONS[name]
    return lambda traj, golds: fn(reward_input(traj, golds, protocol))


def scheduled_rewards(schedule: RewardSchedule, protocol: TagProtocol) -> dict[str, TrajectoryReward]:
    """Reward name -> trajectory reward, for every stage of ``schedule``."""
    return {s.reward: named_reward(s.reward, protocol) for s in schedule.stages}

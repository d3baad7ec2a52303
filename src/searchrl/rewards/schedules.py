"""Staged reward schedules: which reward function applies at a given training step.

R1-Searcher trains in two stages: stage 1 rewards retrieving in the right format, stage 2 rewards
answer F1 under a format penalty. A schedule is an ordered tuple of stages, each active from the end
of the previous one until its own ``until_step`` (exclusive); the last stage has no end. Steps count
optimizer steps from 0. A schedule is plain data; it names rewards from ``REWARD_FUNCTIONS``.
:meth:`RewardSchedule.from_config` is the one place a run's schedule is read from its config.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

from searchrl.rewards.outcome import REWARD_FUNCTIONS, RewardFn, RewardInput

if TYPE_CHECKING:
    from searchrl.config import TrainConfig

__all__ = ["RewardSchedule", "RewardStage"]


@dataclass(frozen=True, slots=True)
class RewardStage:
    """One stage: the reward named ``reward`` applies to steps before ``until_step`` (None = forever)."""

    reward: str
    until_step: int | None = None


@dataclass(frozen=True, slots=True)
class RewardSchedule:
    """Ordered stages; validated on construction (known names, increasing ends, open last stage)."""

    stages: tuple[RewardStage, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("a reward schedule needs at least one stage")
        for stage in self.stages:
            if stage.reward not in REWARD_FUNCTIONS:
                raise ValueError(f"unknown reward {stage.reward!r}; valid: {', '.join(REWARD_FUNCTIONS)}")
        ends = [s.until_step for s in self.stages[:-1]]
        if any(e is None for e in ends) or self.stages[-1].until_step is not None:
            raise ValueError("every stage but the last needs until_step; the last must have none")
        bounds = [0, *(e for e in ends if e is not None)]
        if any(nxt <= prev for prev, nxt in pairwise(bounds)):
            raise ValueError(f"stage ends must be positive and strictly increasing, got {ends}")

    @classmethod
    def from_config(cls, train: TrainConfig) -> RewardSchedule:
        """``train.reward_schedule``, or ``train.reward`` for the whole run when that list is empty."""
        stages = tuple(RewardStage(s.reward, s.until_step) for s in train.reward_schedule)
        return cls(stages or (RewardStage(train.reward),))

    @classmethod
    def single(cls, reward: str) -> RewardSchedule:
        """One reward for the whole run."""
        return cls((RewardStage(reward),))

    @classmethod
    def r1_searcher(cls, stage1_steps: int) -> RewardSchedule:
        """R1-Searcher's two stages: the retrieval/format reward for ``stage1_steps`` steps, then F1 + format."""
        return cls((RewardStage("r1_searcher_stage1", stage1_steps), RewardStage("r1_searcher_stage2")))

    def stage_index(self, step: int) -> int:
        """Index of the stage active at ``step`` (>= 0)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        for i, stage in enumerate(self.stages):
            if stage.until_step is None or step < stage.until_step:
                return i
        raise AssertionError("unreachable: the last stage is open-ended")

    def reward_name(self, step: int) -> str:
        return self.stages[self.stage_index(step)].reward

    def reward_fn(self, step: int) -> RewardFn:
        return REWARD_FUNCTIONS[self.reward_name(step)]

    def __call__(self, inp: RewardInput, step: int) -> float:
        """The reward of ``inp`` under the stage active at ``step``."""
        return self.reward_fn(step)(inp)

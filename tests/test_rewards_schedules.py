"""Staged reward schedules: stage boundaries and validation."""

from __future__ import annotations

import pytest

from searchrl.rewards.outcome import RewardInput, r1_searcher_stage1_reward, r1_searcher_stage2_reward
from searchrl.rewards.schedules import RewardSchedule, RewardStage


def test_r1_searcher_two_stages_switch_at_the_boundary() -> None:
    sched = RewardSchedule.r1_searcher(stage1_steps=10)
    assert [sched.stage_index(s) for s in (0, 9, 10, 10_000)] == [0, 0, 1, 1]
    assert sched.reward_fn(9) is r1_searcher_stage1_reward
    assert sched.reward_fn(10) is r1_searcher_stage2_reward
    inp = RewardInput("Lisbon", ("Lisbon",), n_searches=1, format_ok=True)
    assert sched(inp, 0) == 2.0 and sched(inp, 10) == 1.0


def test_three_stages_and_single() -> None:
    sched = RewardSchedule((RewardStage("em_format", 5), RewardStage("f1", 8), RewardStage("em")))
    assert [sched.reward_name(s) for s in (0, 4, 5, 7, 8, 100)] == ["em_format"] * 2 + ["f1"] * 2 + ["em"] * 2
    assert RewardSchedule.single("em").reward_name(123) == "em"


@pytest.mark.parametrize(
    "stages",
    [
        (),
        (RewardStage("nope"),),
        (RewardStage("em", 5),),  # last stage must be open
        (RewardStage("em"), RewardStage("f1")),  # only the last may be open
        (RewardStage("em", 5), RewardStage("f1", 5), RewardStage("em")),  # not increasing
        (RewardStage("em", 0), RewardStage("f1")),  # empty first stage
    ],
)
def test_invalid_schedules_fail_at_construction(stages: tuple[RewardStage, ...]) -> None:
    with pytest.raises(ValueError):
        RewardSchedule(stages)


def test_negative_step_is_an_error() -> None:
    with pytest.raises(ValueError):
        RewardSchedule.single("em").stage_index(-1)


def test_from_config_reads_the_schedule_or_the_single_reward() -> None:
    from searchrl.config import load_config

    assert RewardSchedule.from_config(load_config(None, ["train.reward=f1"]).train) == RewardSchedule.single("f1")
    two = "train.reward_schedule=[{reward: r1_searcher_stage1, until_step: 7}, {reward: r1_searcher_stage2}]"
    assert RewardSchedule.from_config(load_config(None, [two]).train) == RewardSchedule.r1_searcher(7)


def test_scheduled_rewards_score_a_trajectory_per_stage() -> None:
    from searchrl.data.protocols import PROTOCOLS
    from searchrl.rewards.trajectory import scheduled_rewards
    from searchrl.types import Trajectory, Turn

    protocol = PROTOCOLS["search_r1"]
    rewards = scheduled_rewards(RewardSchedule((RewardStage("em", 3), RewardStage("f1"))), protocol)
    assert set(rewards) == {"em", "f1"}
    traj = Trajectory("q", 0, [1, 2], [0, 1], [0.0, 0.0], 1, [Turn("answer", 1)], "Lisbon city", "answer")
    assert rewards["em"](traj, ("Lisbon",)) == 0.0
    assert rewards["f1"](traj, ("Lisbon",)) == pytest.approx(2 / 3)

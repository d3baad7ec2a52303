"""Answer metrics and outcome rewards, shared by training and evaluation.

``normalize`` holds the metrics (SQuAD normalization, EM, cover EM, F1, and the papers' own
``subem`` and R1-Searcher cover EM, registered by name in ``METRICS``); ``outcome`` the reward
functions over a :class:`RewardInput` and their registry; ``schedules`` the staged reward schedules.
"""

from searchrl.rewards.normalize import (
    METRICS,
    MetricName,
    cover_exact_match,
    exact_match,
    f1_score,
    normalize_answer,
    r1_cover_exact_match,
    substring_exact_match,
)
from searchrl.rewards.outcome import (
    REWARD_FUNCTIONS,
    RewardFn,
    RewardInput,
    RewardName,
    check_format,
    cover_em_reward,
    em_format_reward,
    em_reward,
    f1_reward,
    r1_searcher_stage1_reward,
    r1_searcher_stage2_reward,
    retrieved_blocks,
    reward_input,
)
from searchrl.rewards.schedules import RewardSchedule, RewardStage

__all__ = [
    "METRICS",
    "REWARD_FUNCTIONS",
    "MetricName",
    "RewardFn",
    "RewardInput",
    "RewardName",
    "RewardSchedule",
    "RewardStage",
    "check_format",
    "cover_em_reward",
    "cover_exact_match",
    "em_format_reward",
    "em_reward",
    "exact_match",
    "f1_reward",
    "f1_score",
    "normalize_answer",
    "r1_cover_exact_match",
    "r1_searcher_stage1_reward",
    "r1_searcher_stage2_reward",
    "retrieved_blocks",
    "reward_input",
    "substring_exact_match",
]

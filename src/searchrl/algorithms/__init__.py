"""Pure RL math: masked reductions, advantage estimators, losses, chunked log-probs, registries.

Every function takes tensors and plain numbers and returns tensors; shapes use B (batch), G (group),
T (target positions), V (vocabulary). ``loss_mask`` (1 = token sampled by the policy) drives every
reduction; see ``masked.py`` for its exact semantics.
"""

from searchrl.algorithms.advantages import (
    discounted_returns,
    gae,
    group_mean_std,
    grpo,
    reinforce_pp,
    reinforce_pp_baseline,
    rloo,
    token_rewards,
)
from searchrl.algorithms.logprobs import entropy_from_logits, logprobs_from_logits
from searchrl.algorithms.losses import (
    AGG_MODES,
    AggMode,
    PolicyLossOutput,
    ValueLossOutput,
    aggregate_loss,
    clipped_policy_loss,
    kl_k1,
    kl_k2,
    kl_k3,
    policy_gradient_loss,
    value_loss,
)
from searchrl.algorithms.masked import masked_mean, masked_sum, masked_var, masked_whiten
from searchrl.algorithms.registry import (
    ADVANTAGE_ESTIMATORS,
    KL_ESTIMATORS,
    POLICY_LOSSES,
    AdvantageEstimatorName,
    KLEstimatorName,
    PolicyLossName,
)

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "AGG_MODES",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "AdvantageEstimatorName",
    "AggMode",
    "KLEstimatorName",
    "PolicyLossName",
    "PolicyLossOutput",
    "ValueLossOutput",
    "aggregate_loss",
    "clipped_policy_loss",
    "discounted_returns",
    "entropy_from_logits",
    "gae",
    "group_mean_std",
    "grpo",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "logprobs_from_logits",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "policy_gradient_loss",
    "reinforce_pp",
    "reinforce_pp_baseline",
    "rloo",
    "token_rewards",
    "value_loss",
]

"""Name -> function registries for the config to pick from.

Each registry is an explicit dict whose keys are exactly the members of the matching ``Literal``
(a test pins this), so a config field typed with the ``Literal`` rejects a typo at load time and lists
the valid names.

Advantage estimators share one keyword-only signature (:class:`AdvantageFn`) so the trainer calls
them the same way; each reads what it needs and rejects what it cannot honour: ``gae`` requires
``values`` (its advantages are whitened over the policy tokens of the batch, as PPO in veRL does;
its returns, the critic targets, are not); the group estimators without a KL-in-reward term (``grpo``, ``dr_grpo``, ``rloo``) raise on
a nonzero ``kl_coef`` (use the KL loss with them instead).
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch

from searchrl.algorithms import advantages as adv
from searchrl.algorithms.losses import (
    AggMode,
    KLEstimator,
    PolicyLossOutput,
    clipped_policy_loss,
    kl_k1,
    kl_k2,
    kl_k3,
    policy_gradient_loss,
)
from searchrl.algorithms.masked import masked_whiten

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "AdvantageEstimatorName",
    "AdvantageFn",
    "KLEstimatorName",
    "PolicyLossFn",
    "PolicyLossName",
]

AdvantageEstimatorName = Literal["gae", "grpo", "dr_grpo", "reinforce_pp", "reinforce_pp_baseline", "rloo"]
PolicyLossName = Literal["ppo_clip", "pg"]
KLEstimatorName = Literal["k1", "k2", "k3"]


class AdvantageFn(Protocol):
    """rewards [B]; loss_mask [B, T]; group [B]; values [B, T] or None; kl [B, T] or None.

    Returns (advantages [B, T], returns [B, T]), 0 off the mask.
    """

    def __call__(
        self,
        *,
        rewards: torch.Tensor,
        loss_mask: torch.Tensor,
        group: torch.Tensor,
        values: torch.Tensor | None = None,
        kl: torch.Tensor | None = None,
        kl_coef: float = 0.0,
        gamma: float = 1.0,
        lam: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class PolicyLossFn(Protocol):
    """logprobs, old_logprobs, advantages, loss_mask: [B, T]. Returns a :class:`PolicyLossOutput`."""

    def __call__(
        self,
        logprobs: torch.Tensor,
        old_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        loss_mask: torch.Tensor,
        clip_low: float = 0.2,
        clip_high: float = 0.2,
        dual_clip: float | None = None,
        agg: AggMode = "token-mean",
        norm_len: int | None = None,
    ) -> PolicyLossOutput: ...


def _no_kl_in_reward(name: str, kl_coef: float) -> None:
    if kl_coef != 0.0:
        raise ValueError(f"advantage estimator {name!r} has no KL-in-reward term; use the KL loss (kl_coef must be 0)")


def _gae(
    *,
    rewards: torch.Tensor,
    loss_mask: torch.Tensor,
    group: torch.Tensor,
    values: torch.Tensor | None = None,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    if values is None:
        raise ValueError("advantage estimator 'gae' needs critic values")
    advantages, returns = adv.gae(adv.token_rewards(rewards, loss_mask, kl, kl_coef), values, loss_mask, gamma, lam)
    return masked_whiten(advantages, loss_mask), returns


def _grpo(
    *,
    rewards: torch.Tensor,
    loss_mask: torch.Tensor,
    group: torch.Tensor,
    values: torch.Tensor | None = None,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    _no_kl_in_reward("grpo", kl_coef)
    return adv.grpo(rewards, group, loss_mask, scale_by_std=True)


def _dr_grpo(
    *,
    rewards: torch.Tensor,
    loss_mask: torch.Tensor,
    group: torch.Tensor,
    values: torch.Tensor | None = None,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    _no_kl_in_reward("dr_grpo", kl_coef)
    return adv.grpo(rewards, group, loss_mask, scale_by_std=False)


def _rloo(
    *,
    rewards: torch.Tensor,
    loss_mask: torch.Tensor,
    group: torch.Tensor,
    values: torch.Tensor | None = None,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    _no_kl_in_reward("rloo", kl_coef)
    return adv.rloo(rewards, group, loss_mask)


def _reinforce_pp(
    *,
    rewards: torch.Tensor,
    loss_mask: torch.Tensor,
    group: torch.Tensor,
    values: torch.Tensor | None = None,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    return adv.reinforce_pp(rewards, loss_mask, kl, kl_coef, gamma)


def _reinforce_pp_baseline(
    *,
    rewards: torch.Tensor,
    loss_mask: torch.Tensor,
    group: torch.Tensor,
    values: torch.Tensor | None = None,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    return adv.reinforce_pp_baseline(rewards, group, loss_mask, kl, kl_coef, gamma)


ADVANTAGE_ESTIMATORS: dict[str, AdvantageFn] = {
    "gae": _gae,
    "grpo": _grpo,
    "dr_grpo": _dr_grpo,
    "reinforce_pp": _reinforce_pp,
    "reinforce_pp_baseline": _reinforce_pp_baseline,
    "rloo": _rloo,
}

POLICY_LOSSES: dict[str, PolicyLossFn] = {
    "ppo_clip": clipped_policy_loss,
    "pg": policy_gradient_loss,
}

KL_ESTIMATORS: dict[str, KLEstimator] = {
    "k1": kl_k1,
    "k2": kl_k2,
    "k3": kl_k3,
}

"""The advantage stage: ``train.algorithm``'s estimator on a step's global batch, KL-in-reward included."""

from __future__ import annotations

import torch

from searchrl.algorithms.advantages import estimate_advantages, needs_values
from searchrl.algorithms.losses import KL_ESTIMATORS
from searchrl.config import TrainConfig
from searchrl.trainer.batch import RolloutBatch


@torch.no_grad()
def compute_advantages(
    t: TrainConfig,
    batch: RolloutBatch,
    old: torch.Tensor | None,
    ref: torch.Tensor | None,
    values: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) [B, T-1] of ``train.algorithm``'s estimator.

    old, ref: [B, T-1] log-probs at rollout time and under the reference (or None); values: [B, T-1]
    critic values (ppo) or None. With ``train.kl_in_reward`` and ``kl_coef > 0`` the estimator gets the
    per-token KL of ``old`` to ``ref`` (``train.kl_estimator``) on the loss mask.
    """
    kl = None
    if ref is not None and t.kl_in_reward and t.kl_coef > 0:  # a reference kept for logging adds no term
        assert old is not None  # the on-policy fast path never drops old log-probs when the KL is in the reward
        kl = KL_ESTIMATORS[t.kl_estimator](old, ref) * batch.loss_mask
    return estimate_advantages(
        t.algorithm,
        rewards=batch.rewards,
        loss_mask=batch.loss_mask,
        group=batch.group,
        values=values,
        kl=kl,
        kl_coef=t.kl_coef if kl is not None else 0.0,
        gamma=t.gamma,
        lam=t.lam,
    )


def rows_with_advantage(t: TrainConfig, batch: RolloutBatch) -> torch.Tensor | None:
    """Rows [B] (bool) with a non-zero advantage somewhere on the loss mask, where the advantages read no
    log-prob or value (no critic, no KL in the reward: they are the rewards' alone); else None."""
    if needs_values(t.algorithm) or (t.kl_in_reward and t.kl_coef > 0):
        return None
    adv, _ = compute_advantages(t, batch, None, None, None)
    return ~(adv * batch.loss_mask == 0).all(-1)

"""Losses: clipped PPO policy loss (with dual clip), clipped value loss, KL estimators, aggregation.

Policy losses are registered by name (``train.policy_loss``) with ``@register_policy_loss`` and share
one signature (:class:`PolicyLossFn`); KL estimators (``train.kl_estimator``) with ``@register_kl``.
The names are the ``Literal`` types of :mod:`searchrl.algorithms.names`. The value loss has one form.

Shapes: B samples, T target positions; every per-token tensor is [B, T] and ``loss_mask`` (1 = token
sampled by the policy) selects which positions count. Excluded positions never influence a loss or a
metric, even when they hold NaN or inf. Losses are to be minimized; metrics are detached scalars.

Deliberate deviations from the papers and their reference code:

* Log-ratios are clamped to [-20, 20] before ``exp`` so that a stale or padded position can never
  overflow; with a sane mask this never binds.
* ``k3`` (veRL's ``low_var_kl``) is clamped to [-10, 10] per token, as veRL does, to bound the
  rare huge values of ``exp(ref - logp)``.
* ``seq-mean-token-sum-norm`` (Dr. GRPO) divides the token sum by ``B * norm_len`` with ``norm_len``
  a constant the caller fixes (the trainer and the TRL path both use ``rollout.max_context``), so the
  loss scale depends neither on response lengths, nor on the step's padded width, nor on the mask.
  Sequence-mean modes average over rows that have at least one policy token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from searchrl.algorithms.masked import masked_mean, masked_sum
from searchrl.algorithms.names import AGG_MODES, AggMode, KLEstimatorName, PolicyLossName, registrar

__all__ = [
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "KLEstimator",
    "PolicyLossFn",
    "PolicyLossOutput",
    "ValueLossOutput",
    "aggregate_loss",
    "clipped_policy_loss",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "policy_gradient_loss",
    "register_kl",
    "register_policy_loss",
    "value_loss",
]

LOG_RATIO_CLAMP = 20.0
K3_CLAMP = 10.0


def aggregate_loss(
    loss_mat: torch.Tensor, loss_mask: torch.Tensor, mode: AggMode = "token-mean", norm_len: int | None = None
) -> torch.Tensor:
    """Reduce a per-token loss to a scalar.

    loss_mat, loss_mask: [B, T]. Modes:
    ``token-mean``: sum over policy tokens / number of policy tokens (of the whole batch);
    ``seq-mean-token-sum``: per-row token sum, averaged over rows with a policy token;
    ``seq-mean-token-mean``: per-row token mean, averaged over rows with a policy token;
    ``seq-mean-token-sum-norm``: sum over policy tokens / (B * norm_len), ``norm_len`` defaulting to T.
    An all-zero mask gives 0 in every mode.
    """
    if mode == "token-mean":
        return masked_mean(loss_mat, loss_mask)
    rows = (loss_mask != 0).any(dim=-1)
    if mode == "seq-mean-token-sum":
        return masked_mean(masked_sum(loss_mat, loss_mask, dim=-1), rows)
    if mode == "seq-mean-token-mean":
        return masked_mean(masked_mean(loss_mat, loss_mask, dim=-1), rows)
    if mode == "seq-mean-token-sum-norm":
        b, t = loss_mask.shape
        return masked_sum(loss_mat, loss_mask) / (b * (norm_len if norm_len is not None else t))
    raise ValueError(f"unknown loss aggregation mode {mode!r}; valid: {', '.join(AGG_MODES)}")


@dataclass(frozen=True)
class PolicyLossOutput:
    """loss: scalar to minimize; the rest are detached scalar metrics over policy tokens."""

    loss: torch.Tensor
    clip_frac: torch.Tensor  # fraction of tokens whose gradient the clip removed
    dual_clip_frac: torch.Tensor  # fraction of tokens capped by the dual clip (negative advantages)
    approx_kl: torch.Tensor  # mean of k3(old || new), a drift monitor


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


POLICY_LOSSES: dict[str, PolicyLossFn] = {}  # train.policy_loss -> the loss


register_policy_loss: Callable[[PolicyLossName], Callable[[PolicyLossFn], PolicyLossFn]] = registrar(
    POLICY_LOSSES, "policy loss"
)


def _log_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    keep = loss_mask != 0
    diff = torch.where(keep, logprobs - old_logprobs, torch.zeros((), dtype=logprobs.dtype, device=logprobs.device))
    return diff.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)


@register_policy_loss("ppo_clip")
def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    agg: AggMode = "token-mean",
    norm_len: int | None = None,
) -> PolicyLossOutput:
    """PPO's clipped surrogate, per token: ``max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))``.

    logprobs: [B, T] current policy (differentiable); old_logprobs: [B, T] at rollout time;
    advantages: [B, T]; loss_mask: [B, T]. ``dual_clip = c > 1`` (Ye et al., 2020) caps the loss of
    tokens with negative advantage at ``-A c``, so a huge ratio cannot blow up the update.
    """
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
    log_ratio = _log_ratio(logprobs, old_logprobs, loss_mask)
    ratio = torch.exp(log_ratio)
    adv = advantages.detach()
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss_mat = torch.maximum(unclipped, clipped)
    clip_hit = (clipped > unclipped).float()
    dual_hit = torch.zeros_like(clip_hit)
    if dual_clip is not None:
        cap = -adv * dual_clip
        capped = torch.minimum(loss_mat, cap)
        dual_hit = ((adv < 0) & (loss_mat > cap)).float()
        loss_mat = torch.where(adv < 0, capped, loss_mat)
    with torch.no_grad():
        approx_kl = masked_mean(torch.exp(-log_ratio) - 1 + log_ratio, loss_mask)
    return PolicyLossOutput(
        loss=aggregate_loss(loss_mat, loss_mask, agg, norm_len),
        clip_frac=masked_mean(clip_hit, loss_mask).detach(),
        dual_clip_frac=masked_mean(dual_hit, loss_mask).detach(),
        approx_kl=approx_kl,
    )


@register_policy_loss("pg")
def policy_gradient_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    agg: AggMode = "token-mean",
    norm_len: int | None = None,
) -> PolicyLossOutput:
    """Unclipped importance-weighted policy gradient, per token ``-A r`` (on-policy: ``-A log p``'s gradient).

    Same signature as :func:`clipped_policy_loss` so the two are interchangeable by name; the clip
    arguments are accepted and ignored.
    """
    del clip_low, clip_high, dual_clip
    log_ratio = _log_ratio(logprobs, old_logprobs, loss_mask)
    loss_mat = -advantages.detach() * torch.exp(log_ratio)
    zero = torch.zeros((), device=logprobs.device)
    with torch.no_grad():
        approx_kl = masked_mean(torch.exp(-log_ratio) - 1 + log_ratio, loss_mask)
    return PolicyLossOutput(aggregate_loss(loss_mat, loss_mask, agg, norm_len), zero, zero, approx_kl)


@dataclass(frozen=True)
class ValueLossOutput:
    """loss: scalar to minimize; clip_frac: detached fraction of tokens where the clipped error was larger."""

    loss: torch.Tensor
    clip_frac: torch.Tensor


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    loss_mask: torch.Tensor,
    clip_range: float | None = 0.2,
    agg: AggMode = "token-mean",
    norm_len: int | None = None,
) -> ValueLossOutput:
    """Critic loss ``0.5 * max((V - R)^2, (V_clip - R)^2)``, ``V_clip = old + clip(V - old, ±clip_range)``.

    values: [B, T] current critic (differentiable); old_values: [B, T] at rollout time; returns: [B, T]
    GAE targets; loss_mask: [B, T]. ``clip_range=None`` disables clipping (plain squared error).
    """
    target = returns.detach()
    err = (values - target) ** 2
    if clip_range is None:
        zero = torch.zeros((), device=values.device)
        return ValueLossOutput(0.5 * aggregate_loss(err, loss_mask, agg, norm_len), zero)
    old = old_values.detach()
    clipped = old + (values - old).clamp(-clip_range, clip_range)
    err_clipped = (clipped - target) ** 2
    loss_mat = torch.maximum(err, err_clipped)
    frac = masked_mean((err_clipped > err).float(), loss_mask).detach()
    return ValueLossOutput(0.5 * aggregate_loss(loss_mat, loss_mask, agg, norm_len), frac)


KLEstimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
KL_ESTIMATORS: dict[str, KLEstimator] = {}  # train.kl_estimator -> the estimator


register_kl: Callable[[KLEstimatorName], Callable[[KLEstimator], KLEstimator]] = registrar(
    KL_ESTIMATORS, "KL estimator"
)


@register_kl("k1")
def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k1 = log p - log p_ref per token ([B, T] -> [B, T]); unbiased for KL(p || ref), high variance."""
    return logprobs - ref_logprobs


@register_kl("k2")
def kl_k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k2 = 0.5 (log p - log p_ref)^2 per token ([B, T] -> [B, T]); biased, low variance, always >= 0."""
    return 0.5 * (logprobs - ref_logprobs) ** 2


@register_kl("k3")
def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k3 = exp(ref - logp) - (ref - logp) - 1 per token ([B, T] -> [B, T]); unbiased, >= 0 (low_var_kl).

    The log-ratio is clamped to ±20 and the result to [-10, 10] (see the module docstring).
    """
    log_ratio = (ref_logprobs - logprobs).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return (torch.exp(log_ratio) - log_ratio - 1).clamp(-K3_CLAMP, K3_CLAMP)

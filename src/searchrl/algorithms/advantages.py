"""Advantage estimators: GAE, GRPO (and Dr. GRPO), REINFORCE++ (and its group baseline), RLOO.

Each estimator is registered by name (``train.algorithm``, see :mod:`searchrl.algorithms.names`) with
``@register_adv_est``; :func:`estimate_advantages` runs one by name on the inputs its signature names.

Shapes: B samples, T target positions (the ``[B, T-1]`` axis of a ``RolloutBatch``, called T here).
``loss_mask[b, t] = 1`` exactly when target t of sample b was sampled by the policy; env-injected
tokens (passages, corrective messages), the prompt and padding are 0. Every estimator returns
``(advantages [B, T], returns [B, T])``, both exactly 0 where the mask is 0. ``group [B]`` holds any
integer per sample; samples with equal ids answer the same prompt. All estimators run under no_grad.

Deliberate deviations from the papers and their reference code:

* Observation tokens are not time steps. GAE and the REINFORCE++ returns chain each policy token to
  the *next policy token*, skipping injected tokens entirely: their values never enter a TD error,
  rewards sitting on them are ignored, and discounting counts policy tokens only. (Search-R1's veRL
  GAE ran the recursion over the observation tokens too; this was a source of instability.)
* The outcome reward sits on the last policy token of each sample (not on the last non-pad token,
  which may be an injected one). A sample with no policy token contributes nothing.
* The KL penalty in the reward (REINFORCE++, PPO with ``kl_coef``) is applied at policy tokens only.
* Group statistics use the unbiased std with ``eps = 1e-6`` added to the std (veRL's choice; OpenRLHF
  uses 1e-9). A group of one sample gets advantage 0 (no baseline exists), as does a group whose
  rewards are all equal.
* Groups are keyed by the ``group`` tensor, never by dataset-local indices, so two datasets cannot
  collide in one group.
* R1-Searcher's "modified REINFORCE++" is ``reinforce_pp_baseline``: outcome minus the group mean,
  then the (optional) KL penalty, then whitening over all policy tokens of the batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from searchrl.algorithms.masked import masked_whiten
from searchrl.algorithms.names import AlgorithmName, registrar

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "discounted_returns",
    "dr_grpo",
    "estimate_advantages",
    "gae",
    "gae_unwhitened",
    "group_mean_std",
    "grpo",
    "needs_values",
    "register_adv_est",
    "reinforce_pp",
    "reinforce_pp_baseline",
    "rloo",
    "token_rewards",
]

GRPO_EPS = 1e-6

AdvantageFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]

ADVANTAGE_ESTIMATORS: dict[str, AdvantageFn] = {}  # train.algorithm -> its estimator


register_adv_est: Callable[[AlgorithmName], Callable[[AdvantageFn], AdvantageFn]] = registrar(
    ADVANTAGE_ESTIMATORS, "advantage estimator"
)


def _last_policy_index(loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index [B] of the last mask=1 position per row (0 when none), has_any [B] bool)."""
    keep = loss_mask != 0
    t = loss_mask.shape[-1]
    pos = torch.arange(t, device=loss_mask.device).expand_as(keep)
    last = torch.where(keep, pos, torch.full_like(pos, -1)).amax(dim=-1)
    return last.clamp_min(0), last >= 0


@torch.no_grad()
def token_rewards(
    rewards: torch.Tensor, loss_mask: torch.Tensor, kl: torch.Tensor | None = None, kl_coef: float = 0.0
) -> torch.Tensor:
    """Per-token rewards: the outcome on the last policy token, minus ``kl_coef * kl`` on policy tokens.

    rewards: [B] outcome rewards; loss_mask: [B, T]; kl: [B, T] per-token KL estimate (policy vs
    reference) or None. Returns [B, T], 0 off the mask.
    """
    keep = loss_mask != 0
    out = torch.zeros(loss_mask.shape, dtype=torch.float32, device=loss_mask.device)
    if kl is not None and kl_coef != 0.0:
        out = out - kl_coef * torch.where(keep, kl.float(), torch.zeros_like(out))
    last, has_any = _last_policy_index(loss_mask)
    bonus = torch.where(has_any, rewards.float(), torch.zeros_like(rewards, dtype=torch.float32))
    return out.scatter_add(1, last[:, None], bonus[:, None])


@torch.no_grad()
def discounted_returns(x: torch.Tensor, loss_mask: torch.Tensor, discount: float) -> torch.Tensor:
    """Reverse discounted sum over policy tokens only: ``out_t = x_t + discount * out_next(t)``.

    ``next(t)`` is the next position with mask 1 (injected tokens are skipped, not discounted).
    x: [B, T]; loss_mask: [B, T]. Returns [B, T] float32, 0 off the mask. Values of x off the mask
    are ignored.
    """
    keep = loss_mask != 0
    xs = torch.where(keep, x.float(), torch.zeros((), device=x.device))
    if discount == 1.0:  # no discount: a plain reverse cumulative sum, no loop over T
        out = xs.flip(-1).cumsum(-1).flip(-1)
        return torch.where(keep, out, torch.zeros((), device=x.device))
    out = torch.zeros_like(xs)
    carry = torch.zeros(xs.shape[0], dtype=xs.dtype, device=xs.device)
    for t in range(xs.shape[1] - 1, -1, -1):
        carry = torch.where(keep[:, t], xs[:, t] + discount * carry, carry)
        out[:, t] = torch.where(keep[:, t], carry, torch.zeros((), device=x.device))
    return out


def _next_policy_values(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """values at the next mask=1 position after each t ([B, T]); 0 when there is none."""
    b, t = keep.shape
    pos = torch.arange(t, device=keep.device).expand(b, t)
    idx = torch.where(keep, pos, torch.full_like(pos, t))
    # Reverse running minimum: the first policy position at or after t; shift by one for "after".
    first_at_or_after = idx.flip(-1).cummin(-1).values.flip(-1)
    nxt = torch.cat([first_at_or_after[:, 1:], torch.full((b, 1), t, device=keep.device)], dim=1)
    padded = torch.cat([values.float(), torch.zeros((b, 1), device=values.device)], dim=1)
    return padded.gather(1, nxt)


@register_adv_est("ppo")
@torch.no_grad()
def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    loss_mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's advantages: GAE of (outcome - kl_coef * KL), whitened over all policy tokens of the batch.

    rewards: [B] outcome rewards; values: [B, T] critic values; loss_mask: [B, T]; kl: [B, T] or None.
    Returns (advantages [B, T] whitened, as PPO in veRL does; returns [B, T], the critic's targets,
    not whitened), 0 off the mask. See :func:`gae_unwhitened` for the recursion.
    """
    advantages, returns = gae_unwhitened(token_rewards(rewards, loss_mask, kl, kl_coef), values, loss_mask, gamma, lam)
    return masked_whiten(advantages, loss_mask), returns


@torch.no_grad()
def gae_unwhitened(
    token_level_rewards: torch.Tensor,
    values: torch.Tensor,
    loss_mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over policy tokens, skipping injected tokens.

    token_level_rewards: [B, T] (see :func:`token_rewards`); values: [B, T] critic values (only those
    at policy tokens are read); loss_mask: [B, T]. For a policy token t with next policy token t'
    (value 0 past the last one): ``delta_t = r_t + gamma * V_t' - V_t``, ``A_t = delta_t + gamma * lam * A_t'``.
    Returns (advantages [B, T], returns = advantages + values [B, T]), 0 off the mask; not whitened.
    """
    keep = loss_mask != 0
    v = torch.where(keep, values.float(), torch.zeros((), device=values.device))
    delta = token_level_rewards.float() + gamma * _next_policy_values(v, keep) - v
    adv = discounted_returns(delta, keep, gamma * lam)
    returns = torch.where(keep, adv + v, torch.zeros((), device=values.device))
    return adv, returns


@torch.no_grad()
def group_mean_std(rewards: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample statistics of its group: (mean [B], unbiased std [B], group size [B]).

    rewards: [B]; group: [B] integer ids (any values). A group of one has std 0.
    """
    _, inverse = torch.unique(group, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if inverse.numel() else 0
    r = rewards.float()
    count = torch.zeros(n_groups, device=r.device).index_add_(0, inverse, torch.ones_like(r))
    total = torch.zeros(n_groups, device=r.device).index_add_(0, inverse, r)
    mean = (total / count)[inverse]
    sq = torch.zeros(n_groups, device=r.device).index_add_(0, inverse, (r - mean) ** 2)
    std = (sq / (count - 1).clamp_min(1)).sqrt()[inverse]
    return mean, std, count[inverse]


def _broadcast(per_sample: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, T]: the value on every policy token, 0 elsewhere."""
    keep = loss_mask != 0
    return torch.where(keep, per_sample[:, None].float(), torch.zeros((), device=loss_mask.device))


@register_adv_est("grpo")
@torch.no_grad()
def grpo(
    rewards: torch.Tensor,
    group: torch.Tensor,
    loss_mask: torch.Tensor,
    scale_by_std: bool = True,
    eps: float = GRPO_EPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO: ``(r - mean_group) / (std_group + eps)`` on every policy token of the sample.

    rewards: [B]; group: [B]; loss_mask: [B, T]. ``scale_by_std=False`` is Dr. GRPO's unbiased form
    (pair it with the ``seq-mean-token-sum-norm`` loss aggregation). Returns (advantages, returns),
    identical, [B, T].
    """
    mean, std, count = group_mean_std(rewards, group)
    centered = torch.where(count > 1, rewards.float() - mean, torch.zeros_like(mean))
    scores = centered / (std + eps) if scale_by_std else centered
    adv = _broadcast(scores, loss_mask)
    return adv, adv


@register_adv_est("dr_grpo")
@torch.no_grad()
def dr_grpo(rewards: torch.Tensor, group: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dr. GRPO: :func:`grpo` without the division by the group std (``r - mean_group``). [B], [B], [B, T] -> [B, T] x 2."""
    return grpo(rewards, group, loss_mask, scale_by_std=False)


@register_adv_est("rloo")
@torch.no_grad()
def rloo(rewards: torch.Tensor, group: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE leave-one-out: ``r_i - mean_{j != i in group} r_j`` on every policy token.

    rewards: [B]; group: [B]; loss_mask: [B, T]. A group of one gets 0. Returns (advantages, returns),
    identical, [B, T].
    """
    mean, _, count = group_mean_std(rewards, group)
    r = rewards.float()
    others = (mean * count - r) / (count - 1).clamp_min(1)
    scores = torch.where(count > 1, r - others, torch.zeros_like(r))
    adv = _broadcast(scores, loss_mask)
    return adv, adv


@register_adv_est("reinforce_pp")
@torch.no_grad()
def reinforce_pp(
    rewards: torch.Tensor,
    loss_mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++: token returns of (outcome - kl_coef * KL), whitened over all policy tokens of the batch.

    rewards: [B]; loss_mask: [B, T]; kl: [B, T] or None. Returns (advantages [B, T] whitened,
    returns [B, T] unwhitened), 0 off the mask.
    """
    returns = discounted_returns(token_rewards(rewards, loss_mask, kl, kl_coef), loss_mask, gamma)
    return masked_whiten(returns, loss_mask), returns


@register_adv_est("reinforce_pp_baseline")
@torch.no_grad()
def reinforce_pp_baseline(
    rewards: torch.Tensor,
    group: torch.Tensor,
    loss_mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++ with a group baseline (R1-Searcher): subtract the group mean, then as :func:`reinforce_pp`.

    rewards: [B]; group: [B]; loss_mask: [B, T]; kl: [B, T] or None. Returns (advantages, returns) [B, T].
    """
    mean, _, _ = group_mean_std(rewards, group)
    return reinforce_pp(rewards.float() - mean, loss_mask, kl, kl_coef, gamma)


def needs_values(name: str) -> bool:
    """Whether the estimator registered as ``name`` reads critic values."""
    return "values" in inspect.signature(ADVANTAGE_ESTIMATORS[name]).parameters


def estimate_advantages(
    name: str,
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
    """(advantages [B, T], returns [B, T]) of the estimator registered as ``name``.

    rewards [B]; loss_mask [B, T]; group [B]; values [B, T] (critic) or None; kl [B, T] (policy vs
    reference, per token) or None. The estimator receives the inputs its signature names and ignores
    the rest; it cannot honour, and so rejects, a nonzero ``kl_coef`` when it has no ``kl_coef``
    parameter (no KL-in-reward term: use the KL loss) and a missing critic when it needs ``values``.
    """
    fn = ADVANTAGE_ESTIMATORS[name]
    takes = inspect.signature(fn).parameters
    if kl_coef != 0.0 and "kl_coef" not in takes:
        raise ValueError(f"advantage estimator {name!r} has no KL-in-reward term; use the KL loss (kl_coef must be 0)")
    if needs_values(name) and values is None:
        raise ValueError(f"advantage estimator {name!r} needs critic values")
    given: dict[str, object] = {"rewards": rewards, "loss_mask": loss_mask, "group": group, "values": values}
    given |= {"kl": kl, "kl_coef": kl_coef, "gamma": gamma, "lam": lam}
    return fn(**{k: v for k, v in given.items() if k in takes})

"""The update stage: epochs over mini-batches, micro-batch gradient accumulation, one optimizer step each.

Gradient accumulation weights each micro-batch by its share of the mini-batch's tokens (or rows), so
micro-batch size x accumulation steps does not change the update. A non-finite loss or gradient skips
that optimizer step and is logged (``actor/skipped_steps``). Rows whose advantages are all zero are
not run when no other loss term needs them (``train.fast_paths``): their gradient is exactly zero.

Deliberate choices:

* ``train.loss_agg`` aggregates the value loss as it does the policy loss (veRL does the same): with a
  sequence-mean mode the micro-batches are weighted by rows, and a value loss averaged over tokens
  instead would make the update depend on ``micro_batch``.
* ``seq-mean-token-sum-norm`` (Dr. GRPO) divides by rows x ``norm_len``, a constant of the run: the
  trainer passes ``rollout.max_context``, the constant TRL's path gets as ``max_completion_length``
  (``searchrl.engines.trl``), never the step's padded width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from searchrl.algorithms.losses import KL_ESTIMATORS, POLICY_LOSSES, value_loss
from searchrl.algorithms.masked import masked_mean
from searchrl.config import TrainConfig
from searchrl.trainer.batch import RolloutBatch, Scored
from searchrl.trainer.critic import ValueModel
from searchrl.trainer.distributed import Distributed
from searchrl.trainer.prefix import batch_logprobs, by_length, group_order


@dataclass(frozen=True)
class MicroLoss:
    """The loss of one micro-batch and what is logged about it."""

    loss: torch.Tensor  # scalar to backpropagate: policy loss (+ KL, - entropy bonus, + value loss)
    terms: dict[str, float]  # loss terms of this micro-batch (actor/pg_loss, ...), averaged with its weight
    token_sums: dict[str, float]  # monitored statistics (actor/kl, actor/entropy) summed over its policy tokens
    policy_tokens: float  # how many policy tokens those sums cover


class PolicyUpdate:
    """Applies ``train.*``'s update rule to a policy (and critic) with their optimizers."""

    def __init__(
        self,
        t: TrainConfig,
        policy: Any,
        optimizer: torch.optim.Optimizer,
        critic: ValueModel | None,
        critic_opt: torch.optim.Optimizer | None,
        *,
        kl_in_loss: bool,  # a KL term with kl_coef > 0 in the loss (a reference kept only for logging is not)
        norm_len: int,  # Dr. GRPO's constant (loss_agg seq-mean-token-sum-norm): rollout.max_context
        dist: Distributed | None = None,
    ) -> None:
        self.t, self.policy, self.optimizer = t, policy, optimizer
        self.critic, self.critic_opt = critic, critic_opt
        self.kl_in_loss, self.norm_len = kl_in_loss, norm_len
        self.dist = dist or Distributed()

    def only_policy_loss(self) -> bool:
        """Whether a row with zero advantages contributes exactly nothing to the loss."""
        t = self.t
        kl_in_loss = self.kl_in_loss and not t.kl_in_reward
        return t.fast_paths and not kl_in_loss and t.entropy_coef == 0 and self.critic is None

    def run(self, scored: Scored, gen: torch.Generator) -> dict[str, float]:
        """``train.epochs`` passes over ``scored`` in mini-batches drawn by ``gen``; mean stats per key."""
        self.policy.train()
        stats: dict[str, list[float]] = {}
        for _ in range(self.t.epochs):
            perm = self.order(scored.batch, gen)
            for s in range(0, scored.batch.size, self.t.mini_batch):
                for k, v in self.minibatch(scored, perm[s : s + self.t.mini_batch]).items():
                    stats.setdefault(k, []).append(v)
        return {k: float(np.mean(v)) for k, v in stats.items()}

    def order(self, batch: RolloutBatch, gen: torch.Generator) -> torch.Tensor:
        """An epoch's row order, drawn from ``gen``; mini-batches are its consecutive slices."""
        if self.t.shared_prompt:  # whole groups per mini-batch, so micro-batches can share prompts
            return group_order(batch.group, gen)
        return torch.randperm(batch.size, generator=gen)

    def first_step_rows(self, batch: RolloutBatch, gen: torch.Generator) -> torch.Tensor | None:
        """Rows [B] (bool) of the first optimizer step when no later step reads their old log-probs (one
        epoch; the KL is not in the reward, whose advantages would read them). Those rows are on-policy at
        update time: their old log-probs are the update's own, detached (TRL does the same with one
        iteration), so the old-log-prob pass skips them. ``gen`` must draw what :meth:`run`'s will. None:
        every row needs its old log-probs."""
        t = self.t
        if not t.fast_paths or t.epochs != 1 or (t.kl_coef > 0 and t.kl_in_reward):
            return None
        rows = torch.zeros(batch.size, dtype=torch.bool, device=batch.input_ids.device)
        rows[self.order(batch, gen)[: t.mini_batch].to(rows.device)] = True
        return rows

    def minibatch(self, scored: Scored, index: torch.Tensor) -> dict[str, float]:
        """One optimizer step on rows ``index`` of ``scored`` (global rows; this rank runs its own of them)."""
        t = self.t
        total_tokens = float(scored.batch.loss_mask[index].sum().clamp(min=1))  # of the global mini-batch
        n_rows = len(index)
        self._zero_grad()
        skipped: dict[str, float] = {}
        if self.only_policy_loss():  # zero-advantage rows add exactly 0 to the gradient: do not run them
            keep = ~(scored.advantages[index] * scored.batch.loss_mask[index] == 0).all(-1)
            skipped["actor/rows_skipped"] = float((~keep).sum()) / n_rows
            index = index[keep]
        if self.dist.world > 1:
            own = self.dist.share(scored.batch.size, "rows")
            index = index[(index >= own.start) & (index < own.stop)]
        if not t.shared_prompt:  # similar lengths per micro-batch (the gradient is a sum over rows: same sum)
            index = index[by_length(scored.batch.attention_mask[index])]
        out: dict[str, float] = {}
        sums: dict[str, float] = {"policy_tokens": 0.0}  # monitored statistics: sums over policy tokens
        finite = True
        for s in range(0, len(index), t.micro_batch):
            idx = index[s : s + t.micro_batch]
            weight = float(scored.batch.loss_mask[idx].sum()) / total_tokens
            if t.loss_agg != "token-mean":
                weight = len(idx) / n_rows
            micro = self.micro_loss(scored, idx)
            sums["policy_tokens"] += micro.policy_tokens
            for k, v in micro.token_sums.items():
                sums[k] = sums.get(k, 0.0) + v
            if not torch.isfinite(micro.loss):
                finite = False
                break
            (micro.loss * weight).backward()
            for k, v in micro.terms.items():
                out[k] = out.get(k, 0.0) + v * weight
        self.dist.sum_grads(self._params())
        out = self.dist.sum_stats(out)  # each rank's parts are weighted by its share of the global tokens
        sums = self.dist.sum_stats(sums)
        n_policy = sums.pop("policy_tokens")
        if n_policy > 0:  # exact means over the policy tokens of the rows that ran (none: not logged)
            out.update({k: v / n_policy for k, v in sums.items()})
        norm, stepped = self._step(self.dist.all_true(finite))
        out["actor/skipped_steps"] = 0.0 if stepped else 1.0
        out["actor/grad_norm"] = norm
        return {**skipped, **out}

    def _params(self) -> list[torch.Tensor]:
        """Every parameter the optimizers step, policy first (one fixed order on every rank)."""
        opts = [o for o in (self.optimizer, self.critic_opt) if o is not None]
        return [p for o in opts for g in o.param_groups for p in g["params"]]

    def _zero_grad(self) -> None:
        """Every trainable parameter gets a zero gradient, so a step with no rows still steps the optimizer
        (momentum, weight decay) exactly as one whose gradient happens to be zero."""
        for opt in (self.optimizer, self.critic_opt):
            if opt is not None:
                for group in opt.param_groups:
                    for p in group["params"]:
                        p.grad = torch.zeros_like(p)

    def _step(self, finite: bool) -> tuple[float, bool]:
        """Clip and step; returns (the policy's gradient norm, whether the optimizers stepped)."""
        t = self.t
        grads = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = float(torch.nn.utils.clip_grad_norm_(grads, t.max_grad_norm))
        stepped = finite and math.isfinite(norm)
        if stepped:
            self.optimizer.step()
            if self.critic_opt is not None and self.critic is not None:
                cgrads = [p for g in self.critic_opt.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(cgrads, t.max_grad_norm)
                self.critic_opt.step()
        for opt in (self.optimizer, self.critic_opt):
            if opt is not None:
                opt.zero_grad(set_to_none=True)
        return norm, stepped

    def micro_loss(self, scored: Scored, idx: torch.Tensor) -> MicroLoss:
        """The loss of rows ``idx``, its terms, and the monitored statistics (entropy, KL) summed over the
        rows' own policy tokens."""
        t = self.t
        b = scored.batch.select(idx)
        mask = b.loss_mask
        bonus = t.entropy_coef > 0
        new, ent = batch_logprobs(
            self.policy, b, mask, shared=t.shared_prompt, with_entropy=bonus or t.log_entropy, entropy_grad=bonus
        )
        old = new.detach() if scored.old_logprobs is None else scored.old_logprobs[idx]
        if scored.fresh is not None and scored.old_logprobs is not None:  # on-policy rows: see first_step_rows
            old = torch.where(scored.fresh[idx, None], new.detach(), old)
        pl = POLICY_LOSSES[t.policy_loss](
            new,
            old,
            scored.advantages[idx],
            mask,
            clip_low=t.clip_eps,
            clip_high=t.clip_eps,
            dual_clip=t.clip_ratio_c,
            agg=t.loss_agg,
            norm_len=self.norm_len,
        )
        loss = pl.loss
        terms = {
            "actor/pg_loss": float(pl.loss.detach()),
            "actor/clip_frac": float(pl.clip_frac),
            "actor/approx_kl": float(pl.approx_kl),
        }
        if t.clip_ratio_c is not None:
            terms["actor/dual_clip_frac"] = float(pl.dual_clip_frac)
        # monitored over the policy's own tokens (a subset of the loss mask), in the ablation too
        own = b.policy_mask
        sums: dict[str, float] = {}
        if scored.ref_logprobs is not None:
            estimator, ref = KL_ESTIMATORS[t.kl_estimator], scored.ref_logprobs[idx]
            if self.kl_in_loss and not t.kl_in_reward:  # the KL term of the loss
                loss = loss + t.kl_coef * masked_mean(estimator(new, ref), mask)
            sums["actor/kl"] = float((estimator(new.detach(), ref) * own).sum())
        if ent is not None:
            if bonus:
                loss = loss - t.entropy_coef * masked_mean(ent, mask)
            sums["actor/entropy"] = float((ent.detach() * own).sum())
        if self.critic is not None and scored.old_values is not None:
            values = self.critic(b.input_ids, b.attention_mask)
            old_values, returns = scored.old_values[idx], scored.returns[idx]
            vl = value_loss(values, old_values, returns, mask, agg=t.loss_agg, norm_len=self.norm_len)
            loss = loss + vl.loss
            terms["critic/value_loss"] = float(vl.loss.detach())
        return MicroLoss(loss, terms, sums, float(own.sum()))

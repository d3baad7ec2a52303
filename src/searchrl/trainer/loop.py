"""The RL loop as named stages: rollout -> reward -> log-probs -> advantages -> update -> metrics.

Deviations from the papers, on purpose:

* One ``loss_mask`` (from the rollout) drives the policy loss, KL, entropy, value loss and advantage
  whitening; ``train.mask_retrieved_tokens: false`` is the ablation, applied once at collation.
* Old log-probs are recomputed with the training forward pass rather than taken from the sampler, so
  the first PPO ratio is exactly 1 even when sampling used another numerical path (e.g. vLLM). When a
  step is fully on-policy (one epoch, one mini-batch) that pass is skipped and the detached new
  log-probs stand in for it: the same gradient, one forward pass fewer (``train.fast_paths``).
* Rows whose advantages are all zero (a GRPO group with equal rewards) are not run through the update
  when no other loss term needs them; their gradient is exactly zero anyway (``train.fast_paths``).
* Gradient accumulation weights each micro-batch by its share of the mini-batch's tokens (or rows),
  so micro-batch size x accumulation steps does not change the update.
* A non-finite loss or gradient skips that optimizer step and is logged (``actor/skipped_steps``).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from searchrl.algorithms.losses import clipped_policy_loss, value_loss
from searchrl.algorithms.masked import masked_mean
from searchrl.algorithms.registry import ADVANTAGE_ESTIMATORS, KL_ESTIMATORS
from searchrl.config import Config
from searchrl.data.protocols import PROTOCOLS, TagProtocol
from searchrl.rewards.normalize import exact_match
from searchrl.rewards.outcome import REWARD_FUNCTIONS, reward_input
from searchrl.rewards.schedules import RewardSchedule, RewardStage
from searchrl.rollout.backend import SamplingParams
from searchrl.rollout.engine import RolloutEngine, RolloutLimits, RolloutRequest
from searchrl.rollout.hf import HFGenerator
from searchrl.rollout.prompts import prompt_ids
from searchrl.rollout.trace import text_spans
from searchrl.trainer.batch import RolloutBatch, collate
from searchrl.trainer.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from searchrl.trainer.components import Reference, ValueModel, add_lora, build_critic
from searchrl.trainer.metrics import MetricsSink
from searchrl.trainer.policy import token_logprobs
from searchrl.types import QAExample, Trajectory

TrajectoryReward = Callable[[Trajectory, tuple[str, ...]], float]


def named_reward(name: str, protocol: TagProtocol) -> TrajectoryReward:
    """The config's reward: a function of the trajectory's RewardInput (see searchrl.rewards.outcome)."""
    fn = REWARD_FUNCTIONS[name]
    return lambda traj, golds: fn(reward_input(traj, golds, protocol))


ESTIMATOR_OF = {
    "ppo": "gae",
    "grpo": "grpo",
    "reinforce_pp": "reinforce_pp",
    "reinforce_pp_baseline": "reinforce_pp_baseline",
    "rloo": "rloo",
}


@dataclass
class Scored:
    """A rollout batch with everything the update needs (all [B, T-1] unless noted)."""

    batch: RolloutBatch
    old_logprobs: torch.Tensor | None  # None: fully on-policy, the update uses the detached new log-probs
    ref_logprobs: torch.Tensor | None
    old_values: torch.Tensor | None
    advantages: torch.Tensor
    returns: torch.Tensor
    trajectories: list[Trajectory] = field(default_factory=list)


def rollout_limits(cfg: Config) -> RolloutLimits:
    r = cfg.rollout
    return RolloutLimits(
        max_turns=r.max_turns,
        max_searches=r.max_searches,
        max_new_tokens=r.max_new_tokens,
        max_context=r.max_context,
        topk=cfg.retrieval.topk,
        answer_reserve=r.answer_reserve,
        on_budget=r.on_budget,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Holds the run's objects; :meth:`step` runs one RL step as a short list of named stages."""

    def __init__(
        self,
        cfg: Config,
        policy: Any,
        tokenizer: Any,
        retriever: Any,
        examples: Sequence[QAExample],
        run_dir: str | Path,
        reward_fn: TrajectoryReward | None = None,
    ) -> None:
        if not examples:
            raise ValueError("training needs at least one example")
        t = cfg.train
        if t.kl_in_reward and t.algorithm in ("grpo", "rloo") and t.kl_coef > 0:
            raise ValueError(f"train.algorithm={t.algorithm} has no KL-in-reward term; set train.kl_in_reward=false")
        self.cfg, self.tokenizer, self.examples = cfg, tokenizer, list(examples)
        protocol = PROTOCOLS[cfg.rollout.protocol]
        stages = tuple(RewardStage(s.reward, s.until_step) for s in t.reward_schedule) or (RewardStage(t.reward),)
        self.schedule = RewardSchedule(stages)  # train.reward_schedule, else train.reward throughout
        self.scheduled = {s.reward: named_reward(s.reward, protocol) for s in stages}
        self.reward_fn = reward_fn  # an explicit reward function replaces the configured ones
        self.run_dir = Path(run_dir)
        seed_everything(cfg.seed)
        self.lora = t.lora_r > 0
        base = policy
        self.policy = add_lora(policy, t.lora_r, t.lora_alpha, cfg.seed) if self.lora else policy
        self.reference = Reference(self.policy, self.lora) if t.kl_coef > 0 else None
        self.critic: ValueModel | None = (
            build_critic(base, t.lora_r, t.lora_alpha, cfg.seed) if t.algorithm == "ppo" else None
        )
        params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=0.0)
        self.critic_opt = None
        if self.critic is not None:
            cparams = [p for p in self.critic.parameters() if p.requires_grad]
            self.critic_opt = torch.optim.AdamW(cparams, lr=t.critic_lr, weight_decay=0.0)
        self.protocol: TagProtocol = PROTOCOLS[cfg.rollout.protocol]
        self.engine = RolloutEngine(
            HFGenerator(self.policy, tokenizer), retriever, tokenizer, self.protocol, rollout_limits(cfg)
        )
        self.state = TrainState()
        self.metrics = MetricsSink(self.run_dir)
        self.order = list(range(len(self.examples)))
        random.Random(cfg.seed).shuffle(self.order)

    # -- checkpoints ------------------------------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        mods: dict[str, torch.nn.Module] = {"policy": self.policy}
        if self.critic is not None:
            mods["critic"] = self.critic
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts: dict[str, torch.optim.Optimizer] = {"policy": self.optimizer}
        if self.critic_opt is not None:
            opts["critic"] = self.critic_opt
        return opts

    def save(self) -> Path:
        return save_checkpoint(self.run_dir, self.state, self.modules(), self.optimizers())

    def resume(self) -> bool:
        """Continue from the latest checkpoint of the run folder, if there is one."""
        path = latest_checkpoint(self.run_dir)
        if path is None:
            return False
        self.state = load_checkpoint(path, self.modules(), self.optimizers())
        return True

    # -- stages -----------------------------------------------------------------------------------
    def next_examples(self) -> list[QAExample]:
        n = self.cfg.train.prompts_per_step
        picked = [self.examples[self.order[(self.state.data_position + i) % len(self.order)]] for i in range(n)]
        self.state.data_position += n
        return picked

    def stage_rollout(self, examples: list[QAExample]) -> list[Trajectory]:
        r = self.cfg.rollout
        reqs = [
            RolloutRequest(ex.id, g, prompt_ids(self.tokenizer, self.protocol, ex.question))
            for ex in examples
            for g in range(r.group_size)
        ]
        params = SamplingParams(temperature=r.temperature, top_p=r.top_p, top_k=r.top_k)
        self.policy.eval()
        return self.engine.run(reqs, params, seed=self.cfg.seed * 1_000_003 + self.state.step)

    def stage_reward(self, examples: list[QAExample], trajs: list[Trajectory]) -> tuple[list[float], list[float]]:
        """(rewards, exact match) per trajectory; trajectories come grouped by example."""
        fn = self.reward_fn or self.scheduled[self.schedule.reward_name(self.state.step)]
        golds = [ex.answers for ex in examples for _ in range(self.cfg.rollout.group_size)]
        rewards = [fn(t, g) for t, g in zip(trajs, golds, strict=True)]
        em = [exact_match(t.answer, g) if t.answer is not None else 0.0 for t, g in zip(trajs, golds, strict=True)]
        return rewards, em

    def _forward_chunks(self, model: Any, batch: RolloutBatch) -> torch.Tensor:
        mb = self.cfg.train.micro_batch
        outs = []
        for s in range(0, batch.size, mb):
            idx = torch.arange(s, min(s + mb, batch.size))
            sub = batch.select(idx)
            lp, _ = token_logprobs(model, sub.input_ids, sub.attention_mask, sub.loss_mask)
            outs.append(lp)
        return torch.cat(outs)

    def _on_policy(self, batch_size: int) -> bool:
        """One optimizer step on exactly this batch: the old log-probs equal the new ones at update time."""
        t = self.cfg.train
        kl_needs_old = self.reference is not None and t.kl_in_reward
        return t.fast_paths and t.epochs == 1 and t.mini_batch >= batch_size and not kl_needs_old

    def _only_policy_loss(self) -> bool:
        """Whether a row with zero advantages contributes exactly nothing to the loss."""
        t = self.cfg.train
        kl_in_loss = self.reference is not None and not t.kl_in_reward
        return t.fast_paths and not kl_in_loss and t.entropy_coef == 0 and self.critic is None

    @torch.no_grad()
    def stage_logprobs(
        self, batch: RolloutBatch
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        self.policy.eval()
        old = None if self._on_policy(batch.size) else self._forward_chunks(self.policy, batch)
        ref = None
        if self.reference is not None:
            with self.reference.model() as ref_model:
                ref = self._forward_chunks(ref_model, batch)
        values = None
        if self.critic is not None:
            values = self.critic(batch.input_ids, batch.attention_mask) * batch.loss_mask
        return old, ref, values

    @torch.no_grad()
    def stage_advantages(
        self, batch: RolloutBatch, old: torch.Tensor | None, ref: torch.Tensor | None, values: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.cfg.train
        kl = None
        if ref is not None and t.kl_in_reward:
            assert old is not None  # _on_policy never drops the old log-probs when the KL is in the reward
            kl = KL_ESTIMATORS[t.kl_estimator](old, ref) * batch.loss_mask
        estimator = ADVANTAGE_ESTIMATORS[ESTIMATOR_OF[t.algorithm]]
        return estimator(
            rewards=batch.rewards,
            loss_mask=batch.loss_mask,
            group=batch.group,
            values=values,
            kl=kl,
            kl_coef=t.kl_coef if kl is not None else 0.0,
            gamma=t.gamma,
            lam=t.lam,
        )

    def stage_update(self, scored: Scored) -> dict[str, float]:
        t = self.cfg.train
        self.policy.train()
        stats: dict[str, list[float]] = {}
        gen = torch.Generator().manual_seed(self.cfg.seed * 7919 + self.state.step)
        for _ in range(t.epochs):
            perm = torch.randperm(scored.batch.size, generator=gen)
            for s in range(0, scored.batch.size, t.mini_batch):
                for k, v in self._minibatch(scored, perm[s : s + t.mini_batch]).items():
                    stats.setdefault(k, []).append(v)
        return {k: float(np.mean(v)) for k, v in stats.items()}

    def _minibatch(self, scored: Scored, index: torch.Tensor) -> dict[str, float]:
        t = self.cfg.train
        total_tokens = float(scored.batch.loss_mask[index].sum().clamp(min=1))
        n_rows = len(index)
        self.optimizer.zero_grad(set_to_none=True)
        if self.critic_opt is not None:
            self.critic_opt.zero_grad(set_to_none=True)
        out: dict[str, float] = {}
        finite = True
        if self._only_policy_loss():  # zero-advantage rows add exactly 0 to the gradient: do not run them
            keep = ~(scored.advantages[index] * scored.batch.loss_mask[index] == 0).all(-1)
            out["actor/rows_skipped"] = float((~keep).sum()) / len(index)
            if not keep.any():  # an all-zero gradient still steps the optimizer (momentum, weight decay)
                for p in self.policy.parameters():
                    if p.requires_grad:
                        p.grad = torch.zeros_like(p)
            index = index[keep]
        for s in range(0, len(index), t.micro_batch):
            idx = index[s : s + t.micro_batch]
            weight = float(scored.batch.loss_mask[idx].sum()) / total_tokens
            if t.loss_agg != "token-mean":
                weight = len(idx) / n_rows
            parts = self._micro_losses(scored, idx)
            loss = parts.pop("loss")
            if not torch.isfinite(loss):
                finite = False
                break
            (loss * weight).backward()
            for k, v in parts.items():
                out[k] = out.get(k, 0.0) + v * weight
        grads = [p for p in self.policy.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(grads, t.max_grad_norm) if grads else torch.tensor(0.0)
        if finite and math.isfinite(float(norm)):
            self.optimizer.step()
            if self.critic_opt is not None and self.critic is not None:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in self.critic.parameters() if p.grad is not None], t.max_grad_norm
                )
                self.critic_opt.step()
            out["actor/skipped_steps"] = 0.0
        else:
            out["actor/skipped_steps"] = 1.0
        self.optimizer.zero_grad(set_to_none=True)
        out["actor/grad_norm"] = float(norm)
        return out

    def _micro_losses(self, scored: Scored, idx: torch.Tensor) -> dict[str, Any]:
        t = self.cfg.train
        b = scored.batch.select(idx)
        mask = b.loss_mask
        new, ent = token_logprobs(self.policy, b.input_ids, b.attention_mask, mask, with_entropy=t.entropy_coef > 0)
        old = new.detach() if scored.old_logprobs is None else scored.old_logprobs[idx]
        pl = clipped_policy_loss(
            new,
            old,
            scored.advantages[idx],
            mask,
            clip_low=t.clip_eps,
            clip_high=t.clip_eps,
            agg=t.loss_agg,
        )
        loss = pl.loss
        out: dict[str, Any] = {
            "actor/pg_loss": float(pl.loss.detach()),
            "actor/clip_frac": float(pl.clip_frac),
            "actor/approx_kl": float(pl.approx_kl),
        }
        if scored.ref_logprobs is not None and not t.kl_in_reward:
            kl = masked_mean(KL_ESTIMATORS[t.kl_estimator](new, scored.ref_logprobs[idx]), mask)
            loss = loss + t.kl_coef * kl
            out["actor/kl"] = float(kl.detach())
        if ent is not None:
            entropy = masked_mean(ent, mask)
            loss = loss - t.entropy_coef * entropy
            out["actor/entropy"] = float(entropy.detach())
        if self.critic is not None and scored.old_values is not None:
            values = self.critic(b.input_ids, b.attention_mask)
            vl = value_loss(values, scored.old_values[idx], scored.returns[idx], mask)
            loss = loss + vl.loss
            out["critic/value_loss"] = float(vl.loss.detach())
        out["loss"] = loss
        return out

    # -- one step ---------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        examples = self.next_examples()
        trajs = self.stage_rollout(examples)
        timings["perf/time_rollout"] = time.perf_counter() - t0
        rewards, em = self.stage_reward(examples, trajs)
        groups = [i for i in range(len(examples)) for _ in range(self.cfg.rollout.group_size)]
        batch = collate(
            trajs,
            rewards,
            groups,
            int(self.tokenizer.pad_token_id),
            mask_retrieved=self.cfg.train.mask_retrieved_tokens,
        )
        t1 = time.perf_counter()
        old, ref, values = self.stage_logprobs(batch)
        adv, ret = self.stage_advantages(batch, old, ref, values)
        timings["perf/time_logprobs"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        stats = self.stage_update(Scored(batch, old, ref, values, adv, ret, trajs))
        timings["perf/time_update"] = time.perf_counter() - t2
        timings["perf/time_step"] = time.perf_counter() - t0
        metrics = {**rollout_metrics(trajs, rewards, em), **stats, **timings}
        if len(self.schedule.stages) > 1 and self.reward_fn is None:
            metrics["reward/stage"] = float(self.schedule.stage_index(self.state.step))
        self.state.step += 1
        self.metrics.log(self.state.step, metrics)
        best = int(np.argmax(rewards))
        self.metrics.text(
            self.state.step,
            "rollout/sample",
            trajs[best].response_text,
            question=examples[best // self.cfg.rollout.group_size].question,
            golds=list(examples[best // self.cfg.rollout.group_size].answers),
            reward=rewards[best],
            spans=text_spans(trajs[best], self.tokenizer),
        )
        return metrics

    def fit(self, steps: int | None = None, progress: Any = None) -> list[dict[str, float]]:
        """Run until ``train.steps`` (or ``steps``) have been done; checkpoints along the way."""
        total = self.cfg.train.steps if steps is None else steps
        history = []
        while self.state.step < total:
            history.append(self.step())
            if progress is not None:
                progress(self.state.step, total, history[-1])
            if self.state.step % self.cfg.train.checkpoint_every == 0 or self.state.step == total:
                self.save()
        return history


def load_trained_policy(run_dir: str | Path, overrides: list[str] | None = None) -> tuple[Config, Any, Any, int]:
    """The policy of a run folder: its saved config (plus ``overrides``), the base model, the LoRA adapter
    (if the run used one) and the weights of its latest checkpoint. Returns (config, policy, tokenizer, step)."""
    from searchrl.config import load_config
    from searchrl.models import load_policy
    from searchrl.trainer.checkpoint import load_weights

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml)")
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet (no 'latest' pointer)")
    cfg = load_config(run_dir / "config.yaml", overrides)
    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    policy = add_lora(model, cfg.train.lora_r, cfg.train.lora_alpha, cfg.seed) if cfg.train.lora_r > 0 else model
    load_weights(ckpt, "policy", policy)
    policy.eval()
    step = int(json.loads((ckpt / "state.json").read_text())["step"])
    return cfg, policy, tok, step


def rollout_metrics(trajs: list[Trajectory], rewards: list[float], em: list[float]) -> dict[str, float]:
    n = len(trajs)
    return {
        "reward/mean": float(np.mean(rewards)),
        "reward/std": float(np.std(rewards)),
        "reward/em": float(np.mean(em)),
        "rollout/searches": sum(t.n_searches for t in trajs) / n,
        "rollout/invalid": sum(t.n_invalid for t in trajs) / n,
        "rollout/answered": sum(t.answer is not None for t in trajs) / n,
        "rollout/response_tokens": sum(len(t.ids) - t.prompt_len for t in trajs) / n,
        "rollout/policy_tokens": sum(t.n_policy_tokens for t in trajs) / n,
        "retrieval/seconds_per_search": sum(x.retrieval_s for t in trajs for x in t.turns if x.action == "search")
        / max(1, sum(t.n_searches for t in trajs)),
    }

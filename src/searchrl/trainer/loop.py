"""The RL loop as named stages: rollout -> reward -> log-probs -> advantages -> update -> metrics.

Where each concern lives: the collated batch in :mod:`searchrl.trainer.batch`, log-probs in
:mod:`searchrl.trainer.logprobs`, the advantage stage in :mod:`searchrl.trainer.advantage`, the
optimizer update in :mod:`searchrl.trainer.update`, checkpoints in :mod:`searchrl.trainer.checkpoint`,
the models beside the policy in :mod:`~searchrl.trainer.lora`, :mod:`~searchrl.trainer.reference` and
:mod:`~searchrl.trainer.critic`, the collapse watchdog (checks, rollback) in :mod:`~searchrl.trainer.watchdog`.
This module wires them into :class:`Trainer`.

Deviations from the papers, on purpose:

* One ``loss_mask`` (from the rollout) drives the policy loss, KL, entropy, value loss and advantage
  whitening; ``train.mask_retrieved_tokens: false`` is the ablation, applied once at collation. The
  logged entropy and KL are means over the policy's own tokens (``policy_mask``), in the ablation too.
* The KL reference is the policy the RL run starts from (its checkpoint 0: a warm start, a stage-1
  policy), not the model without its adapter; ``train.log_kl`` logs that KL when ``kl_coef`` is 0.
* Old log-probs are recomputed with the training forward pass rather than taken from the sampler, so
  the first PPO ratio is exactly 1 even when sampling used another numerical path (e.g. vLLM). Rows of
  the first optimizer step of a one-epoch update skip that pass (all rows when there is one mini-batch):
  they are on-policy when they run, so the detached new log-probs stand in (``train.fast_paths``).
* Rows whose advantages are all zero (a GRPO group with equal rewards) are not run through the update
  when no other loss term needs them; their gradient is exactly zero anyway (``train.fast_paths``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from searchrl.audit import SearchDrift, audit_batch
from searchrl.config import Config, TrainConfig
from searchrl.data.protocols import PROTOCOLS, TagProtocol
from searchrl.metrics import MetricsSink, rollout_metrics
from searchrl.rewards.normalize import exact_match
from searchrl.rewards.schedules import RewardSchedule
from searchrl.rewards.trajectory import TrajectoryReward, scheduled_rewards
from searchrl.rollout.backend import GeneratorBackend, SamplingParams
from searchrl.rollout.build import build_rollout
from searchrl.rollout.engine import RolloutRequest
from searchrl.rollout.hf import HFGenerator
from searchrl.rollout.prompts import prompt_ids
from searchrl.rollout.trace import text_spans
from searchrl.trainer.advantage import compute_advantages, rows_with_advantage
from searchrl.trainer.batch import RolloutBatch, Scored, collate
from searchrl.trainer.checkpoint import (
    TrainState,
    checkpoint_dir,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from searchrl.trainer.critic import ValueModel, build_critic
from searchrl.trainer.distributed import Distributed
from searchrl.trainer.lora import add_lora
from searchrl.trainer.prefix import batch_logprobs, by_length
from searchrl.trainer.reference import Reference
from searchrl.trainer.sampling import Drawn, prompt_order
from searchrl.trainer.update import PolicyUpdate
from searchrl.trainer.watchdog import Watchdog
from searchrl.types import QAExample, Trajectory

__all__ = ["Trainer"]


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
        backend: GeneratorBackend | None = None,
        dist: Distributed | None = None,
    ) -> None:
        """``backend`` generates the rollouts (default: the Hugging Face backend over ``policy``); ``dist``
        places this process in a data-parallel job (default: one process; see trainer/distributed.py)."""
        if not examples:
            raise ValueError("training needs at least one example")
        t = cfg.train
        self.cfg, self.tokenizer, self.examples = cfg, tokenizer, list(examples)
        self.dist = dist or Distributed()
        self.dist.share(t.prompts_per_step)  # fails early, naming the field, when the prompts do not split evenly
        protocol = PROTOCOLS[cfg.rollout.protocol]
        self.schedule = RewardSchedule.from_config(t)
        self.scheduled = scheduled_rewards(self.schedule, protocol)
        self.reward_fn = reward_fn  # an explicit reward function replaces the configured ones
        self.run_dir = Path(run_dir)
        _seed_everything(cfg.seed)
        self.lora = t.lora_r > 0
        base = policy
        self.policy = add_lora(policy, t.lora_r, t.lora_alpha, cfg.seed, t.lora_layers) if self.lora else policy
        self.reference = Reference(self.policy, self.lora) if t.kl_coef > 0 or t.log_kl else None
        self.critic: ValueModel | None = (
            build_critic(base, t.lora_r, t.lora_alpha, cfg.seed, t.lora_layers) if t.algorithm == "ppo" else None
        )
        params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=0.0)
        self.critic_opt = None
        if self.critic is not None:
            cparams = [p for p in self.critic.parameters() if p.requires_grad]
            self.critic_opt = torch.optim.AdamW(cparams, lr=t.critic_lr, weight_decay=0.0)
        self.update = self.build_update(t)
        self.watchdog = Watchdog(t.watchdog) if t.watchdog.enabled else None
        self.protocol: TagProtocol = protocol
        self.engine = build_rollout(cfg, backend or HFGenerator(self.policy, tokenizer), retriever, tokenizer)
        self.search_stats = getattr(retriever, "stats", None)  # SearchStats: de-duplicated and cached queries
        self.state = TrainState()
        self.drift = SearchDrift()  # audit/searches_*: the one-search shortcut (searchrl.audit)
        self._injected_sums: tuple[float, float] | None = None  # this step's, from the old log-prob pass
        self.metrics = MetricsSink(self.run_dir) if self.dist.is_main else None  # rank 0 logs
        self.order = prompt_order(self.examples, cfg.seed, t.balance_types)

    def build_update(self, t: TrainConfig) -> PolicyUpdate:
        """The update stage under ``t`` (the watchdog rebuilds it with a KL term after a trip)."""
        trained = (self.policy, self.optimizer, self.critic, self.critic_opt)
        norm_len = self.cfg.rollout.max_context  # as TRL's max_completion_length (engines/trl.py)
        return PolicyUpdate(t, *trained, kl_in_loss=t.kl_coef > 0, norm_len=norm_len, dist=self.dist)

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

    def save(self) -> Path | None:
        """Rank 0 writes the checkpoint (every rank holds the same weights and optimizer state)."""
        keep = self.watchdog.saving(self.state) if self.watchdog is not None else ()  # its last passed one
        if not self.dist.is_main:
            return None
        return save_checkpoint(self.run_dir, self.state, self.modules(), self.optimizers(), protect=keep)

    def resume(self) -> bool:
        """Continue from the latest checkpoint of the run folder, if there is one."""
        path = latest_checkpoint(self.run_dir)
        if path is None:
            return False
        self.state = load_checkpoint(path, self.modules(), self.optimizers())
        if self.watchdog is not None:
            self.watchdog.resumed(self.state)
        start = checkpoint_dir(self.run_dir, 0)
        if self.reference is not None and (start / "policy.safetensors").is_file():
            self.reference.load(start)
        return True

    # -- one step ---------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        if self.state.step == 0 and self.reference is not None:
            self.reference.capture()  # the policy RL starts from (a warm start, stage 1): the KL reference
        clock = _Clock()
        searched = self.search_stats.copy() if self.search_stats is not None else None
        drawn = self.stage_sample(clock)
        examples, trajs, rewards = drawn.train_groups(self.dist.world)
        batch = self.stage_collate(examples, trajs, rewards)
        fresh = self.update.first_step_rows(batch, self._update_gen())  # rows needing no old log-probs
        old, ref, values = clock.time("logprobs", self.stage_logprobs, batch, fresh)
        injected = clock.time("injected", self.stage_injected, batch)
        adv, ret = clock.time("advantages", self.stage_advantages, batch, old, ref, values)
        stats = clock.time("update", self.stage_update, Scored(batch, old, ref, values, adv, ret, fresh))
        metrics = {**rollout_metrics(drawn.trajs, drawn.rewards, drawn.em), **drawn.metrics()}
        metrics["rollout/rows_trained"] = float(batch.size)
        if searched is not None and self.search_stats is not None:  # retrieval/unique_fraction, cache_hit_rate
            metrics |= self.search_stats.since(searched).metrics()
        audit = clock.time("audit", self.stage_audit, drawn, metrics["rollout/searches"])
        metrics |= {**audit, **stats, **injected, **clock.timings()}
        self.state.step += 1
        self.stage_log(examples, trajs, rewards, metrics)
        return metrics

    def fit(self, steps: int | None = None, progress: Any = None) -> list[dict[str, float]]:
        """Run until ``train.steps`` (or ``steps``) have been done; checkpoints along the way. With
        ``train.watchdog`` a step that trips rolls the run back (its metrics stay in the history)."""
        total = self.cfg.train.steps if steps is None else steps
        history = []
        if self.watchdog is not None:
            self.watchdog.start(self)
        while self.state.step < total:
            history.append(self.step())
            if progress is not None:
                progress(self.state.step, total, history[-1])
            if self.watchdog is not None and not self.watchdog.after_step(self, history[-1]):
                continue  # tripped: back at the last checkpoint that passed
            if self.state.step % self.cfg.train.checkpoint_every == 0 or self.state.step == total:
                self.save()
        return history

    # -- the stages, in the order step() runs them ------------------------------------------------
    def next_examples(self) -> list[QAExample]:
        n = self.cfg.train.prompts_per_step
        picked = [self.examples[self.order[(self.state.data_position + i) % len(self.order)]] for i in range(n)]
        self.state.data_position += n
        return picked

    def stage_sample(self, clock: _Clock) -> Drawn:
        """This step's groups, scored and gathered from every rank: one draw of ``prompts_per_step``
        prompts, or with ``train.dynamic_sampling`` further draws until ``prompts_per_step`` groups have
        unequal rewards or ``dynamic_sampling_max_groups`` groups were generated. Every draw moves the
        data position, so a resumed run continues where the sampling stopped. The counts are global:
        every rank sees the same gathered rewards."""
        t = self.cfg.train
        cap = t.dynamic_sampling_max_groups or 4 * t.prompts_per_step
        drawn = Drawn(t.dynamic_sampling, t.prompts_per_step, self.cfg.rollout.group_size)
        while True:
            examples = self.next_examples()
            mine = [examples[i] for i in self.dist.share(len(examples))]
            trajs = clock.time("rollout", self.stage_rollout, mine, drawn.draws)
            rewards, em = self.stage_reward(mine, trajs)
            drawn.add(examples, *self.stage_gather(trajs, rewards, em))
            if not t.dynamic_sampling or drawn.informative >= t.prompts_per_step or len(drawn.examples) >= cap:
                return drawn

    def stage_rollout(self, examples: list[QAExample], draw: int = 0) -> list[Trajectory]:
        r = self.cfg.rollout
        reqs = [
            RolloutRequest(ex.id, g, prompt_ids(self.tokenizer, self.protocol, ex.question))
            for ex in examples
            for g in range(r.group_size)
        ]
        params = SamplingParams(temperature=r.temperature, top_p=r.top_p, top_k=r.top_k)
        self.policy.eval()
        seed = self.cfg.seed * 1_000_003 + self.state.step + self.dist.rank * 7_919_111  # rank 0: the 1-process seed
        seed += draw * 104_729  # a dynamic-sampling step's later draws
        return self.engine.run(reqs, params, seed=seed)

    def stage_reward(self, examples: list[QAExample], trajs: list[Trajectory]) -> tuple[list[float], list[float]]:
        """(rewards, exact match) per trajectory; trajectories come grouped by example."""
        fn = self.reward_fn or self.scheduled[self.schedule.reward_name(self.state.step)]
        golds = [ex.answers for ex in examples for _ in range(self.cfg.rollout.group_size)]
        rewards = [fn(t, g) for t, g in zip(trajs, golds, strict=True)]
        em = [exact_match(t.answer, g) if t.answer is not None else 0.0 for t, g in zip(trajs, golds, strict=True)]
        return rewards, em

    def stage_gather(
        self, trajs: list[Trajectory], rewards: list[float], em: list[float]
    ) -> tuple[list[Trajectory], list[float], list[float]]:
        """Every rank's trajectories and scores, in global order (a no-op in one process)."""
        g = self.dist.gather_list
        return g(trajs), g(rewards), g(em)

    def stage_collate(self, examples: list[QAExample], trajs: list[Trajectory], rewards: list[float]) -> RolloutBatch:
        groups = [i for i in range(len(examples)) for _ in range(self.cfg.rollout.group_size)]
        pad = int(self.tokenizer.pad_token_id)
        batch = collate(trajs, rewards, groups, pad, mask_retrieved=self.cfg.train.mask_retrieved_tokens)
        return batch.to(next(self.policy.parameters()).device)

    @torch.no_grad()
    def stage_logprobs(
        self, batch: RolloutBatch, fresh: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Old and reference log-probs and values of the global batch (no old ones for ``fresh`` rows);
        each rank computes its own rows."""
        self.policy.eval()
        rows = torch.tensor(self.dist.share(batch.size, "rows"), device=batch.input_ids.device)
        own = batch if self.dist.world == 1 else batch.select(rows)
        self._injected_sums = None
        # the update runs only rows with a non-zero advantage: nothing reads the others' log-probs
        skip = self.update.only_policy_loss() and not self.cfg.train.log_injected
        trained = rows_with_advantage(self.cfg.train, batch) if skip else None
        keep = None if trained is None else trained[rows].nonzero().flatten()
        stale = torch.ones_like(batch.rewards, dtype=torch.bool) if fresh is None else ~fresh
        stale = stale if trained is None else stale & trained
        old = None
        if bool(stale.any()):  # rows the update runs after its first optimizer step
            if self.cfg.train.log_injected:  # the same pass also scores the injected tokens (stage_injected)
                both = self._forward_chunks(self.policy, own, (own.loss_mask + own.injected_mask).clamp(max=1))
                self._injected_sums = (float((both * own.injected_mask).sum()), float(own.injected_mask.sum()))
                old = both * own.loss_mask
            else:
                old = self._forward_rows(self.policy, own, stale[rows].nonzero().flatten())
        ref = None
        if self.reference is not None:
            with self.reference.model() as ref_model:
                ref = self._forward_rows(ref_model, own, keep)
        values = None
        if self.critic is not None:
            values = self.critic(own.input_ids, own.attention_mask) * own.loss_mask
        gather = self.dist.gather_rows
        return (
            None if old is None else gather(old),
            None if ref is None else gather(ref),
            None if values is None else gather(values),
        )

    @torch.no_grad()
    def stage_injected(self, batch: RolloutBatch) -> dict[str, float]:
        """``actor/injected_logprob`` with ``train.log_injected``: the mean log-prob the policy gives the
        injected response tokens (global over ranks; absent when no row has any)."""
        if not self.cfg.train.log_injected:
            return {}
        sums = self._injected_sums  # from the old log-prob pass, when the step ran one
        if sums is None:
            self.policy.eval()
            rows = torch.tensor(self.dist.share(batch.size, "rows"), device=batch.input_ids.device)
            own = batch if self.dist.world == 1 else batch.select(rows)
            lp = self._forward_chunks(self.policy, own, own.injected_mask)
            sums = (float(lp.sum()), float(own.injected_mask.sum()))
        parts = self.dist.gather_list([sums])
        total, count = sum(p[0] for p in parts), sum(p[1] for p in parts)
        return {"actor/injected_logprob": total / count} if count else {}

    def _forward_rows(self, model: Any, batch: RolloutBatch, keep: torch.Tensor | None) -> torch.Tensor:
        """:meth:`_forward_chunks` over rows ``keep`` only (None: all), zeros elsewhere."""
        if keep is None or len(keep) == batch.size:
            return self._forward_chunks(model, batch, batch.loss_mask)
        out = torch.zeros(batch.loss_mask.shape, dtype=torch.float32, device=batch.loss_mask.device)
        if len(keep):
            sub = batch.select(keep)
            out[keep] = self._forward_chunks(model, sub, sub.loss_mask).to(out.dtype)
        return out

    def _forward_chunks(self, model: Any, batch: RolloutBatch, positions: torch.Tensor) -> torch.Tensor:
        """Log-probs of ``batch`` at ``positions`` [B, T-1], ``train.micro_batch`` rows at a time (no grad)."""
        mb, shared = self.cfg.train.micro_batch, self.cfg.train.shared_prompt
        order = by_length(batch.attention_mask) if not shared else torch.arange(batch.size)
        parts = [order[s : s + mb] for s in range(0, batch.size, mb)]
        out = torch.cat([batch_logprobs(model, batch.select(i), positions[i], shared=shared)[0] for i in parts])
        return out.index_copy(0, order.to(out.device), out)

    def stage_advantages(
        self, batch: RolloutBatch, old: torch.Tensor | None, ref: torch.Tensor | None, values: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return compute_advantages(self.cfg.train, batch, old, ref, values)

    def stage_update(self, scored: Scored) -> dict[str, float]:
        return self.update.run(scored, self._update_gen())

    def _update_gen(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.cfg.seed * 7919 + self.state.step)  # the step's row order

    def stage_audit(self, drawn: Drawn, searches: float) -> dict[str, float]:
        """``audit/…``: behaviour checks over every trajectory the step generated (:mod:`searchrl.audit`)."""
        exs = [ex for ex in drawn.examples for _ in range(self.cfg.rollout.group_size)]
        types, golds = [str(ex.metadata.get("type", ex.dataset)) for ex in exs], [ex.answers for ex in exs]
        audit = audit_batch(drawn.trajs, [ex.question for ex in exs], types, self.protocol, self.tokenizer, golds=golds)
        return audit | self.drift.update(searches)

    def stage_log(
        self, examples: list[QAExample], trajs: list[Trajectory], rewards: list[float], metrics: dict[str, float]
    ) -> None:
        """Scalars to the metrics sink, and the best trajectory of the step as a readable sample (rank 0)."""
        if self.metrics is None:
            return
        if len(self.schedule.stages) > 1 and self.reward_fn is None:
            metrics["reward/stage"] = float(self.schedule.stage_index(self.state.step - 1))
        self.metrics.log(self.state.step, metrics)
        best = int(np.argmax(rewards))
        example = examples[best // self.cfg.rollout.group_size]
        self.metrics.text(
            self.state.step,
            "rollout/sample",
            trajs[best].response_text,
            question=example.question,
            golds=list(example.answers),
            reward=rewards[best],
            spans=text_spans(trajs[best], self.tokenizer),
        )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _Clock:
    """Seconds per stage name (``perf/time_<name>``), summed over calls, plus the whole step."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.spent: dict[str, float] = {}

    def time(self, name: str, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args)
        self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - t0
        return out

    def timings(self) -> dict[str, float]:
        return {
            **{f"perf/time_{k}": v for k, v in self.spent.items()},
            "perf/time_step": time.perf_counter() - self.start,
        }

"""TRL adapter: TRL's ``GRPOTrainer`` trained on searchrl's multi-turn rollouts, mask and rewards.

``searchrl train --engine trl`` hands the optimisation (GRPO / Dr. GRPO loss, reference model,
DDP / DeepSpeed / FSDP through accelerate, vLLM weight sync) to TRL and keeps the rest: the prompt,
the tag protocol, the rollout loop, the retriever and the reward functions. The contract with TRL
(1.16.0, read from its ``grpo_trainer.py``):

* ``rollout_func(prompts, trainer)`` gets this process's prompts, each already repeated
  ``num_generations`` times in a row, and returns one completion per prompt: ``prompt_ids``,
  ``completion_ids`` and ``logprobs`` (one float per completion token), plus extra fields.
* The extra field ``env_mask`` (one 0/1 per completion token) is multiplied into TRL's completion
  mask, so every term of TRL's loss (policy, KL, entropy) skips tokens with ``env_mask = 0``. We pass
  ``Trajectory.loss_mask`` after the prompt, exactly as the rollout built it; with
  ``train.mask_retrieved_tokens: false`` (the ablation) every response token counts.
* Other extra fields reach the reward functions as keyword lists: ``trajectory`` (our record) and
  ``searches`` (searches per sample). The dataset column ``answers`` carries the gold answers.

What differs from searchrl's own trainer, on purpose or by TRL's design: TRL's group std adds
``1e-4`` (ours ``1e-6``); TRL's KL is k3 in the loss only, against the model with its LoRA adapter
switched off (ours: the run's checkpoint 0), averaged over ``env_mask`` (ours: the policy's tokens);
TRL shuffles prompts with its own sampler.
Fields TRL cannot honour are rejected by :func:`grpo_args` with a message naming them.

The alternative path, if ``rollout_func`` or ``env_mask`` change in a later TRL: ``environment_factory``
(an object whose public methods TRL exposes as tools to the model's chat template, with TRL's own
tool-call parser and masking of tool results). It would replace our tag protocol and rollout loop by
TRL's, which is why this adapter does not use it; ``tests/test_engines_trl.py`` pins the contract.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from searchrl.config import Config
from searchrl.data.protocols import PROTOCOLS
from searchrl.rewards.normalize import exact_match
from searchrl.rewards.schedules import RewardSchedule
from searchrl.rewards.trajectory import TrajectoryReward, scheduled_rewards
from searchrl.rollout.backend import GeneratorBackend, SamplingParams
from searchrl.rollout.build import build_rollout
from searchrl.rollout.engine import RolloutRequest
from searchrl.rollout.prompts import prompt_ids
from searchrl.types import QAExample, Trajectory

TRL_PIN = "1.16.0"  # the version whose rollout_func / env_mask contract this module was written against

LOSS_TYPE = {"token-mean": "dapo", "seq-mean-token-mean": "grpo", "seq-mean-token-sum-norm": "dr_grpo"}


def _reject(field: str, value: Any, why: str) -> ValueError:
    return ValueError(f"--engine trl cannot run {field}={value}: {why}")


def grpo_args(cfg: Config, world: int = 1) -> dict[str, Any]:
    """Keyword arguments of ``trl.GRPOConfig`` equivalent to ``cfg`` for ``world`` processes.

    One searchrl step (``prompts_per_step x group_size`` samples) is one TRL generation batch;
    ``mini_batch`` samples make one optimizer step; ``micro_batch`` samples one forward per process.
    """
    t, r = cfg.train, cfg.rollout
    if t.algorithm not in ("grpo", "dr_grpo"):
        raise _reject("train.algorithm", t.algorithm, "TRL's GRPOTrainer runs grpo and dr_grpo only; use --engine ours")
    if t.policy_loss != "ppo_clip":
        raise _reject("train.policy_loss", t.policy_loss, "TRL's GRPO loss is the clipped surrogate (ppo_clip)")
    if t.clip_ratio_c is not None:
        raise _reject("train.clip_ratio_c", t.clip_ratio_c, "TRL's GRPO loss has no dual clip")
    if t.dynamic_sampling:
        raise _reject("train.dynamic_sampling", True, "TRL's GRPOTrainer samples each batch once; use --engine ours")
    if t.loss_agg not in LOSS_TYPE:
        raise _reject("train.loss_agg", t.loss_agg, f"TRL has no such loss; choose one of {sorted(LOSS_TYPE)}")
    if t.algorithm == "dr_grpo" and t.loss_agg != "seq-mean-token-sum-norm":
        raise _reject("train.loss_agg", t.loss_agg, "dr_grpo pairs with seq-mean-token-sum-norm in TRL")
    if t.kl_coef > 0 and (t.kl_in_reward or t.kl_estimator != "k3"):
        raise _reject("train.kl_estimator", t.kl_estimator, "TRL's KL is k3 in the loss (kl_in_reward=false)")
    if t.log_kl and t.kl_coef == 0:
        raise _reject("train.log_kl", t.log_kl, "TRL builds a reference and logs KL only with train.kl_coef > 0")
    if t.log_injected:
        raise _reject("train.log_injected", True, "TRL's GRPOTrainer computes no log-probs of injected tokens")
    if r.group_size < 2:
        raise _reject("rollout.group_size", r.group_size, "GRPO needs at least 2 samples per prompt")
    batch = t.prompts_per_step * r.group_size
    per_step = t.micro_batch * world
    if t.mini_batch % per_step or batch % t.mini_batch:
        raise _reject(
            "train.mini_batch",
            t.mini_batch,
            f"it must be a multiple of micro_batch x processes ({per_step}) and divide the step's {batch} samples",
        )
    if cfg.trl.vllm == "server":
        raise _reject("trl.vllm", "server", "not wired yet (TRL's server client lives on rank 0); use colocate")
    return {
        "output_dir": str(Path(cfg.output_dir) / "trl"),
        "seed": cfg.seed,
        "learning_rate": t.lr,
        "lr_scheduler_type": "constant",
        "weight_decay": 0.0,
        "max_grad_norm": t.max_grad_norm,
        "beta": t.kl_coef,
        "epsilon": t.clip_eps,
        "epsilon_high": t.clip_eps,
        "num_iterations": t.epochs,
        "num_generations": r.group_size,
        "generation_batch_size": batch,
        "per_device_train_batch_size": t.micro_batch,
        "gradient_accumulation_steps": t.mini_batch // per_step,
        "max_steps": t.steps * (batch // t.mini_batch) * t.epochs,
        "loss_type": LOSS_TYPE[t.loss_agg],
        "scale_rewards": "none" if t.algorithm == "dr_grpo" else "group",
        "entropy_coef": t.entropy_coef,
        "max_completion_length": r.max_context,  # Dr. GRPO's normalising constant; our rollout sets real lengths
        "temperature": r.temperature,
        "top_p": r.top_p,
        "top_k": r.top_k,
        "use_vllm": cfg.trl.vllm != "off",
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": cfg.trl.vllm_gpu_memory_utilization,
        "bf16": cfg.trl.bf16,
        "gradient_checkpointing": False,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": t.checkpoint_every * (batch // t.mini_batch) * t.epochs,
        "report_to": "none",
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


def prompt_records(examples: Sequence[QAExample]) -> list[dict[str, Any]]:
    """Dataset rows for TRL: the question as ``prompt`` (rollout_func tokenizes it), golds as ``answers``."""
    return [{"prompt": ex.question, "answers": list(ex.answers), "example_id": ex.id} for ex in examples]


class SearchRollout:
    """TRL's ``rollout_func``: runs searchrl's multi-turn rollout on the prompts TRL hands this process."""

    def __init__(
        self,
        cfg: Config,
        tokenizer: Any,
        retriever: Any,
        backend: Callable[[Any], GeneratorBackend] | None = None,
    ) -> None:
        """``backend(trainer)`` builds the generator; default: vLLM when ``trl.vllm`` is on, else HF on the
        trainer's (unwrapped) model."""
        self.cfg, self.tokenizer, self.retriever = cfg, tokenizer, retriever
        self.protocol = PROTOCOLS[cfg.rollout.protocol]
        self.backend = backend or default_backend
        self.calls = 0

    def __call__(self, prompts: list[str], trainer: Any) -> dict[str, list[Any]]:
        reqs: list[RolloutRequest] = []
        seen: dict[str, int] = {}
        for i, question in enumerate(prompts):
            g = seen[question] = seen.get(question, -1) + 1
            reqs.append(RolloutRequest(f"trl/{i}", g, prompt_ids(self.tokenizer, self.protocol, question)))
        r = self.cfg.rollout
        params = SamplingParams(temperature=r.temperature, top_p=r.top_p, top_k=r.top_k)
        model = trainer.accelerator.unwrap_model(trainer.model)
        was_training = model.training
        model.eval()
        engine = build_rollout(self.cfg, self.backend(trainer), self.retriever, self.tokenizer)
        rank = int(trainer.accelerator.process_index)
        seed = (self.cfg.seed * 1_000_003 + self.calls) * 1_009 + rank
        trajs = engine.run(reqs, params, seed=seed)
        self.calls += 1
        model.train(was_training)
        return rollout_fields(trajs, mask_retrieved=self.cfg.train.mask_retrieved_tokens)


def rollout_fields(trajs: Sequence[Trajectory], *, mask_retrieved: bool = True) -> dict[str, list[Any]]:
    """What ``rollout_func`` returns for finished trajectories (the completion is everything after the prompt)."""
    out: dict[str, list[Any]] = {k: [] for k in ("prompt_ids", "completion_ids", "logprobs", "env_mask")}
    for t in trajs:
        t.check()
        n = t.prompt_len
        out["prompt_ids"].append(t.ids[:n])
        out["completion_ids"].append(t.ids[n:])
        out["logprobs"].append(t.logprobs[n:])
        out["env_mask"].append(t.loss_mask[n:] if mask_retrieved else [1] * (len(t.ids) - n))
    out["trajectory"] = list(trajs)
    out["searches"] = [t.n_searches for t in trajs]
    return out


def default_backend(trainer: Any) -> GeneratorBackend:
    if getattr(trainer, "use_vllm", False):
        from searchrl.rollout.vllm_backend import VLLMGenerator

        return VLLMGenerator.wrap(trainer.vllm_generation.llm)
    from searchrl.rollout.hf import HFGenerator

    return HFGenerator(trainer.accelerator.unwrap_model(trainer.model), trainer.processing_class)


def trl_reward(cfg: Config, reward_fn: TrajectoryReward | None = None) -> Callable[..., list[float | None]]:
    """The configured reward (or ``reward_fn``) as a TRL reward function over our trajectories.

    ``train.reward_schedule`` switches by searchrl step (one TRL generation batch). Also logs, through
    TRL's ``log_metric``, searches per sample and exact match, as ``rollout/searches`` and ``reward/em``.
    """
    t = cfg.train
    protocol = PROTOCOLS[cfg.rollout.protocol]
    schedule = RewardSchedule.from_config(t)
    scheduled = scheduled_rewards(schedule, protocol)
    per_rl_step = max(1, cfg.train.prompts_per_step * cfg.rollout.group_size // t.mini_batch) * t.epochs

    def searchrl_reward(
        prompts: list[Any], completions: list[Any], trajectory: list[Trajectory], answers: list[list[str]], **kw: Any
    ) -> list[float | None]:
        state = kw.get("trainer_state")
        step = int(state.global_step) // per_rl_step if state is not None else 0
        fn = reward_fn or scheduled[schedule.reward_name(step)]
        golds = [tuple(a) for a in answers]
        log = kw.get("log_metric")
        if log is not None:
            log("rollout/searches", sum(x.n_searches for x in trajectory) / len(trajectory))
            em = [
                exact_match(x.answer, g) if x.answer is not None else 0.0
                for x, g in zip(trajectory, golds, strict=True)
            ]
            log("reward/em", sum(em) / len(em))
        return [float(fn(x, g)) for x, g in zip(trajectory, golds, strict=True)]

    return searchrl_reward


def build_grpo_trainer(
    cfg: Config,
    model: Any,
    tokenizer: Any,
    retriever: Any,
    examples: Sequence[QAExample],
    *,
    reward_fn: TrajectoryReward | None = None,
    backend: Callable[[Any], GeneratorBackend] | None = None,
) -> Any:
    """A ``trl.GRPOTrainer`` for ``cfg``, whose rollouts are :class:`SearchRollout` and rewards ours."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL; we pin it
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    if not examples:
        raise ValueError("training needs at least one example")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    args = GRPOConfig(**grpo_args(cfg, world), use_cpu=not torch.cuda.is_available())
    peft_config = None
    if cfg.train.lora_r > 0:
        from searchrl.trainer.lora import lora_config

        peft_config = lora_config(model.config, cfg.train.lora_r, cfg.train.lora_alpha, cfg.train.lora_layers)
    return GRPOTrainer(
        model=model,
        reward_funcs=[trl_reward(cfg, reward_fn)],
        args=args,
        train_dataset=Dataset.from_list(prompt_records(examples)),
        processing_class=tokenizer,
        peft_config=peft_config,
        rollout_func=SearchRollout(cfg, tokenizer, retriever, backend),
    )


def train_with_trl(trainer: Any, run_dir: str | Path, resume: bool = False) -> list[dict[str, Any]]:
    """Run ``trainer`` to ``max_steps``; TRL's log records go to ``run_dir/trl_metrics.jsonl`` (rank 0)."""
    trainer.train(resume_from_checkpoint=True if resume and _has_checkpoint(trainer.args.output_dir) else None)
    history = [dict(h) for h in trainer.state.log_history]
    if trainer.accelerator.is_main_process:
        path = Path(run_dir) / "trl_metrics.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(h) + "\n" for h in history), encoding="utf-8")
    return history


def _has_checkpoint(output_dir: str) -> bool:
    return any(Path(output_dir).glob("checkpoint-*"))

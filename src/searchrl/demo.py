"""The one-command demo: the synthetic world, BM25, SmolLM2-135M, baselines, SFT warm start, RL, eval.

Stages (each timed and reported):
1. world + BM25 index; 2. Direct and RAG with the base model (both given the answer format in the
prompt); 3. SFT warm start (LoRA) on a few gold trajectories, 1-hop and 2-hop; 4. RAG and the agent
after the warm start (the fair baselines: same weights, same format help); 5. GRPO on 2-hop training
questions; 6. the agent after RL. Held-out questions come from the world's test split, whose entities
never appear in training questions. ``quick`` shrinks every stage to finish in a few minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from searchrl.config import Config, save_config
from searchrl.data.protocols import PROTOCOLS
from searchrl.data.world import World, default_world
from searchrl.eval.run import EvalRow, evaluate, markdown_table, summarize, write_results
from searchrl.models import load_policy
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.rollout.hf import HFGenerator
from searchrl.trainer.loop import Trainer, rollout_limits
from searchrl.trainer.sft import GoldTrajectory, gold_to_trajectory, sft
from searchrl.types import QAExample
from searchrl.utils import atomic_write_text


@dataclass(frozen=True)
class DemoPlan:
    eval_per_type: int
    sft_1hop: int
    sft_2hop: int
    rl_steps: int

    @classmethod
    def make(cls, quick: bool) -> DemoPlan:
        return cls(eval_per_type=8, sft_1hop=16, sft_2hop=8, rl_steps=1) if quick else cls(20, 24, 24, 5)


def pick(examples: list[QAExample], kind: str, n: int) -> list[QAExample]:
    return [e for e in examples if e.metadata.get("type") == kind][:n]


def run_demo(cfg: Config, quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every stage; writes config, metrics, eval rows and ``results.md`` under ``cfg.output_dir``."""
    plan = DemoPlan.make(quick)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    world: World = default_world()
    retriever = BM25Retriever.build(world.passages)
    timings["world_and_index"] = time.perf_counter() - t0
    log(f"world: {len(world.passages)} passages, {sum(len(v) for v in world.questions.values())} questions")

    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    protocol = PROTOCOLS[cfg.rollout.protocol]
    limits = rollout_limits(cfg)
    held_out = pick(world.questions["test"], "1hop", plan.eval_per_type) + pick(
        world.questions["test"], "2hop", plan.eval_per_type
    )
    tables: dict[str, dict[str, dict[str, float]]] = {}

    def run_eval(label: str, method: str, policy: Any) -> list[EvalRow]:
        t = time.perf_counter()
        rows = evaluate(method, held_out, HFGenerator(policy, tok), tok, retriever, protocol, limits)  # type: ignore[arg-type]
        tables[label] = write_results(out / "eval", label, rows)
        timings[f"eval_{label}"] = time.perf_counter() - t
        m = summarize(rows)
        log(f"{label}: EM {m[next(iter(m))]['em']:.2f} ({time.perf_counter() - t:.0f} s)")
        return rows

    run_eval("direct_base", "direct", model)
    run_eval("rag_base", "rag", model)

    trainer = Trainer(cfg, model, tok, retriever, train_questions(world), out)
    t = time.perf_counter()
    golds = warm_start_golds(world, plan)
    trajs = [gold_to_trajectory(g, tok, protocol, retriever, cfg.retrieval.topk) for g in golds]
    losses = sft(
        trainer.policy,
        trajs,
        int(tok.pad_token_id),
        epochs=cfg.train.sft_epochs,
        lr=cfg.train.sft_lr,
        seed=cfg.seed,
        on_step=lambda i, loss: log(f"sft step {i}: loss {loss:.3f}"),
    )
    timings["sft"] = time.perf_counter() - t
    run_eval("rag_sft", "rag", trainer.policy)
    run_eval("agent_sft", "agent", trainer.policy)

    t = time.perf_counter()
    history = trainer.fit(
        plan.rl_steps,
        progress=lambda s, n, m: log(
            f"rl step {s}/{n}: reward {m['reward/mean']:.2f} searches {m['rollout/searches']:.2f} "
            f"({m['perf/time_step']:.0f} s)"
        ),
    )
    timings["rl"] = time.perf_counter() - t
    run_eval("agent_rl", "agent", trainer.policy)
    timings["total"] = time.perf_counter() - t0

    summary = {
        "tables": tables,
        "timings_s": timings,
        "sft_losses": losses,
        "rl_rewards": [h["reward/mean"] for h in history],
        "plan": plan.__dict__,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "results.md", markdown_table(tables))
    return summary


def train_questions(world: World) -> list[QAExample]:
    """RL trains on 2-hop questions of the training split (where imitation leaves room)."""
    return [e for e in world.questions["train"] if e.metadata.get("type") == "2hop"]


def warm_start_golds(world: World, plan: DemoPlan) -> list[GoldTrajectory]:
    train = world.questions["train"]
    chosen = pick(train, "1hop", plan.sft_1hop) + pick(train, "2hop", plan.sft_2hop)[-plan.sft_2hop :]
    return [GoldTrajectory(e.id, e.question, world.gold[e.id].queries, world.gold[e.id].answer) for e in chosen]

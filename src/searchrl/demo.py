"""The one-command demo: the synthetic world, BM25, SmolLM2-135M, baselines, SFT warm start, RL, eval.

Stages (each timed, each with a progress bar, each resumable):
1. world (the medium world of seed 1, whose test split has hundreds of questions per type; written to
``<out>/world`` and named in the saved config, so ``searchrl ask/eval --checkpoint <out>`` search it) + BM25; 2. Direct and RAG with the base model (both given the answer format in the
prompt); 3. SFT warm start (LoRA) on a few gold trajectories, 1-hop and 2-hop; 4. RAG and the agent
after the warm start (the fair baselines: same weights, same format help); 5. GRPO on 2-hop training
questions the warm start did not see, sampled at temperature 0.8 (the warm start leans on 2-hop
demonstrations so that some sampled 2-hop rollouts succeed: GRPO's advantage is zero in a group
where every sample fails); 6. the agent after RL, then the paired row: agent after RL minus agent after the warm start on the
same held-out questions, with a bootstrap interval and the questions fixed and broken.
Held-out questions come from the world's test split, whose entities never appear in training questions.
The two agents are judged on ``eval_per_type`` questions per type; the baselines on the first
``baseline_per_type`` of them (they only show that format and a single retrieval are not enough).

Resuming: every finished evaluation is kept in ``eval/<label>.json`` (rows in ``<label>.jsonl``, what
produced them in ``<label>.manifest.json``); the warm-started adapter is checkpoint 0 and RL writes a
checkpoint every step. Running the demo again on the same output folder (after Ctrl-C, say) skips what
is done and continues where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from searchrl.config import Config, save_config
from searchrl.data.world import World, generate_world, save_world
from searchrl.eval.manifest import eval_manifest
from searchrl.eval.paired import compare_arms, comparison_markdown
from searchrl.eval.rows import read_rows
from searchrl.eval.run import EvalRow, evaluate, markdown_table, summarize, write_results
from searchrl.models import load_policy
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.rollout.build import build_rollout
from searchrl.rollout.hf import HFGenerator
from searchrl.trainer.checkpoint import checkpoint_dir, latest_checkpoint
from searchrl.trainer.loop import Trainer
from searchrl.trainer.sft import GoldTrajectory, warm_start
from searchrl.types import QAExample
from searchrl.utils import atomic_write_text

Advance = Callable[[int, str], None]


@dataclass(frozen=True)
class DemoPlan:
    eval_per_type: int  # held-out questions per type for the two agents (after the warm start, after RL)
    baseline_per_type: int  # the first questions of those, per type, for Direct and RAG
    sft_1hop: int
    sft_2hop: int
    rl_steps: int
    rl_prompts: int | None = None  # prompts per RL step; None keeps train.prompts_per_step
    world_seed: int = 1
    world_size: str = "medium"

    @classmethod
    def make(cls, quick: bool) -> DemoPlan:
        if quick:  # a few minutes: every stage runs, on less
            return cls(eval_per_type=5, baseline_per_type=3, sft_1hop=8, sft_2hop=8, rl_steps=1, rl_prompts=2)
        # 50 + 50 = 100 held-out questions per agent: what the 15-minute budget holds (agent evals cost ~2 s
        # a question on 2 cores); the experiments (recipes/experiments/) judge on 100 per type and 3 seeds
        return cls(eval_per_type=50, baseline_per_type=5, sft_1hop=16, sft_2hop=40, rl_steps=5)


def pick(examples: list[QAExample], kind: str, n: int) -> list[QAExample]:
    return [e for e in examples if e.metadata.get("type") == kind][:n]


class StageBars:
    """One rich progress bar per stage (with elapsed time and ETA); silent when ``console`` is None."""

    def __init__(self, console: Console | None) -> None:
        self.progress = (
            Progress(
                TextColumn("[cyan]{task.description:<18}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=console,
            )
            if console is not None
            else None
        )

    def __enter__(self) -> StageBars:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    @contextmanager
    def stage(self, name: str, total: int) -> Iterator[Advance]:
        if self.progress is None:
            yield lambda n, info: None
            return
        task = self.progress.add_task(name, total=total, info="")
        yield lambda n, info: self.progress.update(task, advance=n, info=info)  # type: ignore[union-attr]
        self.progress.update(task, completed=total)


def run_demo(
    cfg: Config, quick: bool = False, log: Callable[[str], None] = print, console: Console | None = None
) -> dict[str, Any]:
    """Run (or resume) every stage; writes config, metrics, eval rows, ``summary.json`` and ``results.md``
    under ``cfg.output_dir``. ``console`` turns on progress bars."""
    plan = DemoPlan.make(quick)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = ran_config(cfg, plan, out)
    save_config(cfg, out)  # first, before any stage (the Ctrl-C test waits for it)
    t0 = time.perf_counter()
    world: World = generate_world(plan.world_seed, plan.world_size)  # type: ignore[arg-type]
    if not (out / "world" / "manifest.json").is_file():
        save_world(world, out / "world")
    timings_path = out / "timings.json"
    timings: dict[str, float] = json.loads(timings_path.read_text()) if timings_path.exists() else {}

    def timed(name: str, seconds: float) -> None:
        timings[name] = seconds
        atomic_write_text(timings_path, json.dumps(timings, indent=2))

    retriever = BM25Retriever.build(world.passages, engine=cfg.retrieval.bm25_engine)
    timed("world_and_index", time.perf_counter() - t0)
    log(f"world: {len(world.passages)} passages, {sum(len(v) for v in world.questions.values())} questions")

    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    test = world.questions["test"]
    held_out = pick(test, "1hop", plan.eval_per_type) + pick(test, "2hop", plan.eval_per_type)
    baseline_set = pick(test, "1hop", plan.baseline_per_type) + pick(test, "2hop", plan.baseline_per_type)
    tables: dict[str, dict[str, dict[str, float]]] = {}

    with StageBars(console) as bars:

        def run_eval(label: str, method: str, policy: Any, questions: list[QAExample], ckpt: Path | None) -> None:
            """Evaluate ``policy`` (saved as checkpoint ``ckpt``; None = the base model) unless done before."""
            cached = out / "eval" / f"{label}.json"
            if cached.exists():
                tables[label] = json.loads(cached.read_text())
                log(f"{label}: done before (eval/{label}.json), skipped")
                return
            t = time.perf_counter()
            waits: dict[str, list[float]] = {}
            with bars.stage(f"eval {label}", len(questions)) as advance:
                rows: list[EvalRow] = evaluate(
                    method,  # type: ignore[arg-type]
                    questions,
                    build_rollout(cfg, HFGenerator(policy, tok), retriever, tok),
                    progress=lambda n: advance(n, ""),
                    waits=waits,
                )
            manifest = eval_manifest(cfg, method, questions, [retriever], ckpt)
            tables[label] = write_results(out / "eval", label, rows, manifest=manifest, waits=waits)
            timed(f"eval_{label}", time.perf_counter() - t)
            by_group = summarize(rows, key=lambda r: r.group)
            log(
                f"{label}: EM "
                + ", ".join(f"{g} {m['em']:.2f}" for g, m in by_group.items())
                + f" ({time.perf_counter() - t:.0f} s)"
            )

        run_eval("direct_base", "direct", model, baseline_set, None)
        run_eval("rag_base", "rag", model, baseline_set, None)

        golds = warm_start_golds(world, plan)
        trainer = Trainer(cfg, model, tok, retriever, rl_questions(world, {g.example_id for g in golds}), out)
        sft_done = out / "sft.json"
        if sft_done.exists() and trainer.resume():
            losses = json.loads(sft_done.read_text())["losses"]
            log(f"sft: done before, resumed from checkpoint at RL step {trainer.state.step}")
        else:
            t = time.perf_counter()
            steps = cfg.train.sft_epochs * -(-len(golds) // 8)
            with bars.stage("sft warm start", steps) as advance:
                losses, n_golds = warm_start(
                    trainer, golds, retriever, on_step=lambda i, loss: advance(1, f"loss {loss:.3f}")
                )
            atomic_write_text(sft_done, json.dumps({"losses": losses, "examples": n_golds}))
            timed("sft", time.perf_counter() - t)
            log(f"sft: {n_golds} gold trajectories, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
        run_eval("rag_sft", "rag", trainer.policy, baseline_set, checkpoint_dir(out, 0))
        run_eval("agent_sft", "agent", trainer.policy, held_out, checkpoint_dir(out, 0))

        t = time.perf_counter()
        with bars.stage("rl (grpo)", plan.rl_steps) as advance:
            advance(trainer.state.step, "resumed" if trainer.state.step else "")
            trainer.fit(
                plan.rl_steps,
                progress=lambda s, n, m: advance(
                    1,
                    f"reward {m['reward/mean']:.2f} searches {m['rollout/searches']:.2f} ({m['perf/time_step']:.0f} s)",
                ),
            )
        timed("rl", timings.get("rl", 0.0) + time.perf_counter() - t)
        run_eval("agent_rl", "agent", trainer.policy, held_out, latest_checkpoint(out))
    arms = {label: [read_rows(out / "eval" / f"{label}.jsonl")] for label in ("agent_sft", "agent_rl")}
    scores, paired = compare_arms(arms, metric="em")
    paired_md = comparison_markdown(scores, paired, "em")
    atomic_write_text(out / "eval" / "paired.md", paired_md)
    timings["total"] = sum(v for k, v in timings.items() if k != "total")
    history = rl_history(out)
    summary = {
        "tables": tables,
        "timings_s": timings,
        "sft_losses": losses,
        "rl_rewards": [h.get("reward/mean") for h in history],
        "rl_em": [h.get("reward/em") for h in history],
        "plan": plan.__dict__,
        "rl_steps_run": len(history),
        "paired_title": "agent after RL − agent after the warm start, exact match",
        "paired": [
            {
                "group": p.group,
                "diff": p.diff.mean,
                "low": p.diff.low,
                "high": p.diff.high,
                "fixed": p.fixed,
                "broken": p.broken,
            }
            for p in paired
        ],
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "results.md", markdown_table(tables) + "\n" + paired_md)
    return summary


def rl_history(run_dir: Path) -> list[dict[str, Any]]:
    from searchrl.metrics import read_metrics

    path = run_dir / "metrics.jsonl"
    return read_metrics(path) if path.exists() else []


def rl_questions(world: World, exclude: set[str]) -> list[QAExample]:
    """1-hop and 2-hop training questions the warm start did not see, mixed: F1's design. On 2-hop questions
    alone most groups scored all 0 and the demo's gain stayed within noise (+0.03 [-0.03, +0.09]); mixed, a
    seed may learn to search once (1-hop up, 2-hop down), which the demo's per-type rows show."""
    return [e for e in world.questions["train"] if e.id not in exclude and e.metadata.get("type") in ("1hop", "2hop")]


def warm_start_golds(world: World, plan: DemoPlan) -> list[GoldTrajectory]:
    train = world.questions["train"]
    chosen = pick(train, "1hop", plan.sft_1hop) + pick(train, "2hop", plan.sft_2hop)[-plan.sft_2hop :]
    return [GoldTrajectory(e.id, e.question, world.gold[e.id].queries, world.gold[e.id].answer) for e in chosen]


def ran_config(cfg: Config, plan: DemoPlan, out: Path) -> Config:
    """The config as the demo runs it, so that the saved config.yaml (and the report's header) says what
    ran: the plan's RL steps and prompts per step, and the demo world's corpus and test questions."""
    train = {"steps": plan.rl_steps}
    if plan.rl_prompts is not None:
        train["prompts_per_step"] = plan.rl_prompts
    world_dir = (out / "world").resolve()
    return cfg.model_copy(
        update={
            "train": cfg.train.model_copy(update=train),
            "retrieval": cfg.retrieval.model_copy(update={"kind": "bm25", "corpus": str(world_dir / "corpus.jsonl")}),
            "data": cfg.data.model_copy(update={"eval": str(world_dir / "questions_test.jsonl")}),
        }
    )

"""Training subcommands: `train`, `rollout`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

from searchrl.cli.common import ConfigOpt, Overrides, error_console, resolve, retriever_for


class Engine(StrEnum):
    ours = "ours"
    trl = "trl"


def train(
    config: ConfigOpt = None,
    overrides: Overrides = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's latest checkpoint.")] = False,
    engine: Annotated[
        Engine, typer.Option(help="ours: searchrl's trainer (every algorithm); trl: TRL's GRPOTrainer (grpo, dr_grpo).")
    ] = Engine.ours,
) -> None:
    """RL-train the policy (train.algorithm) on data.train with the configured retriever.

    Under torchrun / accelerate launch, every process runs this command; rank 0 logs and checkpoints."""
    from searchrl.config import save_config
    from searchrl.data.sources import load_source
    from searchrl.models import load_policy

    cfg = resolve(config, overrides)
    if engine is Engine.trl:
        from searchrl.engines.trl import grpo_args

        try:
            grpo_args(cfg)  # a field TRL cannot honour fails here, before any model is loaded
        except ValueError as exc:
            error_console().print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
    examples = load_source(cfg.data.train, "train", cfg.data.max_examples)
    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    save_config(cfg, cfg.output_dir)
    if engine is Engine.trl:
        from searchrl.engines.trl import build_grpo_trainer, train_with_trl

        trl_trainer = build_grpo_trainer(cfg, model, tok, retriever_for(cfg), examples)
        train_with_trl(trl_trainer, cfg.output_dir, resume=resume)
        return
    import torch

    from searchrl.trainer.distributed import Distributed
    from searchrl.trainer.loop import Trainer

    dist = Distributed.from_env()  # torchrun / accelerate launch: one process per rank
    torch.nn.Module.to(model, dist.device)  # each rank's GPU (or the CPU)
    trainer = Trainer(cfg, model, tok, retriever_for(cfg), examples, cfg.output_dir, dist=dist)
    if resume and trainer.resume():
        error_console().print(f"resumed at step {trainer.state.step}")
    console = error_console()
    trainer.fit(
        progress=None
        if not dist.is_main
        else lambda s, n, m: console.print(
            f"step {s}/{n} reward {m['reward/mean']:.3f} em {m['reward/em']:.3f} searches {m['rollout/searches']:.2f} "
            f"({m['perf/time_step']:.1f} s)"
        )
    )


def rollout_cmd(
    config: ConfigOpt = None,
    overrides: Overrides = None,
    n: Annotated[int, typer.Option(help="Questions to roll out.")] = 4,
    greedy: Annotated[bool, typer.Option(help="Greedy decoding instead of sampling.")] = False,
) -> None:
    """Roll out the policy on data.eval questions and print readable traces (injected text marked)."""
    from searchrl.data.sources import load_source
    from searchrl.models import load_policy
    from searchrl.rollout.backend import SamplingParams
    from searchrl.rollout.build import build_rollout
    from searchrl.rollout.engine import RolloutRequest
    from searchrl.rollout.hf import HFGenerator
    from searchrl.rollout.prompts import prompt_ids
    from searchrl.rollout.trace import format_trace

    cfg = resolve(config, overrides)
    examples = load_source(cfg.data.eval, "test", n)
    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    engine = build_rollout(cfg, HFGenerator(model, tok), retriever_for(cfg), tok)
    reqs = [RolloutRequest(ex.id, 0, prompt_ids(tok, engine.protocol, ex.question)) for ex in examples]
    params = SamplingParams(greedy=True) if greedy else SamplingParams(temperature=cfg.rollout.temperature)
    console = Console()
    for ex, traj in zip(examples, engine.run(reqs, params, seed=cfg.seed), strict=True):
        console.print(f"[bold]{ex.question}[/bold]  gold={list(ex.answers)}")
        console.print(format_trace(traj, tok, markup=True), highlight=False)
        console.print()

"""Training subcommands: `train`, `rollout`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from searchrl.cli.common import ConfigOpt, Overrides, error_console, resolve, retriever_for


def train(
    config: ConfigOpt = None,
    overrides: Overrides = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's latest checkpoint.")] = False,
) -> None:
    """RL-train the policy (train.algorithm) on data.train with the configured retriever."""
    from searchrl.config import save_config
    from searchrl.data.sources import load_source
    from searchrl.models import load_policy
    from searchrl.trainer.loop import Trainer

    cfg = resolve(config, overrides)
    examples = load_source(cfg.data.train, "train", cfg.data.max_examples)
    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    save_config(cfg, cfg.output_dir)
    trainer = Trainer(cfg, model, tok, retriever_for(cfg), examples, cfg.output_dir)
    if resume and trainer.resume():
        error_console().print(f"resumed at step {trainer.state.step}")
    console = error_console()
    trainer.fit(
        progress=lambda s, n, m: console.print(
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
    from searchrl.data.protocols import PROTOCOLS
    from searchrl.data.sources import load_source
    from searchrl.models import load_policy
    from searchrl.rollout.backend import SamplingParams
    from searchrl.rollout.engine import RolloutEngine, RolloutRequest
    from searchrl.rollout.hf import HFGenerator
    from searchrl.rollout.prompts import prompt_ids
    from searchrl.rollout.trace import format_trace
    from searchrl.trainer.loop import rollout_limits

    cfg = resolve(config, overrides)
    examples = load_source(cfg.data.eval, "test", n)
    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    protocol = PROTOCOLS[cfg.rollout.protocol]
    engine = RolloutEngine(HFGenerator(model, tok), retriever_for(cfg), tok, protocol, rollout_limits(cfg))
    reqs = [RolloutRequest(ex.id, 0, prompt_ids(tok, protocol, ex.question)) for ex in examples]
    params = SamplingParams(greedy=True) if greedy else SamplingParams(temperature=cfg.rollout.temperature)
    console = Console()
    for ex, traj in zip(examples, engine.run(reqs, params, seed=cfg.seed), strict=True):
        console.print(f"[bold]{ex.question}[/bold]  gold={list(ex.answers)}")
        console.print(format_trace(traj, tok, markup=True), highlight=False)
        console.print()

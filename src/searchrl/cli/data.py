"""Config, model and data subcommands: `config show`, `model prepare`, `data world`, `data filter`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from searchrl.cli.common import ConfigOpt, Overrides, error_console, resolve, retriever_for
from searchrl.config import dump_config

config_app = typer.Typer(no_args_is_help=True, help="Inspect the resolved configuration.")
model_app = typer.Typer(no_args_is_help=True, help="Prepare policy models.")
data_app = typer.Typer(no_args_is_help=True, help="Synthetic worlds and QA data.")


@config_app.command("show")
def config_show(config: ConfigOpt = None, overrides: Overrides = None) -> None:
    """Print the resolved config as YAML."""
    typer.echo(dump_config(resolve(config, overrides)), nl=False)


@model_app.command("prepare")
def model_prepare(config: ConfigOpt = None, overrides: Overrides = None) -> None:
    """Convert and cache the configured policy (the offline GGUF is converted once to safetensors)."""
    from searchrl.models import ModelNotAvailable, resolve_model_path

    cfg = resolve(config, overrides)
    try:
        path = resolve_model_path(cfg.model.path, cfg.model.cache_dir)
    except ModelNotAvailable as exc:
        error_console().print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    typer.echo(str(path))


@data_app.command("world")
def data_world(
    out: Annotated[Path, typer.Option(help="Folder to write (corpus, questions per split, gold trajectories).")],
    seed: Annotated[int, typer.Option(help="World seed.")] = 0,
    size: Annotated[str, typer.Option(help="tiny | small | medium | large")] = "small",
) -> None:
    """Generate a synthetic world deterministically from a seed."""
    from searchrl.data.world import generate_world, save_world

    try:
        world = generate_world(seed, size)  # type: ignore[arg-type]
    except ValueError as exc:
        error_console().print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    save_world(world, out)
    counts = {s: len(q) for s, q in world.questions.items()}
    typer.echo(f"wrote {out}: {len(world.passages)} passages, questions {counts}")


@data_app.command("filter")
def data_filter(
    out: Annotated[Path, typer.Option(help="Folder for easy.jsonl / medium.jsonl / hard.jsonl.")],
    config: ConfigOpt = None,
    overrides: Overrides = None,
    k: Annotated[int, typer.Option(help="Sampled rollouts per question.")] = 4,
) -> None:
    """R1-Searcher's difficulty filter: bin data.train questions by the policy's pass rate over k samples."""
    from searchrl.data.sources import load_source
    from searchrl.models import load_policy
    from searchrl.rewards.trajectory import named_reward
    from searchrl.rollout.build import build_rollout
    from searchrl.rollout.difficulty import bin_examples, pass_rates, write_bins
    from searchrl.rollout.hf import HFGenerator
    from searchrl.rollout.prompts import prompt_ids

    cfg = resolve(config, overrides)
    examples = load_source(cfg.data.train, "train", cfg.data.max_examples)
    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    engine = build_rollout(cfg, HFGenerator(model, tok), retriever_for(cfg), tok)
    protocol = engine.protocol
    rates = pass_rates(
        examples,
        engine,
        lambda ex: prompt_ids(tok, protocol, ex.question),
        named_reward(cfg.train.reward, protocol),
        k=k,
        seed=cfg.seed,
    )
    binned = bin_examples(examples, rates)
    write_bins(out, binned, rates)
    typer.echo(f"wrote {out}: " + ", ".join(f"{name} {len(v)}" for name, v in binned.items()))

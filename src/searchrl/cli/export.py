"""`searchrl export`: a run's checkpoint as a Hugging Face folder (merged weights or a PEFT adapter)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from searchrl.cli.common import Overrides


def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (config.yaml, ckpt-*/, latest).")],
    out: Annotated[Path, typer.Option(help="Folder to write; must be absent or empty unless --force.")],
    overrides: Overrides = None,
    step: Annotated[int | None, typer.Option(help="Checkpoint step to export (default: the latest).")] = None,
    merged: Annotated[
        bool, typer.Option("--merged/--adapter", help="Whole weights, LoRA merged in (default), or a PEFT adapter.")
    ] = True,
    force: Annotated[bool, typer.Option(help="Replace --out even if it is not empty.")] = False,
) -> None:
    """Export a trained agent: weights, tokenizer, a model card (README.md) and searchrl_protocol.json.

    ``searchrl export runs/demo --out agents/demo`` writes a folder that transformers, PEFT and
    ``searchrl ... model.path=agents/demo`` load; the card names the overrides that give it the run's
    protocol and retriever. Overrides apply to the run's saved config (e.g. model.path= if its base moved).
    """
    from searchrl.config import ConfigError
    from searchrl.export import ExportError, export_run

    try:
        result = export_run(run_dir, out, step=step, merged=merged, force=force, overrides=overrides)
    except (ExportError, FileNotFoundError, ConfigError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    kind = "merged" if result.merged else "adapter"
    typer.echo(f"wrote {result.out}: {kind}, checkpoint step {result.step}, {result.size_bytes / 1e6:.1f} MB")

"""The one ``searchrl`` command. Each subcommand: load config -> build objects -> call one function."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from searchrl.config import Config, ConfigError, dump_config, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the resolved configuration.")
model_app = typer.Typer(no_args_is_help=True, help="Prepare policy models.")
app.add_typer(config_app, name="config")
app.add_typer(model_app, name="model")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
Overrides = Annotated[list[str] | None, typer.Argument(help="Dotted overrides, e.g. retrieval.topk=5")]


def _console() -> Console:
    return Console(stderr=True)


def resolve(config: Path | None, overrides: list[str] | None) -> Config:
    """Load the config or exit with the error message (no traceback for user mistakes)."""
    try:
        return load_config(config, overrides or [])
    except ConfigError as exc:
        _console().print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None


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
        _console().print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    typer.echo(str(path))


def main() -> None:
    app()


if __name__ == "__main__":
    main()

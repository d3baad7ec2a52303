"""What every subcommand shares: the config options, the error console, config loading, the default retriever."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from searchrl.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    pass

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
Overrides = Annotated[list[str] | None, typer.Argument(help="Dotted overrides, e.g. retrieval.topk=5")]


def error_console() -> Console:
    """The console for progress and errors (stderr; stdout carries each command's output)."""
    return Console(stderr=True)


def resolve(config: Path | None, overrides: list[str] | None) -> Config:
    """Load the config or exit with the error message (no traceback for user mistakes)."""
    try:
        return load_config(config, overrides or [])
    except ConfigError as exc:
        error_console().print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None


def retriever_for(cfg: Config):  # type: ignore[no-untyped-def]
    """The configured retriever; with no index or corpus given, BM25 over the default world."""
    from searchrl.retrieval.index import retriever_from_config

    r = cfg.retrieval
    if r.kind in ("bm25", "dense") and not r.index_dir and not r.corpus:
        from searchrl.data.world import default_world
        from searchrl.retrieval.bm25 import BM25Retriever

        return BM25Retriever.build(default_world().passages)
    return retriever_from_config(r)


@contextmanager
def progress_bar(console: Console, label: str, total: int) -> Iterator[Callable[[int], None]]:
    from rich.progress import Progress

    with Progress(*Progress.get_default_columns(), console=console) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)

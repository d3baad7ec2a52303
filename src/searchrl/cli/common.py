"""What every subcommand shares: the config options, the error console, config loading, the default retriever."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
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
    from searchrl.retrieval.factory import retriever_from_config

    r = cfg.retrieval
    if r.kind in ("bm25", "dense") and not r.index_dir and not r.corpus:
        from searchrl.data.world import default_world
        from searchrl.retrieval.bm25 import BM25Retriever

        return BM25Retriever.build(default_world().passages, engine=r.bm25_engine)
    return retriever_from_config(r)


@contextmanager
def progress_bar(console: Console, label: str, total: int) -> Iterator[Callable[[int], None]]:
    from rich.progress import Progress

    with Progress(*Progress.get_default_columns(), console=console) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, raised by the CLI's own SIGINT handler; every ``except KeyboardInterrupt`` still catches it.

    Why not the plain one: CPython marks an exact ``KeyboardInterrupt`` that leaves some
    interpreter-level calls as "unhandled" and then ends the process by re-sending itself SIGINT
    after finalization, even though our code caught it and chose exit code 130 (the check compares
    the exception's type by identity, so a subclass is never marked). Measured: a SIGINT 0.2 s after
    ``searchrl demo`` wrote its config gave return code -2 in 4 of 4 tries (strace shows the process
    calling kill(self, SIGINT) after printing the hint); with this handler, 130 in 6 of 6."""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def install_interrupt_handler() -> None:
    """Turn SIGINT into :class:`Interrupted`, unless SIGINT is ignored (then it stays ignored)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _raise_interrupted)

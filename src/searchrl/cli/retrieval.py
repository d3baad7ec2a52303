"""Retrieval subcommands: `index build`, `serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from searchrl.cli.common import ConfigOpt, Overrides, error_console, resolve

index_app = typer.Typer(no_args_is_help=True, help="Build and inspect retrieval indexes.")


@index_app.command("build")
def index_build(
    corpus: Annotated[Path, typer.Option(help="Corpus file (any format searchrl reads).")],
    out: Annotated[Path, typer.Option(help="Index folder to write.")],
    config: ConfigOpt = None,
    overrides: Overrides = None,
    fmt: Annotated[str, typer.Option("--format", help="Corpus format, or auto.")] = "auto",
) -> None:
    """Build a BM25 or dense index (retrieval.kind) over a corpus, with a manifest."""
    from searchrl.retrieval.corpus import CorpusError, load_corpus
    from searchrl.retrieval.index import build_index

    cfg = resolve(config, overrides)
    kind = cfg.retrieval.kind
    if kind != "bm25" and kind != "dense":
        error_console().print(f"[red]index build needs retrieval.kind bm25 or dense, not {kind}[/red]")
        raise typer.Exit(2)
    try:
        passages = load_corpus(corpus, fmt)
    except CorpusError as exc:
        error_console().print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    r = cfg.retrieval
    with error_console().status(f"indexing {len(passages)} passages ({kind})"):
        path = build_index(
            passages, out, kind, encoder=r.encoder, faiss=r.faiss, hnsw_m=r.hnsw_m, source=str(corpus), progress=False
        )
    typer.echo(f"wrote {path} ({len(passages)} passages, {r.kind})")


def serve(config: ConfigOpt = None, overrides: Overrides = None) -> None:
    """Serve retrieval over HTTP (Search-R1 protocol) from retrieval.index_dir or retrieval.corpus."""
    import os

    from searchrl.retrieval.index import retriever_from_config
    from searchrl.retrieval.server import run_server

    cfg = resolve(config, overrides)
    try:
        retriever = retriever_from_config(cfg.retrieval)
    except (ValueError, RuntimeError) as exc:
        error_console().print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    token = os.environ.get(cfg.serve.token_env) or None
    error_console().print(
        f"serving on http://{cfg.serve.host}:{cfg.serve.port}/retrieve" + (" (bearer token required)" if token else "")
    )
    run_server(retriever, cfg.serve, token)

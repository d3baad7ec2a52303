"""The retriever a ``retrieval`` config names: an index folder, a corpus indexed in memory, ``/retrieve``
servers or a web-search API.

Index folders are loaded and checked by :func:`searchrl.retrieval.ondisk.index.load_index` against
:func:`config_expectations` (kind, encoder, and the fingerprint of the config's corpus file).
"""

from __future__ import annotations

import os
from typing import Any

from searchrl.config import RetrievalConfig
from searchrl.retrieval.base import Retriever
from searchrl.retrieval.corpus import load_corpus
from searchrl.retrieval.ondisk.index import load_index
from searchrl.utils import file_fingerprint


def config_expectations(cfg: RetrievalConfig) -> dict[str, Any]:
    """What an index must match to serve ``cfg``: its kind, the encoder (dense), and the corpus file's
    sha256 when the config names one besides ``index_dir``."""
    expect: dict[str, Any] = {"kind": cfg.kind}
    if cfg.kind in ("dense", "hybrid"):
        expect["encoder"] = cfg.encoder
    if cfg.corpus:
        expect["corpus_fingerprint"] = file_fingerprint(cfg.corpus)
    return expect


def retriever_from_config(cfg: RetrievalConfig) -> Retriever:
    """The retriever ``cfg`` names: an index folder or a corpus indexed in memory (bm25, dense, hybrid),
    ``/retrieve`` servers (http, one or several replica URLs; bearer token from ``$token_env`` if set)
    or a web-search API (web)."""
    if cfg.kind == "http":
        from searchrl.retrieval.client import HTTPRetriever

        token = os.environ.get(cfg.token_env) or None
        return HTTPRetriever(
            cfg.urls(), token=token, timeout_s=cfg.timeout_s, retries=cfg.retries, backoff_s=cfg.backoff_s,
            dead_s=cfg.dead_s, cache_size=cfg.cache_size, in_flight=cfg.in_flight,
        )  # fmt: skip
    if cfg.kind == "web":
        from searchrl.retrieval.web import WebSearchRetriever

        # from_env reads the key from $web_key_env and says which variable to set when it is missing
        return WebSearchRetriever.from_env(
            cfg.web_key_env, url=cfg.web_url, timeout_s=cfg.timeout_s, retries=cfg.retries, backoff_s=cfg.backoff_s
        )
    search = {"nprobe": cfg.nprobe, "ef_search": cfg.ef_search, "refine": cfg.refine}
    if cfg.index_dir:
        return load_index(
            cfg.index_dir, config_expectations(cfg), mmap=cfg.mmap, search=search, rrf_k=cfg.rrf_k,
            depth=cfg.hybrid_depth, bm25_engine=cfg.bm25_engine,
        )  # fmt: skip
    if not cfg.corpus:
        raise ValueError(f"retrieval.kind={cfg.kind} needs retrieval.index_dir or retrieval.corpus")
    from searchrl.retrieval.bm25 import BM25Retriever
    from searchrl.retrieval.dense.retriever import DenseRetriever

    passages = load_corpus(cfg.corpus)
    if cfg.kind == "bm25":
        return BM25Retriever.build(passages, engine=cfg.bm25_engine)
    dense = DenseRetriever.build(
        passages, cfg.encoder, faiss=cfg.faiss, hnsw_m=cfg.hnsw_m, nprobe=cfg.nprobe, ef_search=cfg.ef_search
    )
    if cfg.kind == "dense":
        return dense
    from searchrl.retrieval.hybrid import HybridRetriever

    sparse = BM25Retriever.build(passages, engine=cfg.bm25_engine)
    return HybridRetriever(sparse, dense, rrf_k=cfg.rrf_k, depth=cfg.hybrid_depth)

"""Building index folders: a corpus streamed into the passage store, then BM25, dense or both over it.

Steps, each bounded in memory: (1) the corpus is read as a stream (:func:`~searchrl.retrieval.corpus.iter_corpus`)
and written once to ``passages.sqlite``, deduplicated on disk; (2) BM25 is built over the store's
batches (:mod:`~searchrl.retrieval.bm25_stream`); (3) dense: the store is encoded in shards
(:mod:`~searchrl.retrieval.dense.shards`), the faiss index is trained on a sample and filled shard by
shard (:mod:`~searchrl.retrieval.dense.faiss_index`), and its recall@k against exact search on a sample
of corpus vectors is recorded in the manifest. ``hybrid`` builds both into one folder over one store.

Work in progress lives in a work folder beside the output (``.<name>.work``): the store and the
embedding shards. An interrupted build run again with the same corpus and settings reuses the store
and the finished shards; the work folder is removed when the index is complete. The finished folder
is written under a temporary name and renamed into place (:func:`searchrl.utils.atomic_dir`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from searchrl.retrieval.bm25_engines import DEFAULT_BM25_ENGINE, BM25Engine
from searchrl.retrieval.corpus import iter_corpus
from searchrl.retrieval.dense.encoder import DEFAULT_ENCODER
from searchrl.retrieval.ondisk.index import MANIFEST, MANIFEST_VERSION, IndexKind, library_versions
from searchrl.retrieval.ondisk.store import STORE_FILE, PassageStore, StoreInfo, write_store
from searchrl.types import Passage
from searchrl.utils import atomic_dir, atomic_write_text, file_fingerprint, progress_bar

KINDS: tuple[IndexKind, ...] = ("bm25", "dense", "hybrid")


@dataclass(frozen=True)
class DenseBuild:
    """How a dense index is built (the ``retrieval`` config fields of the same names)."""

    encoder: str = DEFAULT_ENCODER
    faiss: str = "flat"
    hnsw_m: int = 32
    nprobe: int = 32
    ef_search: int = 128
    train_size: int = 200_000
    shard_size: int = 50_000
    batch_size: int = 64
    recall_queries: int = 256
    recall_k: int = 10
    refine: int = 0  # > 0: keep the float32 vectors (vectors.npy) and re-rank refine x k candidates exactly
    device: str | None = None


def _work_dir(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.work")


def _ingest(work: Path, passages: Callable[[], Iterable[Passage]], dedupe: bool, key: str, progress: bool) -> Path:
    """The store in ``work``, written from ``passages()`` unless a complete one for ``key`` is there."""
    store, stamp = work / STORE_FILE, work / "store.json"
    if store.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        return store  # resumed
    work.mkdir(parents=True, exist_ok=True)
    with progress_bar(progress, "ingesting passages", 0) as advance:
        info: StoreInfo = write_store(passages(), store, dedupe=dedupe, progress=advance)
    stamp.write_text(json.dumps({"key": key, "n_passages": info.n_passages, "dropped": info.n_dropped}))
    return store


def _build_bm25(store: PassageStore, tmp: Path, progress: bool, engine: BM25Engine) -> dict[str, Any]:
    from searchrl.retrieval.bm25 import BM25Retriever

    with progress_bar(progress, "BM25 over passages", len(store)) as advance:
        info = BM25Retriever.build_folder(store, tmp, engines=(engine,), progress=advance)
    return {"params": info["params"], "bm25": {"n_vocab": info["n_vocab"], "nnz": info["nnz"]}}


def _build_dense(store: PassageStore, tmp: Path, work: Path, spec: DenseBuild, progress: bool) -> dict[str, Any]:
    import faiss

    from searchrl.retrieval.dense.encoder import embedding_dim, encoder_prefixes, load_encoder
    from searchrl.retrieval.dense.exact_rescore import VECTORS_FILE, DiskVectors, write_vectors
    from searchrl.retrieval.dense.faiss_index import build_from_shards, new_index, recall_vs_exact, set_search_params
    from searchrl.retrieval.dense.retriever import DenseRetriever
    from searchrl.retrieval.dense.shards import encode_store, sample_rows

    model = load_encoder(spec.encoder, spec.device)
    new_index(embedding_dim(model), spec.faiss, spec.hnsw_m)  # a bad factory string fails before encoding
    _, passage_prefix = encoder_prefixes(spec.encoder)
    folder = "embeddings-" + hashlib.sha256(spec.encoder.encode()).hexdigest()[:12]  # one per encoder
    shards = encode_store(
        model, store, work / folder, shard_size=spec.shard_size, batch_size=spec.batch_size,
        prefix=passage_prefix, progress=progress,
    )  # fmt: skip
    index = build_from_shards(shards, spec.faiss, hnsw_m=spec.hnsw_m, train_size=spec.train_size)
    set_search_params(index, nprobe=spec.nprobe, ef_search=spec.ef_search, k=spec.recall_k)
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(len(store), size=min(spec.recall_queries, len(store)), replace=False))
    vectors = DiskVectors(write_vectors(shards, tmp / VECTORS_FILE)) if spec.refine > 0 else None
    queries = sample_rows(shards, rows)
    recall = recall_vs_exact(index, shards, queries, spec.recall_k, vectors=vectors, refine=spec.refine)
    faiss.write_index(index, str(tmp / "faiss.index"))
    settings = {"hnsw_m": spec.hnsw_m, "ef_search": spec.ef_search, "nprobe": spec.nprobe, "refine": spec.refine}
    retriever = DenseRetriever(store, model, index, encoder=spec.encoder, faiss=spec.faiss, vectors=vectors, **settings)
    meta_file = tmp / "searchrl_dense.json"
    meta_file.write_text(json.dumps(retriever.meta(), indent=2))
    recall_info = {"k": spec.recall_k, "queries": len(rows), "recall": round(recall, 4), "vs": "exact inner product"}
    if vectors is not None:
        recall_info["refine"] = spec.refine
        vectors.close()
    return {"params": retriever.params, "recall_at_k": recall_info, "bytes_index": (tmp / "faiss.index").stat().st_size}


def _build(
    passages: Callable[[], Iterable[Passage]],
    out_dir: str | Path,
    kind: IndexKind,
    *,
    dedupe: bool,
    corpus_fingerprint: str | None,
    source: str,
    dense: DenseBuild,
    progress: bool,
    bm25_engine: BM25Engine = DEFAULT_BM25_ENGINE,
) -> Path:
    from searchrl import __version__

    if kind not in KINDS:
        raise ValueError(f"unknown index kind '{kind}'; valid: {', '.join(KINDS)}")
    out_dir = Path(out_dir)
    work = _work_dir(out_dir)
    start = time.perf_counter()
    key = json.dumps([corpus_fingerprint, source, dedupe])
    store_path = _ingest(work, passages, dedupe, key, progress) if corpus_fingerprint else None
    with atomic_dir(out_dir) as tmp:
        if store_path is None:  # passages given in memory: no resume, the store goes straight in
            write_store(passages(), tmp / STORE_FILE, dedupe=dedupe)
        else:
            os.replace(store_path, tmp / STORE_FILE)
        store = PassageStore(tmp / STORE_FILE)
        try:
            built: dict[str, Any] = {}
            if kind in ("bm25", "hybrid"):
                built.update(_build_bm25(store, tmp, progress, bm25_engine))
            if kind in ("dense", "hybrid"):
                dense_info = _build_dense(store, tmp, work, dense, progress)
                if kind == "hybrid":
                    dense_info["params"] = {"bm25": built.pop("params"), "dense": dense_info["params"]}
                built.update(dense_info)
        except BaseException:
            if store_path is not None:  # keep the ingested store for the next try
                store.close()
                os.replace(tmp / STORE_FILE, store_path)
            raise
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "kind": kind,
            "encoder": dense.encoder if kind != "bm25" else None,
            "corpus_fingerprint": corpus_fingerprint or store.fingerprint,
            "passages_fingerprint": store.fingerprint,
            "source": source,
            "n_passages": len(store),
            **built,
            "bytes_store": (tmp / STORE_FILE).stat().st_size,
            "searchrl_version": __version__,
            "libraries": library_versions(kind),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.perf_counter() - start, 3),
        }
        store.close()
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return out_dir


def build_index(
    passages: Iterable[Passage],
    out_dir: str | Path,
    kind: IndexKind = "bm25",
    *,
    encoder: str = DEFAULT_ENCODER,
    faiss: str = "flat",
    hnsw_m: int = 32,
    dense: DenseBuild | None = None,
    corpus_fingerprint: str | None = None,
    source: str = "",
    progress: bool = True,
    bm25_engine: BM25Engine = DEFAULT_BM25_ENGINE,
) -> Path:
    """Build a ``kind`` index over ``passages`` (stored as given, ids unique) into ``out_dir``.

    ``corpus_fingerprint`` identifies the corpus; when omitted it is the sha256 of ``source`` if that
    names a file, else the passages' own fingerprint. ``dense`` (or the ``encoder``/``faiss``/``hnsw_m``
    shortcuts) applies to dense and hybrid indexes.
    """
    spec = dense or DenseBuild(encoder=encoder, faiss=faiss, hnsw_m=hnsw_m)
    if corpus_fingerprint is None and source and Path(source).is_file():
        corpus_fingerprint = file_fingerprint(source)
    items = passages if isinstance(passages, list) else list(passages)
    return _build(
        lambda: items, out_dir, kind, dedupe=False, corpus_fingerprint=corpus_fingerprint, source=source,
        dense=spec, progress=progress, bm25_engine=bm25_engine,
    )  # fmt: skip


def build_index_from_file(
    corpus: str | Path,
    out_dir: str | Path,
    kind: IndexKind = "bm25",
    *,
    fmt: str = "auto",
    dense: DenseBuild | None = None,
    progress: bool = True,
    bm25_engine: BM25Engine = DEFAULT_BM25_ENGINE,
) -> Path:
    """Build a ``kind`` index from a corpus file read as a stream (any format
    :func:`~searchrl.retrieval.corpus.iter_corpus` reads), deduplicated as ``load_corpus`` does.
    Resumable: see the module docstring."""
    fingerprint = file_fingerprint(corpus)
    return _build(
        lambda: iter_corpus(corpus, fmt), out_dir, kind, dedupe=True, corpus_fingerprint=fingerprint,
        source=str(corpus), dense=dense or DenseBuild(), progress=progress, bm25_engine=bm25_engine,
    )  # fmt: skip

"""faiss indexes from any ``index_factory`` string, built from vectors on disk, searched with set knobs.

``flat`` and ``hnsw`` are names for ``Flat`` and ``HNSW<m>,Flat``; anything else is handed to
``faiss.index_factory`` as written (``IVF4096,PQ48``, ``OPQ64,IVF16384_HNSW32,PQ64``, ``HNSW32,PQ32``,
``IVF1024,SQ8``...), with the inner-product metric (vectors are unit-norm). An index that needs
training is trained on ``train_size`` vectors drawn uniformly from all shards (seeded), then the shards
are added one at a time. ``nprobe`` (IVF lists visited) and ``ef_search`` (HNSW beam) are applied
wherever the index has them, through ``faiss.ParameterSpace``, so wrapped indexes (an OPQ transform
in front of an IVF) get them too.

:func:`recall_vs_exact` measures what the compression costs: for sample queries, the share of the exact
top-k (brute force over the shards, in blocks) that the index returns. Reading with ``mmap`` uses
``IO_FLAG_MMAP_IFC``: the codes of flat-code indexes (flat, PQ, SQ, HNSW's storage) are memory-mapped
from the file, shared between server processes through the page cache, instead of copied.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from searchrl.retrieval.dense.exact_rescore import refined_search
from searchrl.retrieval.dense.shards import iter_shards, sample_rows


def factory_string(faiss_kind: str, hnsw_m: int = 32) -> str:
    """The ``index_factory`` string for a config's ``faiss`` value."""
    named = {"flat": "Flat", "hnsw": f"HNSW{hnsw_m},Flat"}
    return named.get(faiss_kind, faiss_kind)


def new_index(dim: int, faiss_kind: str, hnsw_m: int = 32) -> Any:
    """An empty inner-product index; a :class:`ValueError` naming the string when faiss refuses it."""
    import faiss

    spec = factory_string(faiss_kind, hnsw_m)
    try:
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else "rejected"
        raise ValueError(
            f"faiss cannot build index '{spec}' for {dim}-d vectors ({first}); use flat, hnsw or a faiss "
            "index_factory string such as IVF1024,PQ48"
        ) from None
    hnsw = getattr(faiss.downcast_index(index), "hnsw", None)
    if hnsw is not None:
        hnsw.efConstruction = 200
    return index


def set_search_params(index: Any, *, nprobe: int, ef_search: int, k: int = 1) -> None:
    """Apply ``nprobe`` and ``ef_search`` (raised to ``k``) wherever ``index`` has such a knob."""
    import faiss

    space = faiss.ParameterSpace()
    for name, value in (("nprobe", nprobe), ("efSearch", max(ef_search, k)), ("quantizer_efSearch", ef_search)):
        with contextlib.suppress(RuntimeError):  # this index has no such knob (flat has neither)
            space.set_index_parameter(index, name, value)


def build_from_shards(
    shards: list[Path], faiss_kind: str, *, hnsw_m: int = 32, train_size: int = 200_000, seed: int = 0
) -> Any:
    """An index of every vector in ``shards`` (row order kept), trained on a sample when it needs it."""
    n = sum(len(arr) for _, arr in iter_shards(shards))
    if n == 0:
        raise ValueError("cannot build a dense index over an empty corpus")
    dim = next(iter_shards(shards))[1].shape[1]
    index = new_index(dim, faiss_kind, hnsw_m)
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n, size=min(train_size, n), replace=False))
        try:
            index.train(sample_rows(shards, rows))
        except RuntimeError as exc:
            raise ValueError(f"training faiss index '{factory_string(faiss_kind, hnsw_m)}' failed: {exc}") from None
    for _, arr in iter_shards(shards):
        index.add(np.ascontiguousarray(arr, dtype=np.float32))
    return index


def exact_topk(shards: list[Path], queries: np.ndarray, k: int, block: int = 65_536) -> np.ndarray:
    """Exact inner-product top-``k`` row ids per query, [Q, k], by brute force over the shards."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for start, arr in iter_shards(shards):
        for b in range(0, len(arr), block):
            scores = queries @ np.asarray(arr[b : b + block], dtype=np.float32).T
            ids = np.arange(start + b, start + b + scores.shape[1])[None, :].repeat(len(queries), 0)
            cat_s, cat_i = np.concatenate([best_s, scores], 1), np.concatenate([best_i, ids], 1)
            top = np.argpartition(-cat_s, min(k, cat_s.shape[1]) - 1, axis=1)[:, :k]
            best_s, best_i = np.take_along_axis(cat_s, top, 1), np.take_along_axis(cat_i, top, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1)


def recall_vs_exact(
    index: Any, shards: list[Path], queries: np.ndarray, k: int, *, vectors: Any = None, refine: int = 0
) -> float:
    """Mean share of each query's exact top-``k`` that ``index`` also returns in its top ``k`` (after
    exact rescoring of ``refine * k`` candidates from ``vectors`` when ``refine`` > 0)."""
    k = min(k, index.ntotal)
    exact = exact_topk(shards, queries, k)
    _, got = refined_search(index, vectors, queries, k, refine)
    return float(np.mean([len(set(e.tolist()) & set(g.tolist())) / k for e, g in zip(exact, got, strict=True)]))


def read_index(path: str | Path, mmap: bool) -> Any:
    """Read a faiss index file; ``mmap`` maps its codes instead of copying them (see the module docstring)."""
    import faiss

    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)

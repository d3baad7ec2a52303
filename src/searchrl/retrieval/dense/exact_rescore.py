"""Exact rescoring of a compressed index's candidates from float32 vectors kept on disk, not in memory.

A product-quantized index (``IVF1024,PQ48``: 48 B per 384-d vector instead of 1,536) is small enough
to serve 21M passages from RAM, but its approximate scores reorder close neighbours: on clustered
vectors its recall@10 against exact search is far from 1. The classic remedy (faiss's
``IndexRefineFlat``) re-scores ``refine x k`` candidates exactly, but holds every float32 vector in
memory, which is the cost compression was meant to remove. Here the vectors stay in one ``.npy`` file
in the index folder (``vectors.npy``) and the candidates' rows are read with ``os.pread``: a query
reads ``refine x k`` rows (100 x 1.5 KB for refine 10, k 10), through the kernel's page cache, and the
server's resident memory does not grow with the corpus. The file costs disk (N x D x 4 B), not RAM.
This is not a reranker model: it recomputes the inner products the index approximated, nothing more
(the ``retrieval.refine`` setting; faiss calls the in-memory version of this step ``IndexRefine``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.dense.shards import iter_shards

VECTORS_FILE = "vectors.npy"


def write_vectors(shards: list[Path], path: str | Path) -> Path:
    """Concatenate the encoding shards into one float32 ``.npy`` file (written shard by shard)."""
    path = Path(path)
    n = sum(len(arr) for _, arr in iter_shards(shards))
    dim = next(iter_shards(shards))[1].shape[1]
    tmp = path.with_name(f".{path.name}.tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
    for start, arr in iter_shards(shards):
        out[start : start + len(arr)] = arr
    out.flush()
    del out
    os.replace(tmp, path)
    return path


class DiskVectors:
    """Rows of a float32 ``[N, D]`` ``.npy`` file read on demand with ``os.pread`` (never mapped)."""

    def __init__(self, path: str | Path) -> None:
        self.fd = -1
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            try:
                major, _ = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read(fh)
            except ValueError as exc:
                raise RetrievalError(f"{self.path} is not a .npy vector file ({exc})") from None
            self.offset = fh.tell()
        if len(shape) != 2 or fortran or dtype != np.float32:
            raise RetrievalError(f"{self.path} holds a {shape} {dtype} array, expected [N, D] float32 in C order")
        self.n, self.dim = int(shape[0]), int(shape[1])
        self.row_bytes = self.dim * 4
        expected = self.offset + self.n * self.row_bytes
        if self.path.stat().st_size != expected:
            raise RetrievalError(f"{self.path} is truncated: {self.path.stat().st_size} bytes, expected {expected}")
        self.fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.n

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of row ``ids`` (any order, repeats allowed): [len(ids), D] float32."""
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        outside = ids[(ids < 0) | (ids >= self.n)]
        if len(outside):
            raise RetrievalError(f"row {int(outside[0])} is outside {self.path} ({self.n} rows)")
        for j, i in enumerate(ids.tolist()):
            out[j] = np.frombuffer(os.pread(self.fd, self.row_bytes, self.offset + i * self.row_bytes), np.float32)
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order
        with contextlib.suppress(OSError):
            self.close()


def refined_search(
    index: Any, vectors: DiskVectors | None, queries: np.ndarray, k: int, refine: int
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) [Q, k] like ``index.search``; with ``refine`` > 0, the index's top ``refine * k``
    candidates re-scored by exact inner product with ``vectors``, best first (ids -1 pad a short list)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if refine <= 0 or vectors is None:
        return index.search(queries, k)
    _, cand = index.search(queries, min(refine * k, index.ntotal))
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    for q, row in enumerate(cand):
        row = row[row >= 0]
        if not len(row):
            continue
        exact = vectors.rows(row) @ queries[q]
        top = np.argsort(-exact, kind="stable")[:k]
        scores[q, : len(top)], ids[q, : len(top)] = exact[top], row[top]
    return scores, ids

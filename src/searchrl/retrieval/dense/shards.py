"""Sharded, resumable passage encoding: a corpus of millions of passages encoded shard by shard to disk.

Shard ``i`` holds the unit-norm float32 embeddings of rows ``[i * shard_size, (i + 1) * shard_size)``
of a :class:`~searchrl.retrieval.ondisk.store.PassageStore` as ``shard_<i>.npy`` in a work folder. Each shard
is written under a temporary name and renamed when complete, so after an interruption (Ctrl-C, a lost
machine) encoding starts again at the first missing shard; a shard whose shape does not fit (another
corpus or encoder) is an error, not silently reused. A rich progress bar counts passages (resumed
shards count at once). The encoder runs on a GPU when sentence-transformers finds one (``device``
None); the shards are read back memory-mapped, never all at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.dense.encoder import embedding_dim, encode
from searchrl.retrieval.ondisk.store import PassageStore
from searchrl.utils import progress_bar


def shard_path(work: Path, i: int) -> Path:
    return work / f"shard_{i:05d}.npy"


def _shard_ok(path: Path, rows: int, dim: int) -> bool:
    """Whether ``path`` is a complete shard of ``rows`` x ``dim``; an error when it is some other one."""
    if not path.is_file():
        return False
    got = np.load(path, mmap_mode="r")
    if got.shape != (rows, dim) or got.dtype != np.float32:
        raise RetrievalError(
            f"{path} holds a {got.shape} {got.dtype} shard, expected ({rows}, {dim}) float32: the work folder "
            "belongs to another corpus or encoder; delete it or pass another one"
        )
    return True


def encode_store(
    model: Any,
    store: PassageStore,
    work: str | Path,
    *,
    shard_size: int = 50_000,
    batch_size: int = 64,
    prefix: str = "",
    progress: bool = False,
) -> list[Path]:
    """Encode every passage of ``store`` (title and text) into shards under ``work``; returns them in order.

    Shards already complete in ``work`` are kept (resume).
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    dim = embedding_dim(model)
    n = len(store)
    paths = []
    with progress_bar(progress, "encoding passages", n) as advance:
        for i, start in enumerate(range(0, n, shard_size)):
            path = shard_path(work, i)
            rows = min(shard_size, n - start)
            paths.append(path)
            if _shard_ok(path, rows, dim):
                advance(rows)
                continue
            texts = [f"{p.title}\n{p.text}" for p in store.get_many(range(start, start + rows))]
            emb = encode(model, texts, batch_size=batch_size, prefix=prefix)
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, emb)
            os.replace(tmp, path)
            advance(rows)
    return paths


def iter_shards(paths: list[Path]) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, memory-mapped [n, D] array) for each shard, in order."""
    start = 0
    for path in paths:
        arr = np.load(path, mmap_mode="r")
        yield start, arr
        start += len(arr)


def sample_rows(paths: list[Path], rows: np.ndarray) -> np.ndarray:
    """The vectors at sorted global ``rows``, gathered shard by shard: [len(rows), D] float32."""
    parts = []
    for start, arr in iter_shards(paths):
        mine = rows[(rows >= start) & (rows < start + len(arr))] - start
        if len(mine):
            parts.append(np.asarray(arr[mine], dtype=np.float32))
    return np.concatenate(parts)

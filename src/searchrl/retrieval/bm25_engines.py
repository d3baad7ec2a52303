"""BM25 engines: what scores a batch of tokenized queries for :class:`~searchrl.retrieval.bm25.BM25Retriever`,
picked by name (``retrieval.bm25_engine``) from :data:`ENGINES`.

=========  ==========  =====================================================================================
engine     files       scores
=========  ==========  =====================================================================================
numba      ``bm25/``   bm25s's precomputed Lucene BM25 (float32), summed per query by bm25s's numba kernel
numpy      ``bm25/``   the same scores summed by numpy (bm25s's default backend; what searchrl used before)
sparse     ``bm25/``   the same scores, summed only over the passages the query's terms occur in (ours)
tantivy    ``tantivy/`` tantivy's own BM25 over the same tokens (:mod:`searchrl.retrieval.bm25_tantivy`)
=========  ==========  =====================================================================================

numba and numpy read the same files, so either loads any BM25 folder, old ones included. They compute
bitwise-identical scores (the same float32 terms added in the same order) and differ only in which of
the passages tied at the k-th score they keep: numpy takes ``argpartition``'s pick, numba a heap's.
Exactly tied scores are common (passages of equal length with the same term counts score the same), so
the two overlap below 1 at top 10 though both are exact BM25; ties are a property of BM25, not an error
of either. A query with no indexed word gets the first ``k`` rows with score 0 from every engine.

bm25s's kernels score a query into a dense array of every passage and then scan all of it for the top k,
so each query costs O(passages) however rare its words: at 2M passages that scan is most of a query's
time. ``sparse`` runs term at a time over the same arrays into an accumulator that only the query's
postings touch (kept per thread and reset after each query), then picks the top k among the touched
passages: O(postings of the query's terms). Its scores are bitwise those of numba and numpy (the same
float32 terms added in the same order); it breaks ties at the k-th score by the lowest row, so its top k
equals exhaustive BM25's with that tie rule, and passages no term touches (score 0) fill a short list
lowest row first. It skips the posting lists of common words when they can no longer change the top k
(MaxScore, exact; the kernel is :mod:`searchrl.retrieval.bm25_maxscore`; ``engine.prune = False`` turns
pruning off). It needs every term score to be positive, which Lucene's BM25 guarantees (the method searchrl
builds); bm25s's other methods are refused by name.

bm25s compiles its numba kernel with no disk cache, about 5 s per process and array type; we compile the
same kernel with ``cache=True`` (numba's cache, beside bm25s's source or in numba's user cache), so only
the first process pays.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from searchrl.retrieval import bm25_maxscore as maxscore
from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.bm25_tantivy import TANTIVY_DIR, TantivyEngine

BM25Engine = Literal["numba", "numpy", "sparse", "tantivy"]
Bm25sBackend = Literal["numba", "numpy", "sparse"]
DEFAULT_BM25_ENGINE: BM25Engine = "sparse"  # retrieval.bm25_engine default (exact, fastest): docs/benchmarks.md
BM25S_DIR = "bm25"


class Engine(Protocol):
    """Top-k rows for tokenized queries over one corpus (rows are store rows, 0-based)."""

    @property
    def name(self) -> BM25Engine:
        """Its key in :data:`ENGINES`."""
        ...

    @property
    def n_docs(self) -> int:
        """Passages indexed."""
        ...

    @property
    def params(self) -> dict[str, Any]:
        """What shapes the scores: k1, b, method, and the engine's name."""
        ...

    def top_k(self, tokens: Sequence[Sequence[str]], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows [Q, k] int64, scores [Q, k] float32), best first, for ``k`` <= ``n_docs``."""
        ...


def _empty_rows(n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """What a query with no indexed word gets: rows 0..k-1, score 0."""
    return np.tile(np.arange(k, dtype=np.int64), (n_queries, 1)), np.zeros((n_queries, k), np.float32)


@functools.cache
def _numba_kernel(parallel: bool) -> Any:
    """bm25s's retrieval kernel (score every query, keep its top k), compiled with numba's disk cache."""
    from bm25s.numba.retrieve_utils import _retrieve_internal_jitted
    from numba import njit

    if parallel:
        return njit(parallel=True, cache=True)(_retrieve_internal_jitted)
    return njit(nogil=True, cache=True)(_retrieve_internal_jitted)


class Bm25sEngine:
    """bm25s's score matrix (``bm25/``), summed by ``backend`` (numba or numpy); ``n_threads`` > 1
    spreads a batch's queries over threads (numba) or a thread pool (numpy)."""

    def __init__(self, model: Any, backend: Bm25sBackend, n_threads: int = 0) -> None:
        self.model = model
        self.name: BM25Engine = backend
        self.n_threads = n_threads
        self.n_docs = int(model.scores["num_docs"])
        self._vocab: dict[str, int] = model.vocab_dict
        self._buffers = threading.local()  # sparse: each thread's accumulator and touched list
        self.prune = True  # sparse: MaxScore pruning (bm25_maxscore), where the postings allow it
        self._bounds: np.ndarray | None = None  # sparse: each term's largest score; empty if unsorted postings
        self._bounds_lock = threading.Lock()
        if backend == "sparse" and (model.method != "lucene" or model.nonoccurrence_array is not None):
            raise RetrievalError(
                f"retrieval.bm25_engine=sparse needs Lucene BM25 (positive term scores, no non-occurrence "
                f"score); this index was built with method '{model.method}': use numba or numpy"
            )

    @classmethod
    def build(
        cls, tokens: list[list[str]], backend: Bm25sBackend, *, k1: float, b: float, n_threads: int = 0
    ) -> Bm25sEngine:
        import bm25s

        model = bm25s.BM25(k1=k1, b=b)
        model.index(tokens, show_progress=False)
        return cls(model, backend, n_threads)

    @classmethod
    def load(cls, directory: Path, backend: Bm25sBackend, *, mmap: bool, n_threads: int = 0) -> Bm25sEngine:
        import bm25s

        if not (directory / BM25S_DIR / "params.index.json").is_file():
            raise RetrievalError(
                f"{directory} has no bm25s arrays ({BM25S_DIR}/); rebuild it with `searchrl index build` "
                "(retrieval.kind=bm25) or pick the engine it was built for (retrieval.bm25_engine)"
            )
        # backend="numpy" at load: bm25s would otherwise compile its own, uncached kernel
        model = bm25s.BM25.load(str(directory / BM25S_DIR), mmap=mmap, show_progress=False, backend="numpy")
        return cls(model, backend, n_threads)

    def with_backend(self, backend: Bm25sBackend) -> Bm25sEngine:
        """The same arrays summed by another backend (no reload)."""
        engine = Bm25sEngine(self.model, backend, self.n_threads)
        engine._bounds = self._bounds
        return engine

    @property
    def params(self) -> dict[str, Any]:
        return {"k1": self.model.k1, "b": self.model.b, "method": self.model.method, "engine": self.name}

    def term_ids(self, tokens: Sequence[Sequence[str]]) -> list[list[int]]:
        """Each query's tokens as vocabulary ids (words the index does not hold left out)."""
        return [[self._vocab[w] for w in words if w in self._vocab] for words in tokens]

    def top_k(self, tokens: Sequence[Sequence[str]], k: int) -> tuple[np.ndarray, np.ndarray]:
        ids = self.term_ids(tokens)
        rows, scores = _empty_rows(len(ids), k)
        known = [i for i, q in enumerate(ids) if q]  # bm25s cannot take a query with no token
        if known:
            rows[known], scores[known] = self.score_ids([ids[i] for i in known], k)
        return rows, scores

    def score_ids(self, ids: list[list[int]], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of queries given as vocabulary ids, each with at least one, by this backend."""
        run = {"numba": self._numba, "numpy": self._numpy, "sparse": self._sparse}[self.name]
        return run(ids, k)

    def _numpy(self, ids: list[list[int]], k: int) -> tuple[np.ndarray, np.ndarray]:
        docs, scores = self.model.retrieve(
            ids, k=k, show_progress=False, n_threads=self.n_threads, backend_selection="numpy"
        )
        return docs, scores

    def _sparse(self, ids: list[list[int]], k: int) -> tuple[np.ndarray, np.ndarray]:
        s, buf = self.model.scores, self._buffers
        if getattr(buf, "acc", None) is None:
            buf.acc = np.zeros(self.n_docs, s["data"].dtype)  # the dtype the other backends add in
            buf.touched = np.zeros(self.n_docs, np.int64)
        pointers = np.cumsum([0] + [len(q) for q in ids], dtype=np.int64)
        flat = np.concatenate(ids).astype(np.int64)
        arrays = (s["data"], s["indptr"], s["indices"])
        bounds = self.term_bounds() if self.prune else np.zeros(0)
        run = maxscore.kernels()["top_k"]
        rows, scores, _ = run(flat, pointers, k, *arrays, bounds, buf.acc, buf.touched, len(bounds) > 0)
        return rows, scores

    def term_bounds(self) -> np.ndarray:
        """Each term's largest score (MaxScore's bounds), computed once per index; empty when the
        postings are not in ascending row order (then sparse sums every posting, unpruned)."""
        if self._bounds is not None:  # every query asks: no lock once computed
            return self._bounds
        with self._bounds_lock:
            if self._bounds is None:
                s, kern = self.model.scores, maxscore.kernels()
                ok = kern["sorted"](s["indptr"], s["indices"])
                self._bounds = kern["bounds"](s["data"], s["indptr"]) if ok else np.zeros(0)
            return self._bounds

    def _numba(self, ids: list[list[int]], k: int) -> tuple[np.ndarray, np.ndarray]:
        from numba import get_num_threads, set_num_threads

        m, s = self.model, self.model.scores
        pointers = np.cumsum([0] + [len(q) for q in ids], dtype=np.int32)
        flat = np.concatenate(ids).astype(np.int32)
        args = (flat, pointers, k, True, np.dtype(m.dtype), np.dtype(m.int_dtype), s["data"], s["indptr"], s["indices"])
        if self.n_threads <= 1:
            scores, docs = _numba_kernel(False)(*args, self.n_docs, m.nonoccurrence_array, None)
            return docs, scores
        before = get_num_threads()
        set_num_threads(self.n_threads)
        try:
            scores, docs = _numba_kernel(True)(*args, self.n_docs, m.nonoccurrence_array, None)
        finally:
            set_num_threads(before)
        return docs, scores


@dataclass(frozen=True)
class EngineSpec:
    """How an engine is loaded from an index folder and built in memory."""

    folder: str  # its files in an index folder
    load: Callable[[Path, bool, int], Engine]  # (index folder, mmap, n_threads)
    build: Callable[[list[list[str]], float, float, int], Engine]  # (tokens per passage, k1, b, n_threads)


def _bm25s_spec(backend: Bm25sBackend) -> EngineSpec:
    return EngineSpec(
        folder=BM25S_DIR,
        load=lambda directory, mmap, n_threads: Bm25sEngine.load(directory, backend, mmap=mmap, n_threads=n_threads),
        build=lambda tokens, k1, b, n_threads: Bm25sEngine.build(tokens, backend, k1=k1, b=b, n_threads=n_threads),
    )


ENGINES: dict[BM25Engine, EngineSpec] = {
    "numba": _bm25s_spec("numba"),
    "numpy": _bm25s_spec("numpy"),
    "sparse": _bm25s_spec("sparse"),
    "tantivy": EngineSpec(
        folder=TANTIVY_DIR,
        load=lambda directory, mmap, n_threads: TantivyEngine.load(directory),
        build=lambda tokens, k1, b, n_threads: TantivyEngine.build([tokens], None, n_threads=n_threads),
    ),
}

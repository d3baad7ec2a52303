"""Searches a step does not repeat: de-duplication within a call, and a bounded LRU cache across calls.

The samples of a GRPO group often send the same query, and an experiment repeats its held-out queries
across arms. :func:`dedupe` reduces a batch to its distinct queries (searched once, the rows fanned out
to every duplicate, in the caller's order); :class:`QueryCache` remembers rows across calls, keyed by
``(normalized query, k, index id)``. The HTTP client and the server each hold one
(``retrieval.cache_size``, ``serve.cache_size``); in-process BM25 de-duplicates only.

:func:`normalize_query` only collapses and strips whitespace: every retriever here splits on whitespace
before it reads a query, so two queries with one normal form get the same answer. Case is kept (a cased
encoder or a web engine may answer ``Paris`` and ``paris`` differently).

The index id names what answers: a loaded index folder's content and engine (stable across restarts and
shared by replicas of one folder), or a fresh random id for an index that lives in one process only. A
cache never answers for another index id, so a restart with another index cannot serve stale rows.

:class:`SearchStats` counts what a retriever did (``stats`` on the BM25 retriever, the client and the
server's :class:`CachedRetriever`; the server also reports it at ``/health``); :meth:`SearchStats.since`
gives the counts of one training step, :meth:`SearchStats.metrics` the ``retrieval/…`` scalars.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from searchrl.retrieval.base import Retriever
from searchrl.types import Passage

DEFAULT_CACHE_SIZE = 4096  # rows of k passages; at k=3 about 10 MB
INDEX_HEADER = "X-Searchrl-Index"  # the server's index id, on every /retrieve answer
Key = tuple[str, int, str]  # (normalized query, k, index id)


def normalize_query(query: str) -> str:
    """``query`` with runs of whitespace collapsed to one space and the ends stripped."""
    return " ".join(query.split())


def dedupe(queries: Sequence[str]) -> tuple[list[str], list[int]]:
    """The distinct normalized queries in first-seen order, and for each query the position of its own."""
    position: dict[str, int] = {}
    where = [position.setdefault(normalize_query(q), len(position)) for q in queries]
    return list(position), where


def fan_out(rows: Sequence[list[Passage]], where: Sequence[int]) -> list[list[Passage]]:
    """One row per original query (``where`` from :func:`dedupe`); each a fresh list of the same passages."""
    return [list(rows[i]) for i in where]


@dataclass
class SearchStats:
    """Counts since a retriever was built (add up; take differences with :meth:`since`)."""

    queries: int = 0  # queries asked
    unique: int = 0  # distinct normalized queries, counted per call
    hits: int = 0  # distinct queries answered from a cache
    misses: int = 0  # distinct queries the engine (or server) searched

    def since(self, earlier: SearchStats) -> SearchStats:
        """The counts after ``earlier`` (a copy taken before)."""
        return SearchStats(*(a - b for a, b in zip(asdict(self).values(), asdict(earlier).values(), strict=True)))

    def copy(self) -> SearchStats:
        return SearchStats(**asdict(self))

    def metrics(self) -> dict[str, float]:
        """``retrieval/unique_fraction`` (distinct / asked) and ``retrieval/cache_hit_rate`` (hits / distinct)."""
        return {
            "retrieval/unique_fraction": self.unique / self.queries if self.queries else 1.0,
            "retrieval/cache_hit_rate": self.hits / self.unique if self.unique else 0.0,
        }

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class QueryCache:
    """A thread-safe LRU map from :data:`Key` to one query's rows, holding at most ``size`` entries
    (``size`` 0: nothing is kept)."""

    def __init__(self, size: int = DEFAULT_CACHE_SIZE) -> None:
        if size < 0:
            raise ValueError(f"cache size must be at least 0, got {size}")
        self.size = size
        self._rows: OrderedDict[Key, list[Passage]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: Key) -> list[Passage] | None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                self._rows.move_to_end(key)
            return row

    def put(self, key: Key, row: list[Passage]) -> None:
        if self.size == 0:
            return
        with self._lock:
            self._rows[key] = row
            self._rows.move_to_end(key)
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()


def cached_search(
    search: Callable[[list[str], int], list[list[Passage]]],
    queries: Sequence[str],
    k: int,
    cache: QueryCache,
    index_id: str,
    stats: SearchStats,
) -> list[list[Passage]]:
    """``search(queries, k)`` through :func:`dedupe` and ``cache``: only the distinct queries not cached
    are searched, in one call; ``stats`` is updated (the caller serializes calls, or owns ``stats``)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    unique, where = dedupe(queries)
    rows: list[list[Passage] | None] = [cache.get((q, k, index_id)) for q in unique]
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        found = search([unique[i] for i in missing], k)
        if len(found) != len(missing):
            raise RuntimeError(f"retriever returned {len(found)} result lists for {len(missing)} queries")
        for i, row in zip(missing, found, strict=True):
            rows[i] = row
            cache.put((unique[i], k, index_id), row)
    stats.queries += len(queries)
    stats.unique += len(unique)
    stats.hits += len(unique) - len(missing)
    stats.misses += len(missing)
    filled = [row for row in rows if row is not None]
    assert len(filled) == len(rows)
    return fan_out(filled, where)


def retriever_index_id(retriever: object) -> str:
    """The retriever's ``index_id`` when it has one, else a fresh random id (valid for this process)."""
    index_id = getattr(retriever, "index_id", None)
    return index_id if isinstance(index_id, str) and index_id else f"process:{uuid.uuid4().hex[:16]}"


class CachedRetriever:
    """``retriever`` behind de-duplication and a :class:`QueryCache` (the server's; searches are
    serialized by the server's single search thread)."""

    def __init__(self, retriever: Retriever, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.retriever = retriever
        self.index_id = retriever_index_id(retriever)
        self.cache = QueryCache(cache_size)
        self.stats = SearchStats()

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        return cached_search(self.retriever.search, queries, k, self.cache, self.index_id, self.stats)

"""Searches not repeated: de-duplication within a call, the LRU cache (bounded, keyed by index id) in the
client and in the server, and no stale rows after a restart with another index."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from http_stub import send_json
from searchrl.config import ServeConfig
from searchrl.retrieval.base import Retriever
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.retrieval.client import HTTPRetriever
from searchrl.retrieval.query_cache import CachedRetriever, QueryCache, SearchStats, cached_search, dedupe
from searchrl.retrieval.server import serve_in_thread
from searchrl.types import Passage

CITIES = ["Amsterdam", "Bergen", "Cordoba", "Dresden", "Esbjerg", "Florence", "Granada", "Hamburg"]


def corpus(topic: str) -> list[Passage]:
    return [Passage(f"{topic}-{c}", f"{c} {topic}", f"The {topic} of {c} is famous in {c}.") for c in CITIES]


class Counting:
    """Records the queries each search call received."""

    def __init__(self, inner: Retriever) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []
        self.index_id = getattr(inner, "index_id", None)

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        self.calls.append(list(queries))
        return self.inner.search(queries, k)


def row(name: str) -> list[Passage]:
    return [Passage(name, "", name)]


def test_dedupe_normalizes_whitespace_only() -> None:
    assert dedupe(["a  b", " a b ", "A b", "c", "a\tb"]) == (["a b", "A b", "c"], [0, 0, 1, 2, 0])


def test_lru_evicts_the_least_recent_at_its_bound() -> None:
    cache = QueryCache(2)
    cache.put(("a", 3, "x"), row("a"))
    cache.put(("b", 3, "x"), row("b"))
    assert cache.get(("a", 3, "x")) == row("a")  # a is now the most recent
    cache.put(("c", 3, "x"), row("c"))
    assert len(cache) == 2 and cache.get(("b", 3, "x")) is None and cache.get(("a", 3, "x")) == row("a")
    assert cache.get(("a", 3, "y")) is None and cache.get(("a", 5, "x")) is None  # index id and k are the key
    off = QueryCache(0)
    off.put(("a", 3, "x"), row("a"))
    assert len(off) == 0
    with pytest.raises(ValueError, match="at least 0"):
        QueryCache(-1)


def test_cached_search_calls_the_engine_once_per_new_query() -> None:
    calls: list[list[str]] = []

    def search(queries: list[str], k: int) -> list[list[Passage]]:
        calls.append(queries)
        return [row(q) for q in queries]

    cache, stats = QueryCache(8), SearchStats()
    first = cached_search(search, ["x", "y", " x", "x"], 3, cache, "idx", stats)
    assert first == [row("x"), row("y"), row("x"), row("x")] and calls == [["x", "y"]]
    assert first[0] is not first[2]  # a fresh list per query: callers may edit theirs
    second = cached_search(search, ["y", "z", "y"], 3, cache, "idx", stats)
    assert second == [row("y"), row("z"), row("y")] and calls[-1] == ["z"]
    cached_search(search, ["y"], 3, cache, "other-index", stats)
    assert calls[-1] == ["y"]
    assert stats.as_dict() == {"queries": 8, "unique": 5, "hits": 1, "misses": 4}
    assert stats.metrics() == {"retrieval/unique_fraction": 5 / 8, "retrieval/cache_hit_rate": 1 / 5}
    assert SearchStats().metrics() == {"retrieval/unique_fraction": 1.0, "retrieval/cache_hit_rate": 0.0}


def test_cached_retriever_gives_the_rows_the_retriever_gives() -> None:
    bm25 = BM25Retriever.build(corpus("river"))
    asked = ["river of Bergen", "Dresden", "river  of Bergen", "Granada river", "Dresden"]
    cached = CachedRetriever(bm25, 16)
    assert cached.index_id == bm25.index_id
    assert cached.search(asked, 3) == [bm25.search([q], 3)[0] for q in asked]
    assert cached.search(asked, 3) == [bm25.search([q], 3)[0] for q in asked]  # from the cache
    assert (cached.stats.hits, cached.stats.misses) == (3, 3)
    assert CachedRetriever(Counting(bm25)).index_id == bm25.index_id
    anonymous = CachedRetriever(NoIndexId())  # a retriever that names no index: valid in this process only
    assert anonymous.index_id.startswith("process:") and anonymous.index_id != CachedRetriever(NoIndexId()).index_id


class NoIndexId:
    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        return [row(q) for q in queries]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_caches_and_names_its_index() -> None:
    counting = Counting(BM25Retriever.build(corpus("river")))
    with serve_in_thread(counting, ServeConfig(port=0, cache_size=4)) as base, httpx.Client() as http:
        body = {"queries": ["river of Bergen", "river of Bergen", "Dresden"], "topk": 2}
        first = http.post(f"{base}/retrieve", json=body)
        second = http.post(f"{base}/retrieve", json=body)
        health = http.get(f"{base}/health").json()
    assert first.json() == second.json() and first.json()["result"][0] == first.json()["result"][1]
    assert counting.calls == [["river of Bergen", "Dresden"]]  # deduped, then cached
    assert first.headers["X-Searchrl-Index"] == health["index_id"] == counting.index_id
    assert health["cache"] == {"queries": 6, "unique": 4, "hits": 2, "misses": 2, "size": 2}


def test_client_cache_serves_repeats_and_never_another_index() -> None:
    """The client keeps rows while the server names the same index; a server restarted on the same port
    with another corpus is asked again, whether the call has new queries or none."""
    port = free_port()
    asked = ["river of Bergen", "Dresden", "river of Bergen"]
    river, lake = Counting(BM25Retriever.build(corpus("river"))), Counting(BM25Retriever.build(corpus("lake")))
    with HTTPRetriever(f"http://127.0.0.1:{port}/retrieve", cache_size=16, retries=2, backoff_s=0.01) as client:
        with serve_in_thread(river, ServeConfig(port=port)):
            first = client.search(asked, 2)
            again = client.search(asked, 2)
        assert first == again == river.inner.search(asked, 2) and len(river.calls) == 1
        assert client.stats.as_dict() == {"queries": 6, "unique": 4, "hits": 2, "misses": 2}
        with serve_in_thread(lake, ServeConfig(port=port)):
            assert client.search(asked, 2) == lake.inner.search(asked, 2)  # all cached rows were river's
        with serve_in_thread(river, ServeConfig(port=port)):
            assert client.search(["Hamburg", *asked], 2) == river.inner.search(["Hamburg", *asked], 2)
    assert client.stats.hits == 2  # nothing after the first restart came from the cache


@contextmanager
def anonymous_server(calls: list[list[str]]) -> Iterator[str]:
    """A Search-R1-like server that names no index."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            queries = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["queries"]
            calls.append(queries)
            send_json(self, 200, {"result": [[{"id": q, "contents": q}] for q in queries]}, {})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/retrieve"
    finally:
        server.shutdown()


def test_client_without_an_index_id_dedupes_but_does_not_cache() -> None:
    calls: list[list[str]] = []
    with anonymous_server(calls) as url, HTTPRetriever(url) as client:
        assert [r[0].id for r in client.search(["a", "b", "a"], 1)] == ["a", "b", "a"]
        client.search(["a"], 1)
    assert calls == [["a", "b"], ["a"]] and len(client.cache) == 0

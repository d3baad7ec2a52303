"""Replicas: the multi-URL client against real loopback servers (spreading, failover when one dies,
rejoining, all dead), and `searchrl serve` with several worker processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from searchrl.config import RetrievalConfig, ServeConfig
from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.retrieval.client import HTTPRetriever
from searchrl.retrieval.corpus import load_corpus
from searchrl.retrieval.factory import retriever_from_config
from searchrl.retrieval.server import serve_in_thread
from searchrl.types import Passage


class Counting:
    """A BM25 retriever that counts the queries it answered."""

    def __init__(self, inner: BM25Retriever) -> None:
        self.inner = inner
        self.passages = inner.passages
        self.queries = 0

    def search(self, queries: list[str], k: int) -> list[list[Passage]]:
        self.queries += len(queries)
        return self.inner.search(queries, k)


@pytest.fixture(scope="module")
def bm25(raw_data: Path) -> BM25Retriever:
    return BM25Retriever.build(load_corpus(raw_data / "wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl"))


def test_requests_spread_and_fail_over_when_a_replica_dies(bm25: BM25Retriever) -> None:
    a, b = Counting(bm25), Counting(bm25)
    queries = ["Evan Morris lobbyist", "Horatio Hale ethnologist", "Danish fleet"]
    want = bm25.search(queries, 3)
    no_cache = ServeConfig(port=0, cache_size=0)  # the same queries again must reach the replicas
    with ExitStack() as stack:
        url_a = stack.enter_context(serve_in_thread(a, no_cache))
        with serve_in_thread(b, no_cache) as url_b:
            urls = [url_a + "/retrieve", url_b + "/retrieve"]
            client = HTTPRetriever(urls, retries=0, dead_s=60, cache_size=0)
            for _ in range(6):
                assert client.search(queries, 3) == want
            assert a.queries == b.queries == 9  # round-robin
        # replica b is gone: every request still succeeds (on a), with no retry budget at all
        for _ in range(4):
            assert client.search(queries, 3) == want
        assert a.queries == 9 + 12 and client.alive() == [url_a + "/retrieve"]
    with pytest.raises(RetrievalError, match=r"retrieval at http://.*, http://.* failed after 1 attempt"):
        client.search(queries, 3)  # both dead
    client.close()


def test_a_dead_replica_rejoins_when_its_time_is_up(bm25: BM25Retriever) -> None:
    now = [0.0]
    with serve_in_thread(bm25, ServeConfig(port=0)) as url:
        port = int(url.rsplit(":", 1)[1])
        with serve_in_thread(bm25, ServeConfig(port=0)) as other:
            urls = [other + "/retrieve", url + "/retrieve"]  # no cache: each search is a request
            client = HTTPRetriever(urls, retries=0, dead_s=5, clock=lambda: now[0], cache_size=0)
            client.search(["x"], 1)
    # both down; the first request marks them dead
    with pytest.raises(RetrievalError):
        client.search(["x"], 1)
    assert client.alive() == []
    with serve_in_thread(bm25, ServeConfig(port=port)):  # a replica comes back on its old port
        assert len(client.search(["Evan Morris"], 1)[0]) == 1  # all dead: tried anyway, soonest back first
        assert client.alive() == [url + "/retrieve"]
        now[0] = 10.0  # the other one's time is up: it counts as alive again...
        assert client.alive() == [other + "/retrieve", url + "/retrieve"]
        for _ in range(2):  # ...until a request that starts on it (round-robin) finds it still down
            assert len(client.search(["Evan Morris"], 1)[0]) == 1
        assert client.alive() == [url + "/retrieve"]
    client.close()


def test_retries_wait_only_when_every_replica_failed(bm25: BM25Retriever) -> None:
    closed = "http://127.0.0.1:9/retrieve"
    with serve_in_thread(bm25, ServeConfig(port=0)) as url:
        client = HTTPRetriever([closed, url + "/retrieve"], retries=3, backoff_s=5.0)
        start = time.monotonic()
        for _ in range(4):
            assert len(client.search(["Evan Morris"], 2)[0]) == 2
        assert time.monotonic() - start < 4.0  # a backoff of 5 s would show
        client.close()


class Meeting(Counting):
    """A retriever whose searches, once armed, wait until two of them run at the same moment (else time out)."""

    def __init__(self, inner: BM25Retriever, barrier: threading.Barrier, armed: threading.Event) -> None:
        super().__init__(inner)
        self.barrier, self.armed = barrier, armed

    def search(self, queries: list[str], k: int) -> list[list[Passage]]:
        if self.armed.is_set():
            self.barrier.wait()
        return super().search(queries, k)


@pytest.mark.parametrize("in_flight", [2, 1])
def test_a_call_of_several_batches_keeps_them_in_flight_at_once(bm25: BM25Retriever, in_flight: int) -> None:
    """Batches of two over two replicas: with two in flight, the replicas search at the same time (each
    search waits for the other's); one at a time, the first search waits alone and fails."""
    barrier, armed = threading.Barrier(2, timeout=2.0), threading.Event()
    a, b = Meeting(bm25, barrier, armed), Meeting(bm25, barrier, armed)
    queries = ["Evan Morris", "Horatio Hale", "Danish fleet", "ethnologist", "Mumbai", "Wall Street", "Ohio", "poet"]
    no_cache = ServeConfig(port=0, cache_size=0)
    with serve_in_thread(a, no_cache) as url_a, serve_in_thread(b, no_cache) as url_b:
        urls = [url_a + "/retrieve", url_b + "/retrieve"]
        with HTTPRetriever(urls, retries=0, max_batch=2, cache_size=0, in_flight=in_flight) as client:
            # a first call alone: until a batch of full size has been answered, a call sends its first batch
            # alone (a 413 would lower the size before the rest are cut)
            assert client.search(queries[:2], 3) == bm25.search(queries[:2], 3)
            armed.set()
            if in_flight == 1:
                with pytest.raises(RetrievalError, match="BrokenBarrierError"):
                    client.search(queries[:4], 3)
                return
            assert client.search(queries, 3) == bm25.search(queries, 3)  # four batches, rows in order
            assert client.search(queries[:4], 3) == bm25.search(queries[:4], 3)
    assert a.queries + b.queries == 14
    with pytest.raises(ValueError, match="in_flight must be at least 1"):
        HTTPRetriever("http://127.0.0.1:9/retrieve", in_flight=0)


def test_config_takes_a_list_or_comma_separated_urls() -> None:
    cfg = RetrievalConfig(kind="http", url="http://a:1/retrieve, http://b:2/retrieve")
    assert cfg.urls() == ["http://a:1/retrieve", "http://b:2/retrieve"]
    client = retriever_from_config(RetrievalConfig(kind="http", url=["http://a:1/retrieve", "http://b:2/retrieve"]))
    assert isinstance(client, HTTPRetriever) and client.urls == cfg.urls() and client.url == "http://a:1/retrieve"
    client.close()
    with pytest.raises(ValueError, match="non-empty list of endpoints"):
        RetrievalConfig(kind="http", url=[])
    with pytest.raises(ValueError, match="at least one URL"):
        HTTPRetriever([])


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_serve_runs_several_worker_processes(raw_data: Path, tmp_path: Path) -> None:
    """`searchrl serve serve.workers=2`: two processes answer on one port, each loading the index folder."""
    from searchrl.retrieval.ondisk.build import build_index

    passages = load_corpus(raw_data / "wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl")[:200]
    folder = build_index(passages, tmp_path / "idx", "bm25", progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "searchrl.cli", "serve", "serve.workers=2", f"serve.port={port}"]
    cmd += ["retrieval.kind=bm25", f"retrieval.index_dir={folder}"]
    env = {**os.environ, "SEARCHRL_TOKEN": ""}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        answers = 0
        while answers < 10:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "workers did not start"
            try:
                resp = httpx.post(f"http://127.0.0.1:{port}/retrieve", json={"queries": ["Evan Morris"], "topk": 1})
            except httpx.TransportError:
                time.sleep(0.3)
                continue
            assert resp.json()["result"][0][0]["id"] == passages[0].id
            answers += 1
        spawned = [c for c in _children(proc.pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(spawned) == 2  # the supervisor's two worker processes (its resource tracker is not one)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

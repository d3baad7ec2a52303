"""The retrieval server on loopback: Search-R1's protocol round trip, auth, request merging, failures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from searchrl.config import ServeConfig
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.retrieval.server import SearchQueue, run_server, serve_in_thread
from searchrl.types import Passage

TOKEN = "test-token-123"
FACTS = [
    ("Paris", "Paris is the capital and largest city of France."),
    ("Berlin", "Berlin is the capital of Germany and its largest city."),
    ("Danube", "The Danube is the second-longest river in Europe, flowing through Vienna."),
    ("Mount Everest", "Mount Everest is Earth's highest mountain above sea level, in the Himalayas."),
    ("Ada Lovelace", "Ada Lovelace was an English mathematician who wrote the first computer program."),
    ("Alan Turing", "Alan Turing was an English mathematician and a founder of computer science."),
    ("Vienna", "Vienna is the capital of Austria, on the river Danube."),
    ("Python", "Python is a programming language created by Guido van Rossum."),
]


def small_corpus() -> list[Passage]:
    return [Passage(id=f"p{i}", title=t, text=x) for i, (t, x) in enumerate(FACTS)]


class FlakyRetriever:
    """Wraps a retriever; raises on any query containing 'boom' and counts concurrent calls."""

    def __init__(self, inner: BM25Retriever) -> None:
        self.inner = inner
        self.passages = inner.passages
        self.active = 0
        self.max_active = 0
        self.calls = 0
        self._lock = threading.Lock()

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        with self._lock:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if any("boom" in q for q in queries):
                raise RuntimeError("index shard offline")
            return self.inner.search(queries, k)
        finally:
            with self._lock:
                self.active -= 1


@pytest.fixture(scope="module")
def bm25() -> BM25Retriever:
    return BM25Retriever.build(small_corpus())


@pytest.fixture(scope="module")
def flaky(bm25: BM25Retriever) -> FlakyRetriever:
    return FlakyRetriever(bm25)


@pytest.fixture(scope="module")
def url(flaky: FlakyRetriever) -> Iterator[str]:
    with serve_in_thread(flaky, ServeConfig(port=0), token=TOKEN) as base:
        yield base


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as c:
        yield c


def test_health_needs_no_token(url: str) -> None:
    body = httpx.get(f"{url}/health").json()
    assert body["status"] == "ok" and body["n_passages"] == len(FACTS)


def test_round_trip_with_scores(url: str, client: httpx.Client, bm25: BM25Retriever) -> None:
    queries = ["capital of Germany", "first computer program"]
    resp = client.post(f"{url}/retrieve", json={"queries": queries, "topk": 2, "return_scores": True})
    assert resp.status_code == 200
    result = resp.json()["result"]
    expected = bm25.search(queries, 2)
    assert len(result) == 2
    for row, want in zip(result, expected, strict=True):
        assert [item["document"]["id"] for item in row] == [p.id for p in want]
        assert [item["document"]["contents"] for item in row] == [p.contents for p in want]
        assert [item["score"] for item in row] == pytest.approx([p.score for p in want])
        assert set(row[0]) == {"document", "score"}
    assert result[0][0]["document"]["contents"].startswith('"Berlin"\n')


def test_round_trip_without_scores_gives_bare_documents(url: str, client: httpx.Client) -> None:
    resp = client.post(f"{url}/retrieve", json={"queries": ["river through Vienna"], "topk": 1})
    assert resp.status_code == 200
    (row,) = resp.json()["result"]
    assert row == [{"id": "p2", "contents": '"Danube"\n' + FACTS[2][1]}]


def test_topk_defaults_to_three(url: str, client: httpx.Client) -> None:
    row = client.post(f"{url}/retrieve", json={"queries": ["English mathematician"]}).json()["result"][0]
    assert len(row) == 3


def test_search_r1_client_reads_the_response(url: str, client: httpx.Client) -> None:
    """Search-R1's rollout code formats ``item['document']['contents']`` of each result."""
    body = client.post(f"{url}/retrieve", json={"queries": ["highest mountain"], "topk": 3, "return_scores": True})
    contents = [item["document"]["contents"] for item in body.json()["result"][0]]
    title, _, text = contents[0].partition("\n")
    assert title.strip('"') == "Mount Everest" and "Himalayas" in text


def test_token_is_required(url: str) -> None:
    resp = httpx.post(f"{url}/retrieve", json={"queries": ["Paris"]})
    assert resp.status_code == 401 and "Authorization" in resp.json()["error"]
    assert resp.headers["www-authenticate"] == "Bearer"
    resp = httpx.post(f"{url}/retrieve", json={"queries": ["Paris"]}, headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401 and TOKEN not in resp.text


def test_concurrent_requests_are_merged_and_answered_correctly(
    url: str, client: httpx.Client, flaky: FlakyRetriever, bm25: BM25Retriever
) -> None:
    words = ["capital", "river", "mathematician", "mountain", "programming language", "city", "Danube", "Turing"]
    jobs = [([words[i % 8], words[(i * 3) % 8]], 1 + i % 4) for i in range(48)]
    calls_before = flaky.calls

    def one(job: tuple[list[str], int]) -> list[list[str]]:
        resp = client.post(f"{url}/retrieve", json={"queries": job[0], "topk": job[1], "return_scores": True})
        assert resp.status_code == 200, resp.text
        return [[item["document"]["id"] for item in row] for row in resp.json()["result"]]

    with ThreadPoolExecutor(max_workers=16) as pool:
        got = list(pool.map(one, jobs))
    for (queries, k), ids in zip(jobs, got, strict=True):
        assert ids == [[p.id for p in row] for row in bm25.search(queries, k)]
    assert flaky.max_active == 1  # never two searches at once on a non-thread-safe retriever
    assert flaky.calls - calls_before <= len(jobs)


def test_retriever_failure_is_503_and_server_keeps_serving(url: str, client: httpx.Client) -> None:
    resp = client.post(f"{url}/retrieve", json={"queries": ["boom"]})
    assert resp.status_code == 503
    assert "index shard offline" in resp.json()["error"]
    ok = client.post(f"{url}/retrieve", json={"queries": ["Paris"], "topk": 1})
    assert ok.status_code == 200 and ok.json()["result"][0][0]["id"] == "p0"


def test_failing_request_does_not_fail_merged_neighbours(url: str, client: httpx.Client) -> None:
    queries = ["boom" if i % 5 == 0 else f"capital {i}" for i in range(30)]

    def status(q: str) -> int:
        return client.post(f"{url}/retrieve", json={"queries": [q], "topk": 2}).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(status, queries))
    assert codes == [503 if "boom" in q else 200 for q in queries]


def test_wrong_row_count_from_retriever_is_503() -> None:
    class Broken:
        def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
            return []

    with serve_in_thread(Broken(), ServeConfig(port=0)) as base:
        resp = httpx.post(f"{base}/retrieve", json={"queries": ["a"]})
        assert resp.status_code == 503 and "0 result lists for 1 queries" in resp.json()["error"]
        health = httpx.get(f"{base}/health").json()
        assert health["status"] == "ok" and "n_passages" not in health


def test_run_server_refuses_several_workers(bm25: BM25Retriever) -> None:
    with pytest.raises(ValueError, match="workers"):
        run_server(bm25, ServeConfig(workers=2), None)


def test_search_queue_merges_requests_that_wait_by_topk() -> None:
    """Requests queued while a search runs go out together, one call per top-k, in arrival order.

    The order is forced by events, not sleeps: the first search signals that it runs on the worker
    thread and then blocks until the other six requests are queued. The waits time out only if the
    queue hangs (generous bounds, never reached by a passing run).
    """
    running, release = threading.Event(), threading.Event()
    calls: list[tuple[list[str], int]] = []

    class Blocking:
        def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
            calls.append((list(queries), k))
            running.set()
            assert release.wait(30), "the test never released the first search"
            return [[Passage(id=q, title="", text=q, score=float(k))] for q in queries]

    async def main() -> list[list[list[Passage]]]:
        queue = SearchQueue(Blocking(), max_batch=100)
        first = asyncio.ensure_future(queue.search(["a"], 1))
        assert await asyncio.to_thread(running.wait, 30), "the first search never reached the retriever"
        rest = [asyncio.ensure_future(queue.search([f"q{i}"], 2 if i % 2 == 0 else 1)) for i in range(6)]
        await asyncio.sleep(0)  # one loop pass: each new request enqueues itself (its task runs before this one)
        release.set()
        try:
            return await asyncio.gather(first, *rest)
        finally:
            queue.close()

    results = asyncio.run(main())
    assert calls == [(["a"], 1), (["q0", "q2", "q4"], 2), (["q1", "q3", "q5"], 1)]
    assert [r[0][0].id for r in results] == ["a", "q0", "q1", "q2", "q3", "q4", "q5"]
    assert [r[0][0].score for r in results] == [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0]

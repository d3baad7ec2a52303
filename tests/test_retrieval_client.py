"""HTTPRetriever against our server, against a scripted stub server, and across a server restart."""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from http_stub import send_json
from searchrl.config import RetrievalConfig, ServeConfig
from searchrl.retrieval import client as http_client
from searchrl.retrieval.base import RetrievalError, Retriever
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.retrieval.client import HTTPRetriever, with_retries
from searchrl.retrieval.factory import retriever_from_config
from searchrl.retrieval.server import serve_in_thread
from searchrl.types import Passage

TOKEN = "client-test-token"
TOPICS = ["river", "capital", "mountain", "painter", "composer", "island", "desert", "bridge", "castle", "lake"]
CITIES = ["Amsterdam", "Bergen", "Cordoba", "Dresden", "Esbjerg", "Florence", "Granada", "Hamburg", "Innsbruck"]


def corpus() -> list[Passage]:
    """A small synthetic corpus with distinct words, so BM25 rankings are unambiguous."""
    out = []
    for i, topic in enumerate(TOPICS):
        for j, city in enumerate(CITIES):
            text = f"The {topic} of {city} is known as {topic}{i}x{j}; visitors of {city} admire the {topic}."
            out.append(Passage(id=f"{topic}-{city}", title=f"{city} {topic}", text=text))
    return out


def queries(n: int) -> list[str]:
    return [f"{TOPICS[i % len(TOPICS)]} of {CITIES[(i * 7) % len(CITIES)]}" for i in range(n)]


def ids(rows: Sequence[Sequence[Passage]]) -> list[list[str]]:
    return [[p.id for p in row] for row in rows]


class CountingRetriever:
    """Records the batch sizes the server passed to the retriever."""

    def __init__(self, inner: Retriever) -> None:
        self.inner = inner
        self.batches: list[int] = []

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        self.batches.append(len(queries))
        return self.inner.search(queries, k)


def record_backoffs(monkeypatch: pytest.MonkeyPatch, then: Callable[[float], None] = lambda _: None) -> list[float]:
    """The backoff delays HTTPRetriever asks for between attempts, recorded; ``then`` runs on each
    (by default nothing: no test waits out a backoff it only checks).

    HTTPRetriever has no ``sleep`` argument of its own; its requests run through the client module's
    ``with_retries``, whose ``sleep`` is injectable.
    """
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        then(seconds)

    monkeypatch.setattr(http_client, "with_retries", functools.partial(with_retries, sleep=sleep))
    return delays


@pytest.fixture
def backoffs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    return record_backoffs(monkeypatch)


@pytest.fixture(scope="module")
def bm25() -> BM25Retriever:
    return BM25Retriever.build(corpus())


@pytest.fixture(scope="module")
def counting(bm25: BM25Retriever) -> CountingRetriever:
    return CountingRetriever(bm25)


@pytest.fixture(scope="module")
def url(counting: CountingRetriever) -> Iterator[str]:
    # no server cache: these tests count what reaches the retriever (the cache: test_retrieval_cache.py)
    with serve_in_thread(counting, ServeConfig(port=0, max_queries=16, cache_size=0), token=TOKEN) as base:
        yield f"{base}/retrieve"


def test_round_trip_matches_in_process(url: str, bm25: BM25Retriever) -> None:
    with HTTPRetriever(url, token=TOKEN) as client:
        assert isinstance(client, Retriever)
        got = client.search(queries(5), 3)
    want = bm25.search(queries(5), 3)
    assert got == want  # ids, titles, texts and scores survive the trip exactly


def test_config_builds_the_http_retriever(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCHRL_TEST_TOKEN", TOKEN)
    cfg = RetrievalConfig(kind="http", url=url, token_env="SEARCHRL_TEST_TOKEN", retries=1)
    client = retriever_from_config(cfg)
    assert isinstance(client, HTTPRetriever)
    assert len(client.search(["castle of Dresden"], 2)[0]) == 2
    client.close()


def test_large_requests_are_split_to_fit_the_server(url: str, bm25: BM25Retriever, counting: CountingRetriever) -> None:
    counting.batches.clear()
    with HTTPRetriever(url, token=TOKEN) as client:  # the server takes 16 queries per request
        got = client.search(queries(50), 2)
        assert client.max_batch <= 16
    assert ids(got) == ids(bm25.search(queries(50), 2))
    assert max(counting.batches) <= 16 and sum(counting.batches) == 50


def test_wrong_token_fails_at_once_without_leaking_it(url: str, backoffs: list[float]) -> None:
    client = HTTPRetriever(url, token="not-the-token", retries=5, backoff_s=2.0)
    with pytest.raises(RetrievalError, match="HTTP 401: invalid bearer token") as info:
        client.search(["lake"], 1)
    assert backoffs == []  # a 4xx is not retried: no backoff, so no second attempt
    assert "not-the-token" not in str(info.value) and "not-the-token" not in repr(client)
    client.close()


def test_k_below_one_is_refused_locally(url: str) -> None:
    with HTTPRetriever(url, token=TOKEN) as client, pytest.raises(ValueError, match="k must be"):
        client.search(["lake"], 0)
    assert HTTPRetriever(url).search([], 3) == []


# --- a scripted stub server: each request pops the next planned answer --------------------------


class Stub:
    """A loopback HTTP server answering from a script of (status, body, headers, delay_s).

    A reply is held ``delay_s`` seconds; one still held when the stub closes is dropped.
    """

    def __init__(self, script: list[tuple[int, Any, dict[str, str], float]]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.closing = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"body": body, "headers": dict(self.headers)})
                status, payload, headers, delay = stub.script.pop(0) if len(stub.script) > 1 else stub.script[0]
                if stub.closing.wait(delay):
                    return  # nobody waits for a reply held until the stub closed
                send_json(self, status, payload, headers)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/retrieve"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def r1_result(rows: list[list[dict[str, Any]]]) -> dict[str, Any]:
    return {"result": rows}


DOC = {"document": {"id": "7", "contents": '"Ada Lovelace"\nAda wrote the first program.'}, "score": 0.5}


@pytest.fixture
def stub(request: pytest.FixtureRequest) -> Iterator[Stub]:
    server = Stub(request.param)
    yield server
    server.close()


def plan(*steps: tuple[int, Any] | tuple[int, Any, dict[str, str]] | tuple[int, Any, dict[str, str], float]) -> Any:
    return [(s[0], s[1], s[2] if len(s) > 2 else {}, s[3] if len(s) > 3 else 0.0) for s in steps]


@pytest.mark.parametrize(
    "stub", [plan((503, {"error": "warming up"}), (502, b"bad gateway"), (200, r1_result([[DOC]])))], indirect=True
)
def test_5xx_is_retried_until_success(stub: Stub) -> None:
    with HTTPRetriever(stub.url, retries=3, backoff_s=0.01) as client:
        (row,) = client.search(["who wrote the first program"], 1)
    assert row == [Passage("7", "Ada Lovelace", "Ada wrote the first program.", 0.5)]
    assert len(stub.requests) == 3
    assert stub.requests[0]["body"] == {"queries": ["who wrote the first program"], "topk": 1, "return_scores": True}


@pytest.mark.parametrize(
    "stub", [plan((429, {"error": "slow down"}, {"Retry-After": "0.2"}), (200, r1_result([[DOC]])))], indirect=True
)
def test_429_is_retried_after_the_servers_delay(stub: Stub, backoffs: list[float]) -> None:
    with HTTPRetriever(stub.url, retries=2, backoff_s=0.01) as client:
        assert client.search(["q"], 1)[0][0].id == "7"
    assert backoffs == [0.2] and len(stub.requests) == 2  # Retry-After outranks the 0.01 s backoff


@pytest.mark.parametrize("stub", [plan((422, {"error": "'topk' must be between 1 and 5, got 9"}))], indirect=True)
def test_other_4xx_fail_at_once_with_the_servers_message(stub: Stub) -> None:
    with HTTPRetriever(stub.url, retries=4, backoff_s=0.01) as client, pytest.raises(RetrievalError) as info:
        client.search(["q"], 9)
    assert "HTTP 422: 'topk' must be between 1 and 5, got 9" in str(info.value)
    assert len(stub.requests) == 1


@pytest.mark.parametrize("stub", [plan((500, {"detail": "Internal Server Error"}))], indirect=True)
def test_exhausted_retries_say_where_how_often_and_why(stub: Stub) -> None:
    client = HTTPRetriever(stub.url, token="tok-xyz", retries=2, backoff_s=0.01)
    with pytest.raises(RetrievalError) as info:
        client.search(["q"], 1)
    client.close()
    message = str(info.value)
    assert stub.url in message and "after 3 attempt(s)" in message and "HTTP 500: Internal Server Error" in message
    assert "tok-xyz" not in message and len(stub.requests) == 3
    assert stub.requests[0]["headers"]["Authorization"] == "Bearer tok-xyz"


# the first reply is held far past the client's timeout (until the stub closes); the retry is answered at once
@pytest.mark.parametrize("stub", [plan((200, r1_result([[DOC]]), {}, 60.0), (200, r1_result([[DOC]])))], indirect=True)
def test_timeouts_are_retried(stub: Stub) -> None:
    with HTTPRetriever(stub.url, timeout_s=2.0, retries=1, backoff_s=0.01) as client:
        assert client.search(["q"], 1)[0][0].id == "7"
    assert len(stub.requests) == 2


SEARCH_R1_ROWS: list[list[dict[str, Any]]] = [
    [{"document": {"contents": '"No Id"\nA passage without an id.'}, "score": "1.25"}],
    [{"id": 3, "contents": "untitled text"}, {"contents": "bare, no id"}],
]


@pytest.mark.parametrize("stub", [plan((200, r1_result(SEARCH_R1_ROWS)))], indirect=True)
def test_other_search_r1_servers_are_understood(stub: Stub) -> None:
    with HTTPRetriever(stub.url) as client:
        first, second = client.search(["a", "b"], 2)
    assert first[0].title == "No Id" and first[0].text == "A passage without an id." and first[0].score == 1.25
    assert first[0].id.startswith("sha1:")
    assert second[0] == Passage("3", "", "untitled text", None)
    assert second[1].id.startswith("sha1:") and second[1].id != first[0].id


NAN_BODY = b'{"result": [[{"document": {"id": "1", "contents": "\\"A\\"\\nx"}, "score": NaN}]]}'
LATIN1 = {"Content-Type": "application/json; charset=latin-1"}


@pytest.mark.parametrize(
    "stub",
    [
        plan((200, NAN_BODY)),
        plan((200, '{"result": [[{"id": "2", "contents": "Caf\u00e9"}]]}'.encode("latin-1"), LATIN1)),
        plan((200, b'\xef\xbb\xbf{"result": [[{"id": "3", "contents": "x"}]]}')),  # a UTF-8 byte-order mark
    ],
    indirect=True,
)
def test_json_the_fast_decoder_refuses_is_still_read(stub: Stub) -> None:
    """Python's json writes NaN, and some servers answer in latin-1 or with a byte-order mark: all are read."""
    with HTTPRetriever(stub.url, retries=0) as client:
        [[passage]] = client.search(["a"], 1)
    assert (passage.id, passage.score) in {("1", None), ("2", None), ("3", None)}
    assert passage.text in {"x", "Café"}


@pytest.mark.parametrize(
    ("stub", "says"),
    [
        (plan((200, b"<html>proxy</html>")), "not JSON"),
        (plan((200, {"result": [[DOC]]})), "expected 'result' with 2 lists"),
        (plan((200, {"results": []})), "no 'result' list"),
        (plan((200, {"result": [[{"document": {"id": "1"}}], []]})), "result[0][0] has no 'contents' string"),
    ],
    indirect=["stub"],
)
def test_malformed_responses_raise_clear_errors(stub: Stub, says: str) -> None:
    with HTTPRetriever(stub.url, retries=0) as client, pytest.raises(RetrievalError) as info:
        client.search(["a", "b"], 1)
    assert says in str(info.value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}/retrieve"
    with HTTPRetriever(url, retries=2, backoff_s=0.01) as client, pytest.raises(RetrievalError) as info:
        client.search(["q"], 1)
    assert url in str(info.value) and "after 3 attempt(s)" in str(info.value) and "ConnectError" in str(info.value)


def test_backoff_doubles_and_is_capped() -> None:
    delays: list[float] = []

    def fail() -> None:
        raise httpx.ConnectError("refused")

    with pytest.raises(RetrievalError, match="x failed after 7 attempt"):
        with_retries(fail, retries=6, backoff_s=0.5, what="x", sleep=delays.append)
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


# --- the server dies and comes back on the same port while a client keeps calling ---------------

SERVE_SNIPPET = """
import json, sys
from searchrl.config import ServeConfig
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.retrieval.server import run_server
from searchrl.types import Passage
passages = [Passage(**p) for p in json.load(open(sys.argv[1]))]
run_server(BM25Retriever.build(passages), ServeConfig(port=int(sys.argv[2])), None)
"""


def start_server(corpus_file: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", SERVE_SNIPPET, str(corpus_file), str(port)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server subprocess did not start")


def test_client_survives_server_restart(tmp_path: Path, bm25: BM25Retriever, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events, not sleeps, order the restart: the calls pause after 10 until the server is killed, and the
    server comes back once a call has backed off against the closed port. The waits time out only if
    something hangs; the 20 retries (about 70 s of backoff) outlast a slow server start."""
    corpus_file = tmp_path / "corpus.json"
    corpus_file.write_text(json.dumps([{"id": p.id, "title": p.title, "text": p.text} for p in corpus()]))
    port = free_port()
    calls = [queries(40)[i : i + 2] for i in range(0, 40, 2)] * 3  # 60 calls of 2 queries
    results: list[list[list[Passage]] | BaseException] = []
    paused, killed, backed_off = threading.Event(), threading.Event(), threading.Event()

    def backoff(seconds: float) -> None:
        if killed.is_set():
            backed_off.set()
        time.sleep(seconds)  # real time: the server needs it to come back

    record_backoffs(monkeypatch, then=backoff)
    proc = start_server(corpus_file, port)
    try:
        client = HTTPRetriever(f"http://127.0.0.1:{port}/retrieve", timeout_s=5, retries=20, backoff_s=0.05)

        def stream() -> None:
            for i, batch in enumerate(calls):
                if i == 10:
                    paused.set()
                    killed.wait(60)
                try:
                    results.append(client.search(batch, 3))
                except BaseException as exc:
                    results.append(exc)

        worker = threading.Thread(target=stream, daemon=True)
        worker.start()
        assert paused.wait(60), "the first 10 calls did not finish"
        proc.kill()
        proc.wait()
        killed.set()  # the next calls hit a closed port
        assert backed_off.wait(60), "no call backed off while the server was down"
        proc = start_server(corpus_file, port)
        worker.join(timeout=120)
        client.close()
    finally:
        proc.kill()
        proc.wait()
    assert len(results) == len(calls)
    for batch, got in zip(calls, results, strict=True):
        assert not isinstance(got, BaseException), got
        assert got == bm25.search(batch, 3)


def test_a_url_without_scheme_fails_at_once(backoffs: list[float]) -> None:
    with (
        HTTPRetriever("127.0.0.1:1/retrieve", retries=5, backoff_s=1.0) as client,
        pytest.raises(RetrievalError, match=r"retrieval at 127\.0\.0\.1:1/retrieve"),
    ):
        client.search(["q"], 1)
    assert backoffs == []  # a bad URL is not retried

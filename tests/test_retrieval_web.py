"""WebSearchRetriever against a loopback stub of Serper's documented API (no network)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from searchrl.config import RetrievalConfig
from searchrl.retrieval.base import RetrievalError, Retriever
from searchrl.retrieval.factory import retriever_from_config
from searchrl.retrieval.web import WebSearchRetriever, parse_organic

KEY = "serper-test-key-0123456789"


class SerperStub:
    """Answers like google.serper.dev/search: checks ``X-API-KEY``, returns ``num`` organic results.

    ``fail_first`` is a list of (status, body) answers given before the normal ones.
    """

    def __init__(self) -> None:
        self.fail_first: list[tuple[int, dict[str, Any]]] = []
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"body": body, "key": self.headers.get("X-API-KEY")})
                if stub.fail_first:
                    self.reply(*stub.fail_first.pop(0))
                elif self.headers.get("X-API-KEY") != KEY:
                    self.reply(403, {"message": "Unauthorized.", "statusCode": 403})
                else:
                    self.reply(200, stub.answer(body["q"], body.get("num", 10)))

            def reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/search"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @staticmethod
    def answer(query: str, num: int) -> dict[str, Any]:
        slug = query.lower().replace(" ", "-")
        organic = [
            {
                "title": f"{query} — result {n}",
                "link": f"https://example.org/{slug}/{n}",
                "snippet": f"Snippet {n} about {query}.",
                "position": n,
            }
            for n in range(1, num + 1)
        ]
        return {"searchParameters": {"q": query, "num": num, "type": "search"}, "organic": organic}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[SerperStub]:
    server = SerperStub()
    yield server
    server.close()


def test_results_become_passages_in_rank_order(stub: SerperStub) -> None:
    with WebSearchRetriever(KEY, url=stub.url, retries=0) as web:
        assert isinstance(web, Retriever)
        first, second = web.search(["Ada Lovelace", "Danube river"], 3)
    assert [p.id for p in first] == [f"https://example.org/ada-lovelace/{n}" for n in (1, 2, 3)]
    assert first[0].title == "Ada Lovelace — result 1" and first[0].text == "Snippet 1 about Ada Lovelace."
    assert [p.score for p in second] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert sorted(r["body"]["q"] for r in stub.requests) == ["Ada Lovelace", "Danube river"]
    assert all(r["body"]["num"] == 3 and r["key"] == KEY for r in stub.requests)


def test_many_queries_keep_their_order(stub: SerperStub) -> None:
    queries = [f"query {i}" for i in range(12)]
    with WebSearchRetriever(KEY, url=stub.url, max_workers=4) as web:
        rows = web.search(queries, 1)
    assert [row[0].id for row in rows] == [f"https://example.org/query-{i}/1" for i in range(12)]


def test_429_then_ok_is_retried(stub: SerperStub) -> None:
    stub.fail_first = [(429, {"message": "Too many requests"})]
    with WebSearchRetriever(KEY, url=stub.url, retries=2, backoff_s=0.01) as web:
        (row,) = web.search(["Vienna"], 2)
    assert len(row) == 2 and len(stub.requests) == 2


def test_rejected_key_fails_at_once_without_leaking_it(stub: SerperStub) -> None:
    wrong = "wrong-key-abcdef"
    web = WebSearchRetriever(wrong, url=stub.url, retries=3, backoff_s=1.0)
    with pytest.raises(RetrievalError, match="HTTP 403: the API key was rejected") as info:
        web.search(["Vienna"], 2)
    web.close()
    assert len(stub.requests) == 1  # an auth failure is not retried
    assert wrong not in str(info.value) and wrong not in repr(web) and KEY not in repr(web)


def test_exhausted_retries_name_the_endpoint_not_the_key(stub: SerperStub) -> None:
    stub.fail_first = [(500, {"message": f"backend error for key {KEY}"})] * 3
    with WebSearchRetriever(KEY, url=stub.url, retries=2, backoff_s=0.01) as web, pytest.raises(RetrievalError) as info:
        web.search(["Vienna"], 2)
    message = str(info.value)
    assert stub.url in message and "after 3 attempt(s)" in message and "HTTP 500" in message
    assert KEY not in message and "***" in message


def test_key_comes_from_the_environment(stub: SerperStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEARCHRL_TEST_SERPER", raising=False)
    cfg = RetrievalConfig(kind="web", web_key_env="SEARCHRL_TEST_SERPER", web_url=stub.url, retries=0)
    with pytest.raises(RetrievalError, match="set the environment variable SEARCHRL_TEST_SERPER"):
        retriever_from_config(cfg)
    monkeypatch.setenv("SEARCHRL_TEST_SERPER", KEY)
    web = retriever_from_config(cfg)
    assert isinstance(web, WebSearchRetriever) and KEY not in repr(web)
    assert web.search(["Berlin"], 1)[0][0].id == "https://example.org/berlin/1"
    web.close()


def test_empty_key_is_refused() -> None:
    with pytest.raises(RetrievalError, match="needs a Serper API key"):
        WebSearchRetriever("  ")


def test_parse_organic_tolerates_gaps() -> None:
    body = {
        "organic": [
            {"title": "no link"},
            "junk",
            {"link": "https://a.example", "position": 2},
            {"link": "https://b.example", "title": "B", "snippet": "b", "position": "x"},
            {"link": "https://c.example"},
        ]
    }
    got = parse_organic(body, 2, "test")
    assert [(p.id, p.title, p.text, p.score) for p in got] == [
        ("https://a.example", "", "", 0.5),
        ("https://b.example", "B", "b", 0.25),
    ]
    assert parse_organic({"searchParameters": {}}, 3, "test") == []
    with pytest.raises(RetrievalError, match="no 'organic' list"):
        parse_organic({"organic": {"a": 1}}, 3, "test")

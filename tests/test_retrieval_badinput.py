"""Hostile and malformed requests: each gets a 4xx with a useful JSON message; the server stays up.

The server runs with small limits (8 queries, 200 characters, top-k 10, 4 KiB bodies) so that every
limit can be crossed cheaply. After each bad request a good one must still succeed.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from searchrl.config import ServeConfig
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.retrieval.server import serve_in_thread
from searchrl.types import Passage

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_AUTH = {**AUTH, "Content-Type": "application/json"}
LIMITS = ServeConfig(port=0, max_queries=8, max_query_chars=200, max_topk=10, max_body_bytes=4096)
GOOD = {"queries": ["capital of France"], "topk": 2, "return_scores": True}


@dataclass(frozen=True)
class Bad:
    """One bad request: how to send it, the status expected, and words the error message must contain."""

    name: str
    status: int
    says: str
    body: Any = None  # JSON-encoded unless ``raw`` is given
    raw: bytes | None = None
    method: str = "POST"
    path: str = "/retrieve"
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_AUTH))
    chunked: bool = False


def q(**overrides: Any) -> dict[str, Any]:
    return {**GOOD, **overrides}


CASES = [
    Bad("empty query", 422, "queries[0] is empty", q(queries=[""])),
    Bad("whitespace query", 422, "only whitespace", q(queries=["  \t\n "])),
    Bad("second query empty", 422, "queries[1] is empty", q(queries=["Paris", ""])),
    Bad("1 MB query", 413, "exceeds the limit of 4096 bytes", q(queries=["x" * 1_000_000])),
    Bad("query over max chars", 413, "201 characters; the limit is 200", q(queries=["y" * 201])),
    Bad("topk 0", 422, "between 1 and 10, got 0", q(topk=0)),
    Bad("topk -1", 422, "between 1 and 10, got -1", q(topk=-1)),
    Bad("topk 10**6", 422, "between 1 and 10, got 1000000", q(topk=10**6)),
    Bad("topk string", 422, "'topk' must be an integer, got string", q(topk="3")),
    Bad("topk float", 422, "'topk' must be an integer, got number", q(topk=3.5)),
    Bad("topk null", 422, "'topk' must be an integer, got null", q(topk=None)),
    Bad("topk bool", 422, "'topk' must be an integer, got boolean", q(topk=True)),
    Bad("topk NaN", 422, "'topk' must be an integer, got number", raw=b'{"queries": ["a"], "topk": NaN}'),
    Bad("queries a string", 422, "'queries' must be a list of strings, got string", q(queries="Paris")),
    Bad("queries null", 422, "'queries' must be a list of strings, got null", q(queries=None)),
    Bad("queries an object", 422, "got object", q(queries={"q": "Paris"})),
    Bad("list of ints", 422, "queries[0] must be a string, got integer", q(queries=[1, 2])),
    Bad("nested lists", 422, "queries[0] must be a string, got array", q(queries=[["Paris"]])),
    Bad("null inside list", 422, "queries[1] must be a string, got null", q(queries=["Paris", None])),
    Bad("missing queries", 422, "missing field 'queries'", {"topk": 3}),
    Bad("empty list", 422, "empty list", q(queries=[])),
    Bad("too many queries", 413, "9 queries in one request; the limit is 8", q(queries=["a"] * 9)),
    Bad("unknown field", 422, "unknown field(s) query", q(query="Paris")),
    Bad("return_scores string", 422, "'return_scores' must be true or false, got string", q(return_scores="true")),
    Bad("return_scores int", 422, "'return_scores' must be true or false, got integer", q(return_scores=1)),
    Bad("JSON array top level", 422, "must be a JSON object, got array", [GOOD]),
    Bad("JSON string top level", 422, "must be a JSON object, got string", "Paris"),
    Bad("JSON null top level", 422, "must be a JSON object, got null", raw=b"null"),
    Bad("malformed JSON", 400, "malformed JSON", raw=b'{"queries": ["Paris"'),
    Bad("trailing garbage", 400, "malformed JSON: Extra data", raw=b'{"queries": ["Paris"]} x'),
    Bad("single quotes", 400, "malformed JSON", raw=b"{'queries': ['Paris']}"),
    Bad("deep nesting", 400, "nested too deeply", raw=b"[" * 2000 + b"]" * 2000),
    Bad("non-UTF-8 bytes", 400, "not valid UTF-8", raw=b'{"queries": ["caf\xe9"]}'),
    Bad("empty body", 400, "empty request body", raw=b""),
    Bad("oversize body", 413, "exceeds the limit of 4096 bytes", raw=b" " * 5000 + json.dumps(GOOD).encode()),
    Bad("oversize chunked body", 413, "exceeds the limit of 4096 bytes", raw=b" " * 9000, chunked=True),
    Bad(
        "form-encoded body",
        415,
        "application/x-www-form-urlencoded",
        raw=b"queries=Paris",
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
    ),
    Bad(
        "text/plain body",
        415,
        "unsupported content type 'text/plain'",
        GOOD,
        headers={**AUTH, "Content-Type": "text/plain"},
    ),
    Bad("missing token", 401, "missing Authorization header", GOOD, headers={"Content-Type": "application/json"}),
    Bad("wrong token", 401, "invalid bearer token", GOOD, headers={"Authorization": "Bearer wrong"}),
    Bad("empty bearer", 401, "invalid bearer token", GOOD, headers={"Authorization": "Bearer"}),
    Bad("wrong scheme", 401, "must use the Bearer scheme", GOOD, headers={"Authorization": f"Basic {TOKEN}"}),
    Bad("token without scheme", 401, "Authorization: Bearer <token>", GOOD, headers={"Authorization": TOKEN}),
    Bad("GET on /retrieve", 405, "method GET not allowed on /retrieve; use POST", method="GET"),
    Bad("PUT on /retrieve", 405, "method PUT not allowed", GOOD, method="PUT"),
    Bad("POST on /health", 405, "use GET", GOOD, path="/health"),
    Bad("unknown path", 404, "no endpoint at /search", GOOD, path="/search"),
    Bad("root path", 404, "endpoints: GET /health, POST /retrieve", method="GET", path="/"),
]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    corpus = [
        Passage("fr", "Paris", "Paris is the capital of France."),
        Passage("de", "Berlin", "Berlin is the capital of Germany."),
        Passage("at", "Vienna", "Vienna is the capital of Austria."),
    ]
    with serve_in_thread(BM25Retriever.build(corpus), LIMITS, token=TOKEN) as base:
        yield base


def send(client: httpx.Client, url: str, case: Bad) -> httpx.Response:
    if case.raw is not None:
        content: Any = case.raw
    elif case.body is not None:
        content = json.dumps(case.body).encode()
    else:
        content = None
    if case.chunked and content is not None:
        data = content
        content = (data[i : i + 1024] for i in range(0, len(data), 1024))  # no Content-Length: chunked
    return client.request(case.method, url + case.path, content=content, headers=case.headers)


def assert_good_request_works(client: httpx.Client, url: str) -> None:
    resp = client.post(f"{url}/retrieve", json=GOOD, headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"][0][0]["document"]["id"] == "fr"


def test_there_are_at_least_30_distinct_cases() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_request_gets_4xx_with_message(url: str, case: Bad) -> None:
    with httpx.Client(timeout=10) as client:
        resp = send(client, url, case)
        assert resp.status_code == case.status, resp.text
        assert resp.headers["content-type"].startswith("application/json")
        message = resp.json()["error"]
        assert case.says in message, message
        assert TOKEN not in message
        assert_good_request_works(client, url)


def test_good_request_still_succeeds_after_all_bad_ones(url: str) -> None:
    with httpx.Client(timeout=10) as client:
        for case in CASES:
            assert 400 <= send(client, url, case).status_code < 500
        assert_good_request_works(client, url)
        assert client.get(f"{url}/health").json()["status"] == "ok"


def test_client_vanishing_mid_body_does_not_hurt_the_server(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        head = b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        sock.sendall(head + b'{"queries": ["Par')
    with httpx.Client(timeout=10) as client:
        assert_good_request_works(client, url)

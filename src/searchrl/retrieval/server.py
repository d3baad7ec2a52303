"""The retrieval service: any :class:`Retriever` over HTTP, speaking Search-R1's ``/retrieve`` protocol.

``POST /retrieve`` takes ``{"queries": [str, ...], "topk": 3, "return_scores": true}`` (``topk``
defaults to 3 and ``return_scores`` to false when absent, as in Search-R1) and answers
``{"result": [[{"document": {"id", "contents"}, "score"}, ...], ...]}``, one list per query, best
first; with ``return_scores`` false each inner item is the document ``{"id", "contents"}`` itself. So
Search-R1's own rollout code works against this server unchanged. ``GET /health`` answers
``{"status": "ok", "n_passages": N}`` (the count when the retriever exposes ``passages``) plus the
request limits, and needs no token.

Deliberate differences from Search-R1's server: unknown fields, ``topk`` of ``null``/0 and
non-integers are rejected instead of silently defaulted; every request is checked against the limits
of :class:`ServeConfig` (queries per request, characters per query, top-k, body bytes — the body size
is checked from ``Content-Length`` and again while the body streams in, before any parsing); an
optional bearer token is compared in constant time. Every bad request gets a 4xx with
``{"error": "<what was wrong>"}``. The only 5xx is a retriever failure (503, with its message); the
server keeps serving after it.

Retrievers are not assumed thread-safe: all searches run one at a time on a single worker thread, off
the event loop. Requests that arrive while a search runs are merged into the next search call (one
batched call per top-k), which is where batched retrievers such as BM25 and dense encoders are fast.
Searches go through :class:`~searchrl.retrieval.query_cache.CachedRetriever` (``serve.cache_size``); each
answer names the index in an ``X-Searchrl-Index`` header (also in ``/health``, with the cache counters).
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import math
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from searchrl.config import ServeConfig
from searchrl.retrieval.base import Retriever
from searchrl.retrieval.query_cache import INDEX_HEADER, CachedRetriever
from searchrl.types import Passage

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

DEFAULT_TOPK = 3  # Search-R1's default when a request names no topk
FIELDS = ("queries", "topk", "return_scores")


class RequestError(Exception):
    """A request the server refuses: an HTTP status (4xx) and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RetrieveRequest:
    """A validated ``/retrieve`` body."""

    queries: list[str]
    topk: int
    return_scores: bool


def check_auth(header: str | None, token: str | None) -> None:
    """Require ``Authorization: Bearer <token>`` when ``token`` is set (constant-time comparison)."""
    if token is None:
        return
    if not header:
        raise RequestError(401, "missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        # the scheme is not echoed: a client that sent its bare token would see it in logs
        raise RequestError(401, "Authorization must use the Bearer scheme: 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise RequestError(401, "invalid bearer token")


def check_content_type(value: str | None) -> None:
    """Accept a JSON media type (or none at all, as curl and some clients send); refuse the rest."""
    if not value:
        return
    media = value.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise RequestError(415, f"unsupported content type '{media[:80]}'; send application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise RequestError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    from starlette.requests import ClientDisconnect

    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:  # chunked uploads carry no Content-Length; stop reading here
                raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError(400, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)


def decode_json(body: bytes) -> Any:
    """Strict UTF-8, then JSON; each failure is a 400 naming where it happened."""
    if not body.strip():
        raise RequestError(400, 'empty request body; expected a JSON object like {"queries": ["..."]}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"request body is not valid UTF-8 (bad byte at offset {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise RequestError(400, "malformed JSON: nested too deeply") from None


def _type_name(value: Any) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string"}.get(
        type(value), "array" if isinstance(value, list) else "object"
    )


def parse_request(payload: Any, cfg: ServeConfig) -> RetrieveRequest:
    """Validate a decoded body against the protocol and the limits of ``cfg``."""
    if not isinstance(payload, dict):
        raise RequestError(422, f"request body must be a JSON object, got {_type_name(payload)}")
    unknown = sorted(str(key) for key in payload if key not in FIELDS)
    if unknown:
        raise RequestError(422, f"unknown field(s) {', '.join(unknown)[:200]}; allowed: {', '.join(FIELDS)}")
    if "queries" not in payload:
        raise RequestError(422, "missing field 'queries' (a non-empty list of strings)")
    queries = payload["queries"]
    if not isinstance(queries, list):
        raise RequestError(422, f"'queries' must be a list of strings, got {_type_name(queries)}")
    if not queries:
        raise RequestError(422, "'queries' is an empty list; send at least one query")
    if len(queries) > cfg.max_queries:
        raise RequestError(413, f"{len(queries)} queries in one request; the limit is {cfg.max_queries}")
    for i, query in enumerate(queries):
        if not isinstance(query, str):
            raise RequestError(422, f"queries[{i}] must be a string, got {_type_name(query)}")
        if not query.strip():
            raise RequestError(422, f"queries[{i}] is empty or only whitespace")
        if len(query) > cfg.max_query_chars:
            raise RequestError(413, f"queries[{i}] has {len(query)} characters; the limit is {cfg.max_query_chars}")
    topk = payload.get("topk", DEFAULT_TOPK)
    if isinstance(topk, bool) or not isinstance(topk, int):
        raise RequestError(422, f"'topk' must be an integer, got {_type_name(topk)}")
    if not 1 <= topk <= cfg.max_topk:
        raise RequestError(422, f"'topk' must be between 1 and {cfg.max_topk}, got {topk}")
    scores = payload.get("return_scores", False)
    if not isinstance(scores, bool):
        raise RequestError(422, f"'return_scores' must be true or false, got {_type_name(scores)}")
    return RetrieveRequest(queries=queries, topk=topk, return_scores=scores)


def format_result(rows: Sequence[Sequence[Passage]], return_scores: bool) -> dict[str, Any]:
    """Search-R1's response body; a missing or non-finite score is sent as null."""
    result = []
    for row in rows:
        items: list[dict[str, Any]] = []
        for p in row:
            doc = {"id": p.id, "contents": p.contents}
            if return_scores:
                score = float(p.score) if p.score is not None and math.isfinite(p.score) else None  # np.float64 too
                items.append({"document": doc, "score": score})
            else:
                items.append(doc)
        result.append(items)
    return {"result": result}


@dataclass
class _Pending:
    queries: list[str]
    topk: int
    future: asyncio.Future[list[list[Passage]]]


class SearchQueue:
    """Runs ``retriever.search`` on one worker thread, merging requests that wait into one call.

    While a search runs, new requests queue up; the next round sends all queued queries with the same
    top-k as one batch (at most ``max_batch`` queries) and splits the rows back. If a merged call
    fails, each request of it is retried alone, so one bad request cannot fail its neighbours.
    """

    def __init__(self, retriever: Retriever, max_batch: int) -> None:
        self.retriever = retriever
        self.max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="searchrl-retrieve")
        self._pending: list[_Pending] = []
        self._drainer: asyncio.Task[None] | None = None  # a reference keeps the task alive

    async def search(self, queries: list[str], topk: int) -> list[list[Passage]]:
        loop = asyncio.get_running_loop()
        item = _Pending(queries, topk, loop.create_future())
        self._pending.append(item)
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await item.future

    async def _drain(self) -> None:
        while self._pending:
            await self._run_group(self._take_group())

    def _take_group(self) -> list[_Pending]:
        """The oldest request plus the queued ones with its top-k, up to ``max_batch`` queries."""
        first = self._pending[0]
        group: list[_Pending] = []
        rest: list[_Pending] = []
        size = 0
        for item in self._pending:
            if item.topk == first.topk and (not group or size + len(item.queries) <= self.max_batch):
                group.append(item)
                size += len(item.queries)
            else:
                rest.append(item)
        self._pending = rest
        return group

    async def _run_group(self, group: list[_Pending]) -> None:
        queries = [q for item in group for q in item.queries]
        try:
            rows = await self._call(queries, group[0].topk)
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0].future, exc)
                return
            for item in group:  # isolate the failing request
                await self._run_group([item])
            return
        start = 0
        for item in group:
            _settle(item.future, rows[start : start + len(item.queries)])
            start += len(item.queries)

    async def _call(self, queries: list[str], topk: int) -> list[list[Passage]]:
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(self._executor, self.retriever.search, queries, topk)
        if not isinstance(rows, list) or len(rows) != len(queries):
            got = len(rows) if isinstance(rows, list) else type(rows).__name__
            raise RuntimeError(f"retriever returned {got} result lists for {len(queries)} queries")
        return rows

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _settle(future: asyncio.Future[list[list[Passage]]], value: list[list[Passage]] | BaseException) -> None:
    if future.done():  # the caller went away (client disconnected)
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


def _error(status: int, message: str) -> JSONResponse:
    from fastapi.responses import JSONResponse

    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    """404, 405 and anything unexpected answer JSON ``{"error": ...}`` like every other refusal."""
    from starlette.exceptions import HTTPException

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        path = request.url.path[:200]
        if status == 404:
            return _error(404, f"no endpoint at {path}; endpoints: GET /health, POST /retrieve")
        if status == 405:
            allowed = "POST" if path == "/retrieve" else "GET"
            return _error(405, f"method {request.method} not allowed on {path}; use {allowed}")
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return _error(status, str(detail))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}")

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def create_app(retriever: Retriever, serve_cfg: ServeConfig, token: str | None = None) -> FastAPI:
    """The ASGI app serving ``retriever``; ``token``, when set, is required on ``/retrieve``."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    cached = CachedRetriever(retriever, serve_cfg.cache_size)  # dedupe + LRU keyed by the index id
    queue = SearchQueue(cached, max_batch=serve_cfg.max_queries)
    health: dict[str, Any] = {"status": "ok", "max_queries": serve_cfg.max_queries, "max_topk": serve_cfg.max_topk}
    health["index_id"] = cached.index_id
    passages = getattr(retriever, "passages", None)
    if isinstance(passages, Sequence):
        health["n_passages"] = len(passages)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        queue.close()

    async def get_health(request: Request) -> JSONResponse:
        return JSONResponse({**health, "cache": {**cached.stats.as_dict(), "size": len(cached.cache)}})

    async def retrieve(request: Request) -> Response:
        try:
            check_auth(request.headers.get("authorization"), token)
            check_content_type(request.headers.get("content-type"))
            body = await read_body(request, serve_cfg.max_body_bytes)
            req = parse_request(decode_json(body), serve_cfg)
        except RequestError as exc:
            return _error(exc.status, exc.message)
        try:
            rows = await queue.search(req.queries, req.topk)
        except Exception as exc:  # a retriever failure: report it, keep serving
            return _error(503, f"retriever failed: {type(exc).__name__}: {str(exc)[:300]}")
        body = orjson.dumps(format_result(rows, req.return_scores))  # UTF-8, like JSONResponse; ~5x faster
        return Response(body, media_type="application/json", headers={INDEX_HEADER: cached.index_id})

    app = FastAPI(title="searchrl retrieval", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    _install_error_handlers(app)
    # plain Starlette routes: the handlers parse the body themselves, so FastAPI's per-request
    # signature and validation machinery would only add latency
    app.router.add_route("/health", get_health, methods=["GET"])
    app.router.add_route("/retrieve", retrieve, methods=["POST"])
    return app


def run_server(retriever: Retriever, serve_cfg: ServeConfig, token: str | None = None) -> None:
    """Serve ``retriever`` on ``serve_cfg.host:serve_cfg.port`` until interrupted (one process)."""
    import uvicorn

    if serve_cfg.workers != 1:
        raise ValueError(
            f"serve.workers={serve_cfg.workers}: run_server serves one process; several workers each build "
            "their own retriever, see searchrl.retrieval.workers.run_workers (`searchrl serve serve.workers=N`)"
        )
    app = create_app(retriever, serve_cfg, token)
    # The index is built and will live as long as the process: move it out of the collector's reach.
    # Otherwise every full collection rescans it, a ~50 ms stall that shows up as the p99 latency.
    gc.freeze()
    uvicorn.run(app, host=serve_cfg.host, port=serve_cfg.port, log_level="warning", access_log=False)


@contextmanager
def serve_in_thread(
    retriever: Retriever, serve_cfg: ServeConfig, token: str | None = None, *, startup_timeout_s: float = 30.0
) -> Iterator[str]:
    """Run the server on a background thread for the duration of the block; yields its base URL.

    ``serve_cfg.port`` 0 picks a free port. Used by tests, benchmarks and in-process tools.
    """
    import time

    import uvicorn

    app = create_app(retriever, serve_cfg, token)
    config = uvicorn.Config(app, host=serve_cfg.host, port=serve_cfg.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="searchrl-retrieval-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"retrieval server did not start on {serve_cfg.host}:{serve_cfg.port}")
        time.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)

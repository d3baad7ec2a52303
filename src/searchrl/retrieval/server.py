"""The retrieval service: FastAPI + uvicorn, speaking Search-R1's ``/retrieve`` protocol.

``POST /retrieve`` takes ``{"queries": [...], "topk": 3, "return_scores": true}`` and answers
``{"result": [[{"document": {"id", "contents"}, "score"}, ...], ...]}`` (without scores, each inner
item is the document itself), so Search-R1's own clients work against it. ``GET /health`` reports the
corpus size. Every bad request — size limits, types, encoding, JSON, auth — gets a 4xx with
``{"error": message}``; a retriever failure is a 503 with a message; the server keeps serving.
"""

from __future__ import annotations

import hmac
import json
import threading
from typing import Any

from searchrl.config import ServeConfig
from searchrl.retrieval.base import Retriever


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_ALLOWED = {"queries", "topk", "return_scores"}


def validate_request(payload: Any, cfg: ServeConfig) -> tuple[list[str], int, bool]:
    """Check a decoded JSON body against the protocol and the limits; returns (queries, topk, scores)."""
    if not isinstance(payload, dict):
        raise BadRequest(422, f"body must be a JSON object, got {type(payload).__name__}")
    unknown = sorted(set(payload) - _ALLOWED)
    if unknown:
        raise BadRequest(422, f"unknown field(s) {unknown}; allowed: {sorted(_ALLOWED)}")
    if "queries" not in payload:
        raise BadRequest(422, "missing field 'queries' (a list of strings)")
    queries = payload["queries"]
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise BadRequest(422, "'queries' must be a list of strings")
    if not queries:
        raise BadRequest(422, "'queries' is empty")
    if len(queries) > cfg.max_queries:
        raise BadRequest(413, f"{len(queries)} queries in one request; the limit is {cfg.max_queries}")
    for i, q in enumerate(queries):
        if not q.strip():
            raise BadRequest(422, f"query {i} is empty or whitespace")
        if len(q) > cfg.max_query_chars:
            raise BadRequest(413, f"query {i} has {len(q)} characters; the limit is {cfg.max_query_chars}")
    topk = payload.get("topk", 3)
    if isinstance(topk, bool) or not isinstance(topk, int):
        raise BadRequest(422, f"'topk' must be an integer, got {type(topk).__name__}")
    if not 1 <= topk <= cfg.max_topk:
        raise BadRequest(422, f"'topk' must be between 1 and {cfg.max_topk}, got {topk}")
    scores = payload.get("return_scores", False)
    if not isinstance(scores, bool):
        raise BadRequest(422, f"'return_scores' must be true or false, got {type(scores).__name__}")
    return queries, topk, scores


def create_app(retriever: Retriever, cfg: ServeConfig, token: str | None = None) -> Any:
    """The ASGI app. ``token``, when set, is required as ``Authorization: Bearer <token>``."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="searchrl retrieval", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()  # retrievers are not assumed thread-safe
    n_passages = len(getattr(retriever, "passages", []))

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "n_passages": n_passages}

    @app.post("/retrieve")
    async def retrieve(request: Request) -> JSONResponse:
        try:
            check_auth(request.headers.get("authorization"), token)
            body = await read_body(request, cfg.max_body_bytes)
            queries, topk, scores = validate_request(decode_json(body, request), cfg)
        except BadRequest as exc:
            return error(exc.status, exc.message)

        def run() -> list[list[Any]]:
            with lock:
                return retriever.search(queries, topk)

        try:
            results = await run_in_threadpool(run)
        except Exception as exc:  # the retriever failed; report it and keep serving
            return error(503, f"retriever failed: {type(exc).__name__}: {exc}")
        return JSONResponse({"result": [[_item(p, scores) for p in row] for row in results]})

    return app


def _item(p: Any, scores: bool) -> dict[str, Any]:
    doc = {"id": p.id, "contents": p.contents}
    return {"document": doc, "score": p.score} if scores else doc


def check_auth(header: str | None, token: str | None) -> None:
    if token is None:
        return
    if not header:
        raise BadRequest(401, "missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        raise BadRequest(401, "Authorization must use the Bearer scheme")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise BadRequest(403, "invalid token")


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise BadRequest(413, f"body of {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(body: bytes, request: Any) -> Any:
    ctype = request.headers.get("content-type", "")
    if ctype and "json" not in ctype.lower():
        raise BadRequest(415, f"content type must be application/json, got '{ctype}'")
    if not body:
        raise BadRequest(400, "empty body; expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"body is not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BadRequest(400, "JSON nested too deeply") from None


def run_server(retriever: Retriever, cfg: ServeConfig, token: str | None = None) -> None:
    """Serve until interrupted (binds ``cfg.host``, loopback by default)."""
    import uvicorn

    uvicorn.run(create_app(retriever, cfg, token), host=cfg.host, port=cfg.port, log_level="warning", access_log=False)

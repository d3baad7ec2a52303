"""HTTP retriever: a client for any server speaking Search-R1's ``/retrieve`` protocol (ours included).

Connection errors, timeouts, 429 and 5xx are retried with exponential backoff (``backoff_s``, doubled
each time, capped at 5 s); other 4xx fail at once with the server's message; when retries run out a
:class:`RetrievalError` says where, how many attempts, and the last error. The bearer token is sent but
never logged or put in a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import httpx

from searchrl.retrieval.base import RetrievalError
from searchrl.types import Passage

T = TypeVar("T")
RETRY_STATUS = {429, 500, 502, 503, 504}


class _Retryable(Exception):
    pass


def with_retries(call: Callable[[], T], *, retries: int, backoff_s: float, what: str) -> T:
    """Run ``call``; retry on transport errors and ``_Retryable``; raise RetrievalError at the end."""
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            return call()
        except (httpx.TransportError, _Retryable) as exc:
            last = exc
            if attempt < retries:
                time.sleep(min(backoff_s * (2**attempt), 5.0))
    raise RetrievalError(f"{what}: failed after {retries + 1} attempts; last error: {type(last).__name__}: {last}")


def check_status(resp: httpx.Response, what: str) -> None:
    if resp.status_code in RETRY_STATUS:
        raise _Retryable(f"HTTP {resp.status_code}: {_message(resp)}")
    if resp.status_code >= 400:
        raise RetrievalError(f"{what}: HTTP {resp.status_code}: {_message(resp)}")


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    return str(body.get("error") or body.get("detail") or body)[:200] if isinstance(body, dict) else str(body)[:200]


class HTTPRetriever:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        retries: int = 5,
        backoff_s: float = 0.2,
        max_batch: int = 256,
    ) -> None:
        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_batch = max_batch
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)

    def __repr__(self) -> str:
        return f"HTTPRetriever(url={self.url!r})"

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        out: list[list[Passage]] = []
        for s in range(0, len(queries), self.max_batch):
            out.extend(self._batch(list(queries[s : s + self.max_batch]), k))
        return out

    def _batch(self, queries: list[str], k: int) -> list[list[Passage]]:
        payload = {"queries": queries, "topk": k, "return_scores": True}

        def call() -> Any:
            resp = self._client.post(self.url, json=payload)
            check_status(resp, self.url)
            return resp.json()

        body = with_retries(call, retries=self.retries, backoff_s=self.backoff_s, what=f"retrieve from {self.url}")
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, list) or len(result) != len(queries):
            raise RetrievalError(f"{self.url}: response has no 'result' list with one entry per query")
        return [[_passage(item, i) for i, item in enumerate(row)] for row in result]

    def close(self) -> None:
        self._client.close()


def _passage(item: Any, rank: int) -> Passage:
    """One result item: ``{"document": {...}, "score": s}`` or a bare document."""
    doc = item.get("document", item) if isinstance(item, dict) else {}
    score = item.get("score") if isinstance(item, dict) else None
    contents = doc.get("contents")
    if not isinstance(contents, str):
        raise RetrievalError("a result item has no 'contents' string")
    pid = str(doc.get("id", f"rank{rank}"))
    return Passage.from_contents(pid, contents, float(score) if score is not None else None)

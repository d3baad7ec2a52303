"""Web search as a retriever, through Serper's Google Search API (https://serper.dev).

Provider protocol (one request per query)::

    POST https://google.serper.dev/search
    X-API-KEY: <key>
    Content-Type: application/json
    {"q": "<query>", "num": k}

    200 {"organic": [{"title": ..., "link": ..., "snippet": ..., "position": 1}, ...], ...}

Each organic result becomes ``Passage(id=link, title=title, text=snippet, score=1/position)``: Serper
gives ranks, not relevance scores, so the score only preserves the order (higher is better). At most
``k`` results are kept, in the provider's order.

The API key comes from an environment variable (``retrieval.web_key_env``, default ``SERPER_API_KEY``;
see :meth:`WebSearchRetriever.from_env`). It travels only in the ``X-API-KEY`` header: it is never
logged, never shown by ``repr`` and masked in every error message. Failures follow the HTTP retriever's
policy (:func:`searchrl.retrieval.client.with_retries`): 429, 5xx, timeouts and connection errors are
retried with exponential backoff; a rejected key (401/403) and other 4xx fail at once. Queries of one
``search`` call are sent concurrently on a few threads (``max_workers``), since the provider has no
batched endpoint in this protocol.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.client import HTTPStatusError, check_response, mask, with_retries
from searchrl.types import Passage

SERPER_URL = "https://google.serper.dev/search"


class WebSearchRetriever:
    """A :class:`Retriever` over Serper's web search (thread-safe; close when done)."""

    def __init__(
        self,
        api_key: str,
        *,
        url: str = SERPER_URL,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_workers: int = 4,
    ) -> None:
        if not api_key or not api_key.strip():
            raise RetrievalError("web search needs a Serper API key (it was empty)")
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_workers = max_workers
        self._key = api_key.strip()
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), headers={"X-API-KEY": self._key})

    @classmethod
    def from_env(cls, env_var: str = "SERPER_API_KEY", **kwargs: Any) -> WebSearchRetriever:
        """Read the key from ``env_var``; ``kwargs`` go to the constructor."""
        key = os.environ.get(env_var, "")
        if not key.strip():
            raise RetrievalError(f"web search: set the environment variable {env_var} to your Serper API key")
        return cls(key, **kwargs)

    def __repr__(self) -> str:
        return f"WebSearchRetriever(url={self.url!r})"

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """Top-``k`` web results per query, in the provider's order."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        queries = list(queries)
        if len(queries) <= 1 or self.max_workers == 1:
            return [self._one(q, k) for q in queries]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(queries))) as pool:
            return list(pool.map(lambda q: self._one(q, k), queries))

    def _one(self, query: str, k: int) -> list[Passage]:
        what = f"web search at {self.url}"

        def call() -> Any:
            resp = self._client.post(self.url, json={"q": query, "num": k})
            if resp.status_code in (401, 403):
                raise HTTPStatusError(
                    f"{what}: HTTP {resp.status_code}: the API key was rejected (check the key's variable)",
                    resp.status_code,
                )
            check_response(resp, what, self._key)
            try:
                return resp.json()
            except ValueError:
                raise RetrievalError(
                    mask(f"{what}: the response is not JSON: {resp.text[:200]!r}", self._key)
                ) from None

        body = with_retries(call, retries=self.retries, backoff_s=self.backoff_s, what=what, secret=self._key)
        return parse_organic(body, k, what)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> WebSearchRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_organic(body: Any, k: int, what: str) -> list[Passage]:
    """Serper's ``organic`` list into at most ``k`` passages (entries without a link are skipped)."""
    organic = body.get("organic", []) if isinstance(body, dict) else None
    if not isinstance(organic, list):
        raise RetrievalError(f"{what}: the response has no 'organic' list")
    out: list[Passage] = []
    for rank, item in enumerate(organic, 1):
        if len(out) == k:
            break
        if not isinstance(item, dict) or not isinstance(item.get("link"), str):
            continue
        position = item.get("position", rank)
        if isinstance(position, bool) or not isinstance(position, int | float) or position <= 0:
            position = rank
        out.append(
            Passage(
                id=item["link"],
                title=str(item.get("title") or ""),
                text=str(item.get("snippet") or ""),
                score=1.0 / float(position),
            )
        )
    return out

"""Web search through Serper's Google Search JSON API (https://serper.dev).

Request: ``POST https://google.serper.dev/search`` with header ``X-API-KEY: <key>`` and body
``{"q": query, "num": k}``. Response: ``{"organic": [{"title", "link", "snippet", "position"}, ...]}``.
Each organic result becomes a Passage (id = link, title, text = snippet, score = 1 / position).
The key comes from an environment variable (``retrieval.web_key_env``, default ``SERPER_API_KEY``) and
is never logged, printed or put into an error message. Retries follow the HTTP retriever's rules.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import httpx

from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.client import check_status, with_retries
from searchrl.types import Passage


class WebSearchRetriever:
    def __init__(
        self,
        api_key: str,
        *,
        url: str = "https://google.serper.dev/search",
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        if not api_key:
            raise RetrievalError("web search needs an API key")
        self.url = url
        self.retries = retries
        self.backoff_s = backoff_s
        self._client = httpx.Client(timeout=timeout_s, headers={"X-API-KEY": api_key})

    @classmethod
    def from_env(cls, env_var: str, **kwargs: Any) -> WebSearchRetriever:
        key = os.environ.get(env_var)
        if not key:
            raise RetrievalError(f"web search: set the environment variable {env_var} to your Serper API key")
        return cls(key, **kwargs)

    def __repr__(self) -> str:
        return f"WebSearchRetriever(url={self.url!r})"  # never the key

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        return [self._one(q, k) for q in queries]

    def _one(self, query: str, k: int) -> list[Passage]:
        def call() -> Any:
            resp = self._client.post(self.url, json={"q": query, "num": k})
            if resp.status_code in (401, 403):
                raise RetrievalError(f"web search at {self.url}: HTTP {resp.status_code}: the API key was rejected")
            check_status(resp, f"web search at {self.url}")
            return resp.json()

        body = with_retries(call, retries=self.retries, backoff_s=self.backoff_s, what=f"web search at {self.url}")
        organic = body.get("organic", []) if isinstance(body, dict) else None
        if not isinstance(organic, list):
            raise RetrievalError(f"web search at {self.url}: response has no 'organic' list")
        out = []
        for rank, item in enumerate(organic[:k], 1):
            if not isinstance(item, dict):
                continue
            pos = item.get("position", rank)
            out.append(
                Passage(
                    id=str(item.get("link", f"web{rank}")),
                    title=str(item.get("title", "")),
                    text=str(item.get("snippet", "")),
                    score=1.0 / float(pos) if isinstance(pos, int | float) and pos > 0 else None,
                )
            )
        return out

    def close(self) -> None:
        self._client.close()

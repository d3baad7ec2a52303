"""The HTTP retriever: a client for any server speaking Search-R1's ``/retrieve`` protocol (ours included).

``HTTPRetriever(url)`` posts ``{"queries", "topk", "return_scores": true}`` to ``url`` (the full
endpoint, e.g. ``http://127.0.0.1:8000/retrieve``) over one persistent connection pool and turns each
``{"document": {"id", "contents"}, "score"}`` (or a bare document) into a :class:`Passage`; a missing
id becomes ``sha1:<digest of contents>`` so it is stable across calls.

Failure policy (shared with the web retriever through :func:`with_retries`): connection errors,
timeouts, broken connections, HTTP 429 and 5xx are retried with exponential backoff (``backoff_s``,
doubled each retry, capped at 5 s; a ``Retry-After`` header of up to 30 s is honoured); retrieval is
idempotent, so re-sending a POST is safe. Any other 4xx fails at once with the server's message. When
the retries run out, :class:`RetrievalError` names the URL, the number of attempts and the last error.
A batch the server refuses as too large (413) is split in half until it fits, and later calls use the
smaller size. A call longer than one batch keeps up to ``in_flight`` requests in flight at once, so
the server searches one batch while this process decodes the previous one (and replicas share them). The bearer token is sent in a header only; it is never logged, shown by ``repr`` or put
in an error message.

Replicas: given several URLs (servers holding the same index), requests are spread round-robin. A
replica that fails with a retryable error is marked dead for ``dead_s`` seconds and the same request
goes at once to the next live replica; only when every replica failed in one round does the client
sleep the backoff before the next round, and one round counts as one attempt. Dead replicas are tried
again when their time is up (or when no replica is alive), so a restarted server rejoins by itself.

Repeats: a call searches each distinct query once (:mod:`searchrl.retrieval.query_cache`), and rows are
kept in an LRU cache (``cache_size``) keyed by the index id our server names in its ``X-Searchrl-Index``
header. A call answered wholly from the cache first asks ``/health`` which index is served; when a
server names another index than the cached rows came from, the cache is dropped and those queries are
sent too, so a restart with another index never serves stale rows. A server that names no index (e.g.
Search-R1's own) gets de-duplication only.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import orjson

from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.query_cache import DEFAULT_CACHE_SIZE, INDEX_HEADER, QueryCache, SearchStats, dedupe, fan_out
from searchrl.types import Passage

T = TypeVar("T")
MAX_BACKOFF_S = 5.0
MAX_RETRY_AFTER_S = 30.0


class RetryableError(Exception):
    """A failure worth retrying (HTTP 429 or 5xx); ``delay_s`` is the server's ``Retry-After``, if any."""

    def __init__(self, message: str, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class HTTPStatusError(RetrievalError):
    """A non-retryable HTTP error answer (4xx other than 429), with the server's message."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def with_retries(
    call: Callable[[], T],
    *,
    retries: int,
    backoff_s: float,
    what: str,
    secret: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``; retry transport errors and :class:`RetryableError` up to ``retries`` times.

    The delay before retry ``n`` (0-based) is ``min(backoff_s * 2**n, 5 s)``, or the server's
    ``Retry-After`` when that is longer. Raises :class:`RetrievalError` saying ``what`` failed, after how
    many attempts, and the last error (with ``secret`` masked should any server echo it).
    """
    last = ""
    for attempt in range(retries + 1):
        try:
            return call()
        except httpx.UnsupportedProtocol as exc:  # a bad URL: retrying cannot help
            raise RetrievalError(mask(f"{what}: {exc}", secret)) from None
        except (httpx.TransportError, RetryableError) as exc:
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt == retries:
                break
            delay = min(backoff_s * 2**attempt, MAX_BACKOFF_S)
            if isinstance(exc, RetryableError) and exc.delay_s is not None:
                delay = max(delay, exc.delay_s)
            sleep(delay)
        except httpx.HTTPError as exc:  # e.g. an undecodable body: not a transient failure
            raise RetrievalError(mask(f"{what}: {type(exc).__name__}: {exc}", secret)) from None
    message = f"{what} failed after {retries + 1} attempt(s); last error: {last}"
    raise RetrievalError(mask(message, secret))


def check_response(resp: httpx.Response, what: str, secret: str | None = None) -> None:
    """Raise :class:`RetryableError` for 429/5xx and :class:`HTTPStatusError` for other 4xx."""
    status = resp.status_code
    if status < 400:
        return
    message = mask(f"HTTP {status}: {server_message(resp)}", secret)
    if status == 429 or status >= 500:
        raise RetryableError(message, _retry_after(resp))
    raise HTTPStatusError(f"{what}: {message}", status)


def server_message(resp: httpx.Response) -> str:
    """The error text of a response: its JSON ``error``/``message``/``detail`` field, else the body."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300] or resp.reason_phrase
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if body.get(key):
                return str(body[key])[:300]
    return str(body)[:300]


def mask(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced by ``***``."""
    return text.replace(secret, "***") if secret else text


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        seconds = float(resp.headers.get("retry-after", ""))
    except ValueError:
        return None  # absent, or an HTTP date: fall back to the exponential delay
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


class HTTPRetriever:
    """A :class:`Retriever` backed by one or several remote ``/retrieve`` endpoints (replicas of one
    index; thread-safe; close when done)."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        retries: int = 5,
        backoff_s: float = 0.2,
        max_batch: int = 512,
        dead_s: float = 10.0,
        cache_size: int = DEFAULT_CACHE_SIZE,
        in_flight: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1 or in_flight < 1:
            raise ValueError(f"max_batch and in_flight must be at least 1, got {max_batch} and {in_flight}")
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("HTTPRetriever needs at least one URL")
        self.url = self.urls[0]
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_batch = max_batch  # lowered when the server answers 413 to a batch
        self.dead_s = dead_s
        self.in_flight = in_flight
        self._pool: ThreadPoolExecutor | None = None  # made by the first call that spans several batches
        self._fits = 0  # the largest batch a server has answered
        self._clock = clock
        self._dead_until = [0.0] * len(self.urls)
        self._next = 0
        self._lock = threading.Lock()
        self._token = token or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), headers=headers)
        self.cache = QueryCache(cache_size)
        self.stats = SearchStats()
        self._index_id: str | None = None  # what the last answers named; the cache answers for it only

    def __repr__(self) -> str:
        return f"HTTPRetriever(url={', '.join(self.urls)!r}, token={'set' if self._token else 'none'})"

    def alive(self) -> list[str]:
        """The replicas not marked dead now."""
        now = self._clock()
        with self._lock:
            return [u for u, until in zip(self.urls, self._dead_until, strict=True) if until <= now]

    def _round(self) -> list[int]:
        """The replicas to try for one request: live ones round-robin, then the dead ones (soonest back first)."""
        now = self._clock()
        with self._lock:
            start = self._next
            self._next = (self._next + 1) % len(self.urls)
            order = [(start + i) % len(self.urls) for i in range(len(self.urls))]
            live = [i for i in order if self._dead_until[i] <= now]
            dead = sorted((i for i in order if self._dead_until[i] > now), key=lambda i: self._dead_until[i])
        return live or dead

    def _mark(self, i: int, dead: bool) -> None:
        with self._lock:
            self._dead_until[i] = self._clock() + self.dead_s if dead else 0.0

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """Top-``k`` passages per query, best first; distinct queries only, cached rows reused while the
        server names the same index; batches of at most ``max_batch`` queries."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not queries:
            return []
        unique, where = dedupe(queries)
        cached_for = self._index_id
        rows = {i: row for i, q in enumerate(unique) if (row := self._cached(q, k, cached_for)) is not None}
        fetched = [i for i in range(len(unique)) if i not in rows]
        named: set[str | None] = set()  # the index ids this call's answers named
        rows.update(self._fetch(unique, fetched, k, named))
        if not fetched:
            named.add(self._probe_index())  # all from the cache: is that index still the one served?
        if len(fetched) < len(unique) and named != {cached_for}:  # cached rows of another index
            self.cache.clear()
            rows.update(self._fetch(unique, [i for i in range(len(unique)) if i not in fetched], k, named))
            fetched = list(range(len(unique)))
        now = named.pop() if len(named) == 1 else None
        if now is not None:
            for i in fetched:
                self.cache.put((unique[i], k, now), rows[i])
        with self._lock:
            self._index_id = now
            self.stats.queries += len(queries)
            self.stats.unique += len(unique)
            self.stats.hits += len(unique) - len(fetched)
            self.stats.misses += len(fetched)
        return fan_out([rows[i] for i in range(len(unique))], where)

    def _cached(self, query: str, k: int, index_id: str | None) -> list[Passage] | None:
        return self.cache.get((query, k, index_id)) if index_id is not None else None

    def _fetch(self, unique: list[str], which: list[int], k: int, seen: set[str | None]) -> dict[int, list[Passage]]:
        """Rows of ``unique[i]`` for each i in ``which``, in requests of at most ``max_batch``, ``in_flight``
        at a time. Until a request of that size has been answered, the first goes alone: a 413 then lowers
        the size before the others are cut."""
        queries = [unique[i] for i in which]
        rows: list[list[Passage]] = []
        if queries and min(len(queries), self.max_batch) > self._fits:
            rows = self._search_fitting(queries[: self.max_batch], k, seen)
        size = self.max_batch
        chunks = [queries[at : at + size] for at in range(len(rows), len(queries), size)]
        if len(chunks) > 1 and self.in_flight > 1:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="searchrl-http")
                pool = self._pool
            parts = list(pool.map(lambda chunk: self._search_fitting(chunk, k, seen), chunks))
        else:
            parts = [self._search_fitting(chunk, k, seen) for chunk in chunks]
        return dict(zip(which, rows + [row for part in parts for row in part], strict=True))

    def _probe_index(self) -> str | None:
        """The index id a live replica's ``/health`` names (None if none answers)."""
        for i in self._round():
            try:
                resp = self._client.get(self.urls[i].rsplit("/", 1)[0] + "/health")
                index_id = resp.json().get("index_id") if resp.status_code == 200 else None
            except (httpx.HTTPError, ValueError, AttributeError):
                continue
            return index_id if isinstance(index_id, str) else None
        return None

    def _search_fitting(self, queries: list[str], k: int, seen: set[str | None]) -> list[list[Passage]]:
        """One request; on 413 with several queries, halve the batch size and recurse on both halves."""
        try:
            rows, index_id = self._post(queries, k)
            seen.add(index_id)
            with self._lock:
                self._fits = max(self._fits, len(queries))
            return rows
        except HTTPStatusError as exc:
            if exc.status != 413 or len(queries) == 1:
                raise
        half = (len(queries) + 1) // 2
        with self._lock:
            self.max_batch = min(self.max_batch, half)
        return self._search_fitting(queries[:half], k, seen) + self._search_fitting(queries[half:], k, seen)

    def _post(self, queries: list[str], k: int) -> tuple[list[list[Passage]], str | None]:
        payload = {"queries": queries, "topk": k, "return_scores": True}
        what = f"retrieval at {', '.join(self.urls)}"

        def one(i: int) -> tuple[Any, str | None]:
            resp = self._client.post(self.urls[i], json=payload)
            check_response(resp, f"retrieval at {self.urls[i]}", self._token)
            try:
                return _json(resp), resp.headers.get(INDEX_HEADER)
            except ValueError:
                raise RetrievalError(f"{what}: the response is not JSON: {resp.text[:200]!r}") from None

        def call() -> tuple[Any, str | None]:
            error: Exception | None = None
            for i in self._round():
                try:
                    answer = one(i)
                except (httpx.TransportError, RetryableError) as exc:
                    if isinstance(exc, httpx.UnsupportedProtocol):
                        raise
                    self._mark(i, dead=True)
                    error = exc
                    continue
                self._mark(i, dead=False)
                return answer
            assert error is not None
            raise error

        body, index_id = with_retries(
            call, retries=self.retries, backoff_s=self.backoff_s, what=what, secret=self._token
        )
        return parse_result(body, len(queries), what), index_id

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._client.close()

    def __enter__(self) -> HTTPRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json(resp: httpx.Response) -> Any:
    """The body as JSON: orjson (UTF-8, a few times faster on big batches), else Python's decoder on the
    bytes (a byte-order mark, UTF-16/32, NaN), else on the text in the charset the server names (latin-1);
    raises ValueError when none reads it."""
    try:
        return orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(resp.content)  # a byte-order mark, UTF-16/32, NaN
    except ValueError:
        return json.loads(resp.text)


def parse_result(body: Any, n_queries: int, what: str) -> list[list[Passage]]:
    """Search-R1's ``{"result": [[item, ...], ...]}`` into passages (one list per query)."""
    result = body.get("result") if isinstance(body, dict) else None
    if not isinstance(result, list) or len(result) != n_queries:
        got = f"{len(result)} lists" if isinstance(result, list) else "no 'result' list"
        raise RetrievalError(f"{what}: expected 'result' with {n_queries} lists (one per query), got {got}")
    rows = []
    for i, row in enumerate(result):
        if not isinstance(row, list):
            raise RetrievalError(f"{what}: result[{i}] is not a list")
        rows.append([_passage(item, f"{what}: result[{i}][{j}]") for j, item in enumerate(row)])
    return rows


def _passage(item: Any, where: str) -> Passage:
    """``{"document": {...}, "score": s}`` or a bare ``{"id"?, "contents"}`` document."""
    if not isinstance(item, dict):
        raise RetrievalError(f"{where} is not an object")
    doc = item["document"] if isinstance(item.get("document"), dict) else item
    contents = doc.get("contents")
    if not isinstance(contents, str):
        raise RetrievalError(f"{where} has no 'contents' string")
    pid = doc.get("id")
    if pid is None:
        pid = "sha1:" + hashlib.sha1(contents.encode("utf-8")).hexdigest()[:16]
    return Passage.from_contents(str(pid), contents, _score(item.get("score")))


def _score(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        score = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return score if score is None or math.isfinite(score) else None  # NaN/inf rank nothing: as our server

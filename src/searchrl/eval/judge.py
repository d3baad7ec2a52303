"""An optional LLM-as-judge for evaluation, through any OpenAI-compatible ``/chat/completions`` endpoint.

EM and F1 miss answers that are right but worded differently ("JFK" for "John F. Kennedy"); a judge
model asked "does the prediction mean the same as any gold answer?" catches those. It is an extra
column beside EM, never a replacement: rewards and the default metrics stay string-based.

``LLMJudge(JudgeConfig(base_url="http://127.0.0.1:8000/v1", model=...))`` posts one short greedy chat
request per example and reads the first word of the reply: ``yes`` → correct, ``no`` → wrong, anything
else → ``correct=None`` with the reply kept in the verdict. An example with no answer is judged wrong
without a request.

Failure policy: connection errors, timeouts, HTTP 429 and 5xx are retried ``max_retries`` times with
capped exponential backoff and jitter (a numeric ``Retry-After`` is honoured up to a cap); any other 4xx,
a body that is not JSON or has no ``choices`` raise :class:`JudgeError` at once. The API key is read
from the environment variable named in the config, sent in a header only, and masked out of every
error message and ``repr``.
"""

from __future__ import annotations

import math
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from searchrl.retrieval.client import mask, server_message

if TYPE_CHECKING:
    from searchrl.eval.run import EvalRow

SYSTEM_PROMPT = (
    "You grade answers to questions. Given a question, the accepted gold answers and a predicted answer, "
    'decide whether the prediction means the same as any gold answer. Reply with exactly one word: "yes" or "no".'
)

JudgeItem = tuple[str, Sequence[str], str | None]  # (question, gold answers, prediction or None)


class JudgeError(RuntimeError):
    """The judge endpoint could not give a verdict (refused request, bad reply, retries exhausted)."""


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str  # the API root, e.g. http://127.0.0.1:8000/v1 (``/chat/completions`` is appended)
    model: str  # the model name the server expects in the request
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the bearer token; unset → no header
    timeout_s: float = 30.0  # per-request timeout (connect, read, write)
    max_retries: int = 4  # retries after the first attempt on connect errors, timeouts, 429 and 5xx
    concurrency: int = 4  # requests in flight at once in judge_many
    temperature: float = 0.0  # sampling temperature of the judge (0 = greedy)

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"judge base_url must start with http:// or https://, got {self.base_url!r}")
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0:
            raise ValueError("judge concurrency must be >= 1, max_retries >= 0 and timeout_s > 0")


@dataclass(frozen=True)
class Verdict:
    correct: bool | None  # None: the reply was neither "yes" nor "no"
    raw: str  # the judge's reply text ("" when no request was made)
    error: str | None  # why ``correct`` is None, else None


class _Retryable(Exception):
    """A transient HTTP answer (429 or 5xx); ``delay_s`` is the server's ``Retry-After`` in seconds."""

    def __init__(self, message: str, delay_s: float | None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class LLMJudge:
    """Judges predictions against gold answers with a chat model (thread-safe; close when done).

    ``backoff_s`` is the delay before the first retry, doubled per retry up to ``max_backoff_s`` and then
    scaled by a random factor in [0.5, 1); a ``Retry-After`` longer than that is waited for, up to
    ``max_retry_after_s``. ``client`` (not closed by the judge) and ``sleep`` are for tests.
    """

    def __init__(
        self,
        config: JudgeConfig,
        client: httpx.Client | None = None,
        *,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        max_retry_after_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._key = os.environ.get(config.api_key_env) or None
        self._headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._owns_client = client is None
        self._client = client or httpx.Client()

    def __repr__(self) -> str:
        key = "set" if self._key else "none"
        return f"LLMJudge(url={self.url!r}, model={self.config.model!r}, api_key={key})"

    def judge(self, question: str, golds: Sequence[str], prediction: str | None) -> Verdict:
        """One verdict; a missing or blank prediction is wrong without asking the endpoint."""
        if prediction is None or not prediction.strip():
            return Verdict(False, "", None)
        payload = {
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_prompt(question, golds, prediction)},
            ],
            "temperature": self.config.temperature,
            "max_tokens": 8,
        }
        return parse_verdict(self._post(payload))

    def judge_many(self, items: Sequence[JudgeItem], progress: Callable[[int], None] | None = None) -> list[Verdict]:
        """Verdicts for ``(question, golds, prediction)`` items in input order, ``concurrency`` at a time.

        ``progress(1)`` is called as each verdict arrives. The first :class:`JudgeError` cancels the
        requests not yet started and is raised: a dead endpoint must not pass as a column of ``None``.
        """
        out: list[Verdict | None] = [None] * len(items)
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(items))) as pool:
            futures = {pool.submit(self.judge, *item): i for i, item in enumerate(items)}
            try:
                for future in as_completed(futures):
                    out[futures[future]] = future.result()
                    if progress is not None:
                        progress(1)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return [v for v in out if v is not None]

    def _post(self, payload: dict[str, Any]) -> Any:
        """POST with retries; returns the decoded JSON body of a successful answer."""
        what = f"judge at {self.url}"
        last = ""
        for attempt in range(self.config.max_retries + 1):
            try:
                return self._post_once(payload, what)
            except httpx.UnsupportedProtocol as exc:  # a bad URL: retrying cannot help
                raise JudgeError(mask(f"{what}: {exc}", self._key)) from None
            except (httpx.TransportError, _Retryable) as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if attempt < self.config.max_retries:
                    self._sleep(self._delay(attempt, exc.delay_s if isinstance(exc, _Retryable) else None))
            except httpx.HTTPError as exc:  # e.g. an undecodable body: not a transient failure
                raise JudgeError(mask(f"{what}: {type(exc).__name__}: {exc}", self._key)) from None
        message = f"{what} failed after {self.config.max_retries + 1} attempt(s); last error: {last}"
        raise JudgeError(mask(message, self._key))

    def _post_once(self, payload: dict[str, Any], what: str) -> Any:
        resp = self._client.post(self.url, json=payload, headers=self._headers, timeout=self.config.timeout_s)
        if resp.status_code >= 400:
            message = mask(f"HTTP {resp.status_code}: {error_text(resp)}", self._key)
            if resp.status_code == 429 or resp.status_code >= 500:
                raise _Retryable(message, retry_after_s(resp))
            raise JudgeError(f"{what}: {message}")
        try:
            return resp.json()
        except ValueError:
            raise JudgeError(mask(f"{what}: the response is not JSON: {resp.text[:200]!r}", self._key)) from None

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry ``attempt`` (0-based)."""
        delay = min(self.backoff_s * 2**attempt, self.max_backoff_s) * (0.5 + 0.5 * self._rng.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after_s))
        return delay

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> LLMJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def user_prompt(question: str, golds: Sequence[str], prediction: str) -> str:
    """The grading request; whitespace runs are collapsed so every field stays on its own line."""

    def one_line(text: str) -> str:
        return " ".join(text.split())

    gold_lines = "\n".join(f"- {one_line(g)}" for g in golds)
    return (
        f"Question: {one_line(question)}\n"
        f"Gold answers:\n{gold_lines}\n"
        f"Prediction: {one_line(prediction)}\n\n"
        'Does the prediction mean the same as any gold answer? Reply exactly "yes" or "no".'
    )


def parse_verdict(body: Any) -> Verdict:
    """``choices[0].message.content`` of a chat completion → a verdict from its first word."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise JudgeError(f"judge reply has no choices[0].message.content: {str(body)[:200]!r}") from None
    raw = content if isinstance(content, str) else ""
    match = re.match(r"\W*([A-Za-z]+)", raw)
    word = match.group(1).lower() if match else ""
    if word in ("yes", "no"):
        return Verdict(word == "yes", raw, None)
    return Verdict(None, raw, f"unparseable judge reply: {raw[:100]!r}")


def error_text(resp: httpx.Response) -> str:
    """The server's error message; OpenAI-style ``{"error": {"message": ...}}`` is unwrapped."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and body["error"].get("message"):
        return str(body["error"]["message"])[:300]
    return server_message(resp)


def retry_after_s(resp: httpx.Response) -> float | None:
    """A numeric ``Retry-After`` header in seconds; None when absent, negative, not finite or an HTTP date."""
    try:
        seconds = float(resp.headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def judge_rows(
    rows: Sequence[EvalRow], judge: LLMJudge, progress: Callable[[int], None] | None = None
) -> list[float | None]:
    """1.0 / 0.0 per row as judged on its tagged answer (no answer → 0.0); None where the reply was unparseable."""
    verdicts = judge.judge_many([(r.question, r.golds, r.answer) for r in rows], progress)
    return [None if v.correct is None else float(v.correct) for v in verdicts]


def with_verdicts(rows: Sequence[EvalRow], judge: LLMJudge) -> tuple[list[EvalRow], str | None]:
    """``rows`` with their ``judge`` field filled, and None; or, when the judge fails, the rows unchanged
    and the error text (the evaluation is kept; only the judge column is missing)."""
    from dataclasses import replace

    try:
        values = judge_rows(rows, judge)
    except JudgeError as err:
        return list(rows), str(err)
    return [replace(r, judge=v) for r, v in zip(rows, values, strict=True)], None


def judge_accuracy(values: Sequence[float | None]) -> float:
    """Mean over the judged rows (None skipped); nan when none was judged."""
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else math.nan

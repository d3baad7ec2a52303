"""LLMJudge against a real loopback stub of an OpenAI-compatible ``/v1/chat/completions`` server."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from http_stub import send_json
from searchrl.eval.judge import (
    JudgeConfig,
    JudgeError,
    LLMJudge,
    Verdict,
    judge_accuracy,
    judge_rows,
    with_verdicts,
)
from searchrl.eval.run import EvalRow

KEY_ENV = "SEARCHRL_TEST_JUDGE_KEY"
KEY = "sk-judge-secret-123"


def completion(content: str | None) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
    }


def grade(user: str) -> str:
    """The stub's judgement: "yes" when some gold answer occurs inside the prediction (case-insensitive)."""
    lines = user.split("\n")
    start = lines.index("Gold answers:") + 1
    pred_at = next(i for i, line in enumerate(lines) if line.startswith("Prediction: "))
    golds = [line.removeprefix("- ").lower() for line in lines[start:pred_at]]
    prediction = lines[pred_at].removeprefix("Prediction: ").lower()
    return "yes" if any(g in prediction for g in golds) else "no"


@dataclass
class Stub:
    """Records every request; answers from ``script`` (status, body, headers) first, then by :func:`grade`."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    delay_s: dict[str, float] = field(default_factory=dict)  # question -> seconds to wait before answering
    replies: dict[str, str] = field(default_factory=dict)  # prediction -> a fixed reply instead of grade()
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "body": body})
            if self.script:
                return self.script.pop(0)
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}"}}, {}
        user = body["messages"][1]["content"]
        question = user.split("\n")[0].removeprefix("Question: ")
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.delay_s.get(question, 0.0))
        with self.lock:
            self.in_flight -= 1
        prediction = next(line for line in user.split("\n") if line.startswith("Prediction: "))
        return 200, completion(self.replies.get(prediction.removeprefix("Prediction: "), grade(user))), {}


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            send_json(self, *state.answer(self.path, dict(self.headers), json.loads(raw)))

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1/"  # trailing slash on purpose
    yield state
    server.shutdown()
    server.server_close()


def make_judge(url: str, **kwargs: Any) -> LLMJudge:
    config = JudgeConfig(base_url=url, model="judge-model", api_key_env=KEY_ENV, **kwargs)
    return LLMJudge(config, backoff_s=0.001, max_backoff_s=0.01)  # real sleeps, but tiny


def test_yes_and_no_verdicts_end_to_end(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with make_judge(stub.url) as judge:
        right = judge.judge("Who wrote Hamlet?", ["Shakespeare", "William Shakespeare"], "It was Shakespeare.")
        wrong = judge.judge("Who wrote Hamlet?", ["Shakespeare"], "Marlowe")
    assert right == Verdict(True, "yes", None)
    assert wrong == Verdict(False, "no", None)
    request = stub.requests[0]
    assert request["path"] == "/v1/chat/completions"  # the trailing slash of base_url is stripped
    assert "Authorization" not in request["headers"]  # no key in the environment, no header
    body = request["body"]
    assert body["model"] == "judge-model" and body["temperature"] == 0.0 and body["max_tokens"] == 8
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert '"yes" or "no"' in body["messages"][0]["content"]


def test_reply_is_read_from_its_first_word_case_insensitively(stub: Stub) -> None:
    stub.script = [(200, completion("  YES, they match."), {}), (200, completion("No."), {})]
    with make_judge(stub.url) as judge:
        assert judge.judge("q", ["a"], "b").correct is True
        assert judge.judge("q", ["a"], "b").correct is False


def test_bearer_header_sent_and_key_kept_out_of_errors(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    stub.script = [(200, completion("yes"), {}), (401, {"error": {"message": f"invalid key {KEY}"}}, {})]
    judge = make_judge(stub.url)
    assert judge.judge("q", ["a"], "a").correct is True
    assert stub.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    with pytest.raises(JudgeError, match="HTTP 401: invalid key") as info:
        judge.judge("q", ["a"], "a")
    assert KEY not in str(info.value) and KEY not in repr(judge) and "***" in str(info.value)
    judge.close()


def test_server_error_is_retried_until_it_succeeds(stub: Stub) -> None:
    stub.script = [(500, {"error": {"message": "overloaded"}}, {}), (503, b"busy", {})]
    with make_judge(stub.url, max_retries=4) as judge:
        verdict = judge.judge("Capital of France?", ["Paris"], "Paris")
    assert verdict.correct is True
    assert len(stub.requests) == 3


def test_429_waits_for_retry_after_up_to_a_cap(stub: Stub) -> None:
    stub.script = [(429, {"error": {"message": "slow down"}}, {"Retry-After": "2"}), (429, {}, {"Retry-After": "3600"})]
    slept: list[float] = []
    config = JudgeConfig(base_url=stub.url, model="m", api_key_env=KEY_ENV)
    judge = LLMJudge(config, backoff_s=0.001, max_backoff_s=0.01, max_retry_after_s=5.0, sleep=slept.append)
    assert judge.judge("Capital of France?", ["Paris"], "Paris").correct is True
    assert slept == [2.0, 5.0]  # the header wins over the tiny backoff; an hour is capped
    assert len(stub.requests) == 3
    judge.close()


def test_backoff_doubles_is_capped_and_jittered() -> None:
    judge = LLMJudge(JudgeConfig(base_url="http://127.0.0.1:1/v1", model="m"), backoff_s=1.0, max_backoff_s=4.0)
    for attempt, base in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 4.0)]:
        delays = [judge._delay(attempt, None) for _ in range(50)]
        assert all(0.5 * base <= d < base for d in delays) and len(set(delays)) > 1
    judge.close()


def test_client_error_fails_at_once_with_the_servers_message(stub: Stub) -> None:
    stub.script = [(400, {"error": {"message": "model 'judge-model' does not exist " + "x" * 1000}}, {})]
    with (
        make_judge(stub.url, max_retries=4) as judge,
        pytest.raises(JudgeError, match="HTTP 400: model 'judge-model' does not exist") as info,
    ):
        judge.judge("q", ["a"], "a")
    assert len(stub.requests) == 1
    assert len(str(info.value)) < 500  # the server's message is truncated


def test_unparseable_reply_gives_no_verdict(stub: Stub) -> None:
    stub.script = [(200, completion("Maybe; it depends."), {}), (200, completion(None), {})]
    with make_judge(stub.url) as judge:
        first = judge.judge("q", ["a"], "b")
        second = judge.judge("q", ["a"], "b")
    assert first.correct is None and first.raw == "Maybe; it depends."
    assert first.error is not None and first.error.startswith("unparseable judge reply: ")
    assert second.correct is None and second.error is not None


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"<html>oops</html>", "not JSON"), ({"id": "x"}, "no choices"), ({"choices": []}, "no choices")],
)
def test_malformed_body_is_a_clear_error(stub: Stub, payload: Any, message: str) -> None:
    stub.script = [(200, payload, {})]
    with make_judge(stub.url) as judge, pytest.raises(JudgeError, match=message):
        judge.judge("q", ["a"], "a")
    assert len(stub.requests) == 1


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_raises_after_retries() -> None:
    slept: list[float] = []
    config = JudgeConfig(base_url=f"http://127.0.0.1:{closed_port()}/v1", model="m", max_retries=2)
    with (
        LLMJudge(config, backoff_s=0.001, sleep=slept.append) as judge,
        pytest.raises(JudgeError, match="after 3 attempt") as info,
    ):
        judge.judge("q", ["a"], "a")
    assert "ConnectError" in str(info.value)
    assert len(slept) == 2


def test_no_prediction_makes_no_request(stub: Stub) -> None:
    with make_judge(stub.url) as judge:
        assert judge.judge("q", ["a"], None) == Verdict(False, "", None)
        assert judge.judge("q", ["a"], "  \n") == Verdict(False, "", None)
    assert stub.requests == []


def test_judge_many_keeps_order_under_concurrency(stub: Stub) -> None:
    n = 8
    stub.delay_s = {f"q{i}": (n - i) * 0.02 for i in range(n)}  # early items answer last
    items: list[tuple[str, Sequence[str], str | None]] = [
        (f"q{i}", [f"gold{i}"], f"gold{i}" if i % 3 else f"other{i}") for i in range(n)
    ]
    ticks: list[int] = []
    with make_judge(stub.url, concurrency=3) as judge:
        verdicts = judge.judge_many(items, progress=ticks.append)
        assert judge.judge_many([]) == []
    assert [v.correct for v in verdicts] == [bool(i % 3) for i in range(n)]
    assert 1 < stub.max_in_flight <= 3
    assert sum(ticks) == n


def test_judge_rows_on_eval_rows(stub: Stub) -> None:
    def row(i: int, answer: str | None) -> EvalRow:
        return EvalRow(
            id=f"ex{i}", dataset="nq", group="nq", question=f"question {i}", golds=["Paris", "City of Paris"],
            answer=answer, em=0.0, f1=0.0, cover_em=0.0, searches=1, finish="answer", response="", spans=[],
        )  # fmt: skip

    rows = [row(0, "it is paris"), row(1, "Lyon"), row(2, None), row(3, "unsure")]
    stub.replies = {"unsure": "perhaps"}
    with make_judge(stub.url) as judge:
        values = judge_rows(rows, judge)
    assert values == [1.0, 0.0, 0.0, None]
    assert len(stub.requests) == 3  # the row without an answer is not sent
    assert judge_accuracy(values) == pytest.approx(1 / 3)
    assert math.isnan(judge_accuracy([None, None])) and math.isnan(judge_accuracy([]))


def test_with_verdicts_keeps_rows_when_the_judge_is_dead(stub: Stub) -> None:
    rows = [
        EvalRow(
            id="ex0",
            dataset="nq",
            group="nq",
            question="q",
            golds=["Paris"],
            answer="paris",
            em=1.0,
            f1=1.0,
            cover_em=1.0,
            searches=1,
            finish="answer",
            response="",
            spans=[],
        )
    ]
    with make_judge(stub.url) as judge:
        judged, failure = with_verdicts(rows, judge)
    assert failure is None and judged[0].judge == 1.0 and judged[0].em == 1.0
    config = JudgeConfig(base_url=f"http://127.0.0.1:{closed_port()}/v1", model="m", max_retries=1)
    with LLMJudge(config, backoff_s=0.001) as dead:
        kept, failure = with_verdicts(rows, dead)
    assert kept == rows and failure is not None and "ConnectError" in failure


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="base_url"):
        JudgeConfig(base_url="127.0.0.1:8000/v1", model="m")
    with pytest.raises(ValueError, match="concurrency"):
        JudgeConfig(base_url="http://x/v1", model="m", concurrency=0)

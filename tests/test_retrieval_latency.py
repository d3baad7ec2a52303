"""Search latency: every search records how long its sample waited for the retriever call (the whole
call, sync and async), training steps log ``retrieval/latency_p50`` / ``p99`` from it, and evaluation
tables carry the same percentiles per group while the rows stay free of timings (deterministic)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from helpers.rollout import CORPUS, GREEDY, KeywordRetriever, prompt_ids
from searchrl.data.protocols import PROTOCOLS
from searchrl.eval.run import evaluate, write_results
from searchrl.metrics import rollout_metrics, search_latency, search_waits
from searchrl.rollout.async_engine import AsyncRolloutEngine
from searchrl.rollout.engine import RolloutEngine, RolloutRequest
from searchrl.rollout.scripted import ScriptedAsyncBackend, ScriptedBackend
from searchrl.types import Passage, QAExample

DELAY_S = 0.05


class Slow(KeywordRetriever):
    """The keyword retriever, taking at least ``DELAY_S`` per call however many queries it holds."""

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        time.sleep(DELAY_S)
        return super().search(queries, k)


SCRIPTS = [
    ["<search>Ilse Marrow</search>", "<search>Varnholt</search>", "<answer>Varnholt</answer>"],
    ["<search>Quillon Company</search>", "<answer>Ilse Marrow</answer>"],
    ["<answer>Tessaly</answer>"],
]


def test_search_latency_is_the_percentiles_of_the_waits() -> None:
    waits = [0.01 * i for i in range(1, 101)]  # 0.01 .. 1.00
    got = search_latency(waits)
    assert got["retrieval/latency_p50"] == pytest.approx(0.505)
    assert got["retrieval/latency_p99"] == pytest.approx(0.9901)
    assert search_latency([]) == {}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_each_search_waits_for_its_whole_call_and_a_step_logs_the_percentiles(smol_tokenizer, mode: str) -> None:  # type: ignore[no-untyped-def]
    if mode == "sync":
        backend = ScriptedBackend(smol_tokenizer, SCRIPTS)
        engine = RolloutEngine(backend, Slow(CORPUS), smol_tokenizer, PROTOCOLS["search_r1"])
    else:
        backend = ScriptedAsyncBackend(smol_tokenizer, SCRIPTS, seconds_per_token=0.0)
        engine = AsyncRolloutEngine(backend, Slow(CORPUS), smol_tokenizer, PROTOCOLS["search_r1"])
    reqs = [RolloutRequest(f"q{i}", i, prompt_ids(smol_tokenizer, f"question {i}?")) for i in range(len(SCRIPTS))]
    trajs = engine.run(reqs, GREEDY, seed=0)
    searches = [x for t in trajs for x in t.turns if x.action == "search"]
    assert len(searches) == 3 and search_waits(trajs) == [x.search_wait_s for x in searches]
    for x in searches:
        assert x.search_wait_s >= DELAY_S and x.retrieval_s <= x.search_wait_s
    if mode == "sync":  # the first turn's two searches share one call: each waited for all of it
        first = [t.turns[0] for t in trajs[:2]]
        assert first[0].search_wait_s == first[1].search_wait_s == pytest.approx(2 * first[0].retrieval_s)
    metrics = rollout_metrics(trajs, [1.0, 0.0, 0.0], [1.0, 0.0, 0.0])
    assert DELAY_S <= metrics["retrieval/latency_p50"] <= metrics["retrieval/latency_p99"]
    no_search = rollout_metrics([trajs[2]], [0.0], [0.0])
    assert "retrieval/latency_p50" not in no_search


def test_eval_tables_carry_latency_and_rows_carry_no_timing(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    examples = [
        QAExample("w/0", "Where was Ilse born?", ("Varnholt",), "world", metadata={"type": "1hop"}),
        QAExample("w/1", "Who founded Quillon?", ("Ilse Marrow",), "world", metadata={"type": "2hop"}),
        QAExample("w/2", "Where do weavers live?", ("Tessaly",), "world", metadata={"type": "2hop"}),
    ]
    engine = RolloutEngine(
        ScriptedBackend(smol_tokenizer, SCRIPTS), Slow(CORPUS), smol_tokenizer, PROTOCOLS["search_r1"]
    )
    waits: dict[str, list[float]] = {}
    rows = evaluate("agent", examples, engine, waits=waits)
    assert [len(waits[e.id]) for e in examples] == [2, 1, 0]
    table = write_results(tmp_path, "agent", rows, waits=waits)
    for group in ("1hop", "2hop", "all"):
        assert DELAY_S <= table[group]["retrieval/latency_p50"] <= table[group]["retrieval/latency_p99"]
    written = json.loads((tmp_path / "agent.jsonl").read_text().splitlines()[0])
    assert not any("wait" in key or "latency" in key for key in written)
    assert "retrieval/latency_p50" not in write_results(tmp_path / "again", "agent", rows)["all"]

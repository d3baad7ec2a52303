"""The asynchronous rollout loop: the same trajectories as the synchronous loop, no per-turn barrier,
searches of concurrent samples micro-batched into shared retriever calls.

The scripted backend has a latency per sampled token; samples differ 4x in turn length. Barrier-free
is shown by the order of events (a short sample starts its next turn before a long one ends its
current turn), not by timing, so the test holds on a loaded machine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from searchrl.data.protocols import PROTOCOLS
from searchrl.rollout.async_engine import AsyncRolloutEngine
from searchrl.rollout.engine import RolloutEngine, RolloutLimits, RolloutRequest
from searchrl.rollout.scripted import ScriptedAsyncBackend, ScriptedBackend
from searchrl.types import Passage, Trajectory
from test_rollout_engine import CORPUS, GREEDY, KeywordRetriever, prompt_ids

SHORT, LONG = "<think> ok </think>", "<think> " + "let me think about this " * 8 + "</think>"


def scripts() -> list[list[str]]:
    """8 samples: long or short thinking before each action, 0-2 searches, some invalid turns."""
    out = []
    for i in range(8):
        think = LONG if i % 2 else SHORT
        searches = [f"{think} <search> Ilse Marrow {i} </search>"] * (i % 3)
        invalid = ["just words, no action"] if i == 5 else []
        out.append([*invalid, *searches, f"{think} <answer> Varnholt </answer>"])
    return out


class SlowRetriever(KeywordRetriever):
    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        time.sleep(0.05)  # a retriever call in flight lets other samples' queries pile up behind it
        return super().search(queries, k)


def run(engine_cls, smol_tokenizer):  # type: ignore[no-untyped-def]
    backend = ScriptedAsyncBackend(smol_tokenizer, scripts(), seconds_per_token=0.002)
    retriever = SlowRetriever(CORPUS)
    limits = RolloutLimits(max_turns=4, max_new_tokens=64, max_context=1024, topk=2)
    engine = engine_cls(backend, retriever, smol_tokenizer, PROTOCOLS["search_r1"], limits)
    reqs = [RolloutRequest(f"e{i}", i, prompt_ids(smol_tokenizer, f"Where was Ilse born? ({i})")) for i in range(8)]
    return engine.run(reqs, GREEDY, seed=3), backend, retriever, engine


def comparable(t: Trajectory) -> tuple:  # type: ignore[type-arg]
    turns = [(x.action, x.generated, x.injected, x.query, x.passage_ids, x.invalid_reason) for x in t.turns]
    return (t.example_id, t.ids, t.loss_mask, t.logprobs, t.prompt_len, turns, t.answer, t.finish_reason)


def barrier_crossings(events: list[tuple[str, int, int]]) -> int:
    """How many turn starts happen while another sample is still in an earlier turn."""
    open_turns: dict[int, int] = {}
    crossings = 0
    for kind, key, turn in events:
        if kind == "start":
            crossings += any(t < turn for k, t in open_turns.items() if k != key)
            open_turns[key] = turn
        else:
            open_turns.pop(key, None)
    return crossings


def test_async_loop_matches_sync_without_a_turn_barrier(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    sync, sync_backend, _, _ = run(RolloutEngine, smol_tokenizer)
    asyn, async_backend, retriever, engine = run(AsyncRolloutEngine, smol_tokenizer)
    assert [comparable(t) for t in asyn] == [comparable(t) for t in sync]
    assert {t.n_searches for t in sync} == {0, 1, 2} and any(t.n_invalid for t in sync)
    assert barrier_crossings(sync_backend.events) == 0  # the synchronous loop waits for every turn
    assert barrier_crossings(async_backend.events) > 0
    searches = sum(t.n_searches for t in sync)
    assert sum(engine.batcher.call_sizes) == searches and max(engine.batcher.call_sizes) > 1
    assert len(retriever.calls) < searches


def test_async_engine_needs_an_async_backend(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    engine = AsyncRolloutEngine(
        ScriptedBackend(smol_tokenizer, [["x"]]), KeywordRetriever(CORPUS), smol_tokenizer, PROTOCOLS["search_r1"]
    )
    with pytest.raises(TypeError, match="generate_one"):
        engine.run([RolloutRequest("e", 0, [1, 2])], GREEDY, seed=0)

"""The asynchronous rollout loop: the same trajectories as the synchronous loop, no per-turn barrier,
searches of concurrent samples micro-batched into shared retriever calls.

Samples differ 4x in turn length. The order a slow decode of the long samples gives is forced, not
timed, so the test holds on a loaded machine: the backend holds each long sample in its first turn
until a short sample starts its second turn. Barrier-free is shown by that order of events (a short
sample starts its next turn before a long one ends its current turn); a loop with a per-turn barrier
never releases the hold and fails at the hold's timeout instead of hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from helpers.rollout import CORPUS, GREEDY, KeywordRetriever, prompt_ids
from searchrl.data.protocols import PROTOCOLS
from searchrl.rollout.async_engine import AsyncRolloutEngine
from searchrl.rollout.backend import Completion, SamplingParams
from searchrl.rollout.engine import RolloutEngine, RolloutLimits, RolloutRequest
from searchrl.rollout.scripted import ScriptedAsyncBackend, ScriptedBackend
from searchrl.types import Trajectory

HOLD_TIMEOUT_S = 60.0  # reached only by a loop with a turn barrier; the barrier-free loop releases the hold at once
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


class HeldBackend(ScriptedAsyncBackend):
    """The scripted backend without latency; in async mode the ``held`` rows wait in their first turn
    until another row starts its second turn (the order a long decode gives, forced).

    ``events`` records a turn's start before the wait, as a decode in flight.
    """

    def __init__(self, tokenizer, scripts: list[list[str]], held: set[int]) -> None:  # type: ignore[no-untyped-def]
        super().__init__(tokenizer, scripts, seconds_per_token=0.0)
        self.held = held
        self.released = asyncio.Event()  # binds to the running loop on first use

    async def generate_one(
        self,
        key: int,
        context: Sequence[int],
        max_new_tokens: int,
        stop: Sequence[str],
        params: SamplingParams,
        seed: int,
    ) -> Completion:
        turn = self._pos[key]
        self.events.append(("start", key, turn))
        if key not in self.held and turn >= 1:
            self.released.set()
        if key in self.held and turn == 0:
            try:
                await asyncio.wait_for(self.released.wait(), HOLD_TIMEOUT_S)
            except TimeoutError:
                raise AssertionError("no short sample started a second turn while the long ones decoded") from None
        # the parent's sync call, without its events and latency; returning without a suspension point
        # lets samples that search in the same loop pass queue up for one retriever call
        [out] = ScriptedBackend.generate(self, [key], [context], [max_new_tokens], stop, params, seed)
        self.events.append(("end", key, turn))
        return out


def run(engine_cls, smol_tokenizer):  # type: ignore[no-untyped-def]
    backend = HeldBackend(smol_tokenizer, scripts(), held={i for i in range(8) if i % 2})  # the LONG samples
    retriever = KeywordRetriever(CORPUS)
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

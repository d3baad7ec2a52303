"""Asynchronous multi-turn rollouts: each sample advances on its own (generate -> search -> inject).

The synchronous loop of :mod:`searchrl.rollout.engine` waits at the end of every turn for the slowest
sample of the batch; here each sample is one coroutine, so a sample with a short turn starts its
next turn while a long one is still decoding. A backend with continuous batching (vLLM's async engine)
serves all pending requests together, so concurrency is not lost.

Same trajectories as the synchronous loop, by construction: the per-sample steps are the engine's own
(``_take``, ``_inject_passages``, ``_end_or_force``: the mask is born with each token in the same
place), and the seed of a sample's turn is the one the synchronous loop uses for that turn (a sample
active in synchronous turn t has exactly t turns behind it). Only ``Turn.retrieval_s`` and ``Turn.search_wait_s`` differ.

Searches from concurrent samples are micro-batched: a query waits while a retriever call is in flight,
and all queries waiting when it returns go out as the next call (one call per burst, never one per
sample). The retriever runs in a worker thread, so decoding continues meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from searchrl.rollout.backend import Completion, SamplingParams
from searchrl.rollout.engine import RolloutEngine, RolloutRequest, _Row
from searchrl.types import Passage, Trajectory

if TYPE_CHECKING:
    from searchrl.retrieval.base import Retriever


class AsyncGeneratorBackend(Protocol):
    """A backend that continues one context at a time, concurrently with other calls."""

    async def generate_one(
        self,
        key: int,
        context: Sequence[int],
        max_new_tokens: int,
        stop: Sequence[str],
        params: SamplingParams,
        seed: int,
    ) -> Completion:
        """Continue ``context``; ``seed`` is the turn's seed (the backend derives the row's from it and ``key``)."""
        ...

    def reset(self) -> None: ...


class SearchBatcher:
    """Collects queries from concurrent samples into retriever calls (one in flight at a time)."""

    def __init__(self, retriever: Retriever, k: int) -> None:
        self.retriever, self.k = retriever, k
        self.pending: list[tuple[str, asyncio.Future[tuple[list[Passage], float, float]]]] = []
        self.busy = False
        self.call_sizes: list[int] = []  # queries per retriever call, for metrics and tests

    async def search(self, query: str) -> tuple[list[Passage], float, float]:
        """The passages for ``query``, the seconds of retriever time per query of its call, and the seconds
        this sample waited for them (queued behind a call in flight, then its own call)."""
        future: asyncio.Future[tuple[list[Passage], float, float]] = asyncio.get_running_loop().create_future()
        asked = time.perf_counter()
        self.pending.append((query, future))
        if not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self._drain())
        passages, share, _ = await future
        return passages, share, time.perf_counter() - asked

    async def _drain(self) -> None:
        try:
            while self.pending:
                await asyncio.sleep(0)  # samples finishing in this same tick join the call
                batch, self.pending = self.pending, []
                t0 = time.perf_counter()
                try:
                    results = await asyncio.to_thread(self.retriever.search, [q for q, _ in batch], self.k)
                except Exception as exc:  # every waiting sample sees the retriever's error
                    for _, future in batch:
                        future.set_exception(exc)
                    continue
                wait = time.perf_counter() - t0
                self.call_sizes.append(len(batch))
                for (_, future), passages in zip(batch, results, strict=True):
                    future.set_result((passages, wait / len(batch), wait))
        finally:
            self.busy = False


class AsyncRolloutEngine(RolloutEngine):
    """:class:`RolloutEngine` whose samples advance independently; ``backend`` must be asynchronous."""

    backend: AsyncGeneratorBackend  # type: ignore[assignment]

    def run(self, requests: Sequence[RolloutRequest], params: SamplingParams, seed: int) -> list[Trajectory]:
        """Roll out every request to the end; returns trajectories in request order."""
        return asyncio.run(self.arun(requests, params, seed))

    async def arun(self, requests: Sequence[RolloutRequest], params: SamplingParams, seed: int) -> list[Trajectory]:
        if not callable(getattr(self.backend, "generate_one", None)):
            raise TypeError(f"{type(self.backend).__name__} has no async generate_one; use RolloutEngine with it")
        rows = self._start(requests)
        self.backend.reset()
        self.batcher = SearchBatcher(self.retriever, self.limits.topk)
        await asyncio.gather(*(self._advance(key, row, params, seed) for key, row in enumerate(rows)))
        self.backend.reset()
        return [self._finish(r) for r in rows]

    async def _advance(self, key: int, row: _Row, params: SamplingParams, seed: int) -> None:
        """One sample from its prompt to its end, turn by turn, the same steps as a synchronous turn."""
        lim = self.limits
        stops = list(self.protocol.stop_strings)
        while row.finish is None:
            budget = min(lim.max_new_tokens, lim.max_context - len(row.ids))
            turn_seed = seed * 1_000_003 + len(row.turns)
            out = await self.backend.generate_one(key, row.ids, budget, stops, params, turn_seed)
            self._take(row, out)
            if row.finish is None and self._pending(row):
                passages, elapsed, wait = await self.batcher.search(row.turns[-1].query or "")
                self._inject_passages(row, passages, elapsed, wait)
            if row.force_after_search and row.finish is None:
                row.force_after_search = False
                self._end_or_force(row)

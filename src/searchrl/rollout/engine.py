"""The multi-turn rollout loop: generate, stop at an action, search, inject passages, continue.

Each sample keeps a small state (its ids, ``loss_mask`` and log-probs grow together). A token's mask
value is decided when it is appended and never rebuilt: 1 for tokens the policy sampled, 0 for the
prompt and for everything the environment injects (``<information>`` blocks, corrective messages,
forced-answer prefixes). Sampled tokens are never decoded and re-encoded; injected text is tokenized
once. All searches of a turn go to the retriever as one batched call.

Context budget rule: the total length never exceeds ``max_context``. An ``<information>`` block keeps
its opening and closing tags; its body is cut at token level so that ``answer_reserve`` tokens stay free
after it (passages come in rank order, so the lowest-ranked text goes first). When even the tags do not
fit, the sample ends with finish reason ``context``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from searchrl.data.protocols import Answer, Invalid, Search, TagProtocol
from searchrl.rollout.backend import Completion, GeneratorBackend, SamplingParams
from searchrl.types import Passage, Trajectory, Turn

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from searchrl.config import Config
    from searchrl.retrieval.base import Retriever


@dataclass(frozen=True)
class RolloutLimits:
    """Budgets of one rollout (all counts in tokens or turns)."""

    max_turns: int = 4  # policy turns, the forced-answer turn included
    max_searches: int = 3
    max_new_tokens: int = 128  # per policy turn
    max_context: int = 2048  # prompt + everything appended
    topk: int = 3
    answer_reserve: int = 64  # tokens kept free after an <information> block
    on_budget: Literal["force_answer", "stop"] = "force_answer"

    def __post_init__(self) -> None:
        if min(self.max_turns, self.max_new_tokens, self.max_context, self.topk) < 1 or self.max_searches < 0:
            raise ValueError(f"invalid rollout limits: {self}")

    @classmethod
    def from_config(cls, cfg: Config) -> RolloutLimits:
        """The ``rollout`` section's budgets, with ``retrieval.topk`` passages per search."""
        r = cfg.rollout
        return cls(
            max_turns=r.max_turns,
            max_searches=r.max_searches,
            max_new_tokens=r.max_new_tokens,
            max_context=r.max_context,
            topk=cfg.retrieval.topk,
            answer_reserve=r.answer_reserve,
            on_budget=r.on_budget,
        )


@dataclass
class _Row:
    example_id: str
    sample_index: int
    ids: list[int]
    prompt_len: int
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    answer: str | None = None
    finish: str | None = None
    forced: bool = False  # the answer prefix was injected; the next turn must answer
    force_after_search: bool = False  # budget reached on a valid search: inject its passages, then force

    def append(self, ids: Sequence[int], sampled: bool, logprobs: Sequence[float] | None = None) -> None:
        self.ids.extend(ids)
        self.loss_mask.extend([1 if sampled else 0] * len(ids))
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(ids))


@dataclass(frozen=True)
class RolloutRequest:
    example_id: str
    sample_index: int
    prompt_ids: list[int]


class RolloutEngine:
    """Runs batches of multi-turn rollouts with one backend, one retriever and one tag protocol."""

    def __init__(
        self,
        backend: GeneratorBackend,
        retriever: Retriever,
        tokenizer: PreTrainedTokenizerBase,
        protocol: TagProtocol,
        limits: RolloutLimits | None = None,
    ) -> None:
        self.backend = backend
        self.retriever = retriever
        self.tokenizer = tokenizer
        self.protocol = protocol
        self.limits = limits or RolloutLimits()
        head, _, tail = protocol.wrap_information("\x00").partition("\x00")
        self._info_head = self._encode(head)
        self._info_tail = self._encode(tail)
        self._corrective = self._encode(protocol.corrective_message)
        self._force = self._encode(protocol.force_answer_prefix)

    def with_limits(self, **changes: object) -> RolloutEngine:
        """The same engine (backend, retriever, tokenizer, protocol) with some budgets changed."""
        return type(self)(
            self.backend,
            self.retriever,
            self.tokenizer,
            self.protocol,
            replace(self.limits, **changes),  # type: ignore[arg-type]
        )

    def _decode(self, ids: Sequence[int], skip_special: bool) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=skip_special))

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def run(self, requests: Sequence[RolloutRequest], params: SamplingParams, seed: int) -> list[Trajectory]:
        """Roll out every request to the end; returns trajectories in request order."""
        rows = self._start(requests)
        self.backend.reset()
        turn = 0
        while True:
            active = [i for i, r in enumerate(rows) if r.finish is None]
            if not active:
                break
            self._generate_turn(rows, active, params, seed * 1_000_003 + turn)
            self._run_searches(rows, [i for i in active if rows[i].finish is None and self._pending(rows[i])])
            for i in active:
                if rows[i].force_after_search and rows[i].finish is None:
                    rows[i].force_after_search = False
                    self._end_or_force(rows[i])
            turn += 1
        self.backend.reset()
        return [self._finish(r) for r in rows]

    def _start(self, requests: Sequence[RolloutRequest]) -> list[_Row]:
        rows = [
            _Row(r.example_id, r.sample_index, list(r.prompt_ids), len(r.prompt_ids), [0] * len(r.prompt_ids))
            for r in requests
        ]
        for row in rows:
            row.logprobs = [0.0] * row.prompt_len
            if row.prompt_len >= self.limits.max_context:
                row.finish = "context"
        return rows

    # -- stages of a turn -------------------------------------------------------------------------
    def _generate_turn(self, rows: list[_Row], active: list[int], params: SamplingParams, seed: int) -> None:
        lim = self.limits
        budgets = [min(lim.max_new_tokens, lim.max_context - len(rows[i].ids)) for i in active]
        stops = list(self.protocol.stop_strings)
        outs = self.backend.generate(active, [rows[i].ids for i in active], budgets, stops, params, seed)
        for i, out in zip(active, outs, strict=True):
            self._take(rows[i], out)

    def _take(self, row: _Row, out: Completion) -> None:
        """Append what the policy sampled (mask 1) and act on the action it wrote."""
        row.append(out.token_ids, sampled=True, logprobs=out.logprobs)
        text = self._decode(out.token_ids, skip_special=True)
        if row.forced:
            text = self.protocol.force_answer_prefix + text
        action = self.protocol.parse_action(text)
        self._apply(row, action, len(out.token_ids), out.finish)

    def _apply(self, row: _Row, action: Search | Answer | Invalid, n_gen: int, finish: str) -> None:
        lim = self.limits
        if isinstance(action, Answer):
            row.turns.append(Turn("answer", n_gen))
            row.answer, row.finish = action.text, "answer"
            return
        if isinstance(action, Search) and not row.forced:
            row.turns.append(Turn("search", n_gen, query=action.query))
        else:
            reason = action.reason if isinstance(action, Invalid) else "search after the forced answer prefix"
            row.turns.append(Turn("invalid", n_gen, invalid_reason=reason))
        if row.forced or (finish == "eos" and isinstance(action, Invalid)):
            row.finish = "no_answer"  # the policy ended its response without a usable action
            return
        searches = sum(t.action == "search" for t in row.turns)
        over_budget = len(row.turns) >= lim.max_turns - (lim.on_budget == "force_answer")
        if isinstance(action, Search) and searches > lim.max_searches:
            over_budget = True
            row.turns[-1] = Turn("invalid", n_gen, query=action.query, invalid_reason="search budget exhausted")
        if over_budget and row.turns[-1].action == "search":
            row.force_after_search = True
        elif over_budget:
            self._end_or_force(row)
        elif isinstance(action, Invalid):
            self._inject(row, self._corrective)

    def _end_or_force(self, row: _Row) -> None:
        no_turn_left = len(row.turns) >= self.limits.max_turns
        if self.limits.on_budget == "stop" or no_turn_left or not self._room_for(row, len(self._force) + 1):
            row.finish = "max_turns"
            return
        self._inject(row, self._force)
        row.forced = True

    def _pending(self, row: _Row) -> bool:
        last = row.turns[-1] if row.turns else None
        return bool(last and last.action == "search" and not row.forced and last.injected == 0)

    def _run_searches(self, rows: list[_Row], searching: list[int]) -> None:
        if not searching:
            return
        queries = [rows[i].turns[-1].query or "" for i in searching]
        t0 = time.perf_counter()
        results = self.retriever.search(queries, self.limits.topk)
        wait = time.perf_counter() - t0
        for i, passages in zip(searching, results, strict=True):
            self._inject_passages(rows[i], passages, wait / len(searching), wait)

    def _inject_passages(self, row: _Row, passages: list[Passage], elapsed: float, wait: float) -> None:
        lim = self.limits
        body = self._encode(self.protocol.format_passages(passages))
        room = lim.max_context - len(row.ids) - lim.answer_reserve - len(self._info_head) - len(self._info_tail)
        last = row.turns[-1]
        if room < 1:
            row.finish = "context"
            return
        block = self._info_head + body[:room] + self._info_tail
        row.append(block, sampled=False)
        row.turns[-1] = replace(
            last,
            injected=len(block),
            passage_ids=tuple(p.id for p in passages),
            retrieval_s=elapsed,
            search_wait_s=wait,
        )

    def _room_for(self, row: _Row, n: int) -> bool:
        return len(row.ids) + n <= self.limits.max_context

    def _inject(self, row: _Row, ids: list[int]) -> None:
        if not self._room_for(row, len(ids) + 1):
            row.finish = "context"
            return
        row.append(ids, sampled=False)
        row.turns[-1] = replace(row.turns[-1], injected=row.turns[-1].injected + len(ids))

    def _finish(self, row: _Row) -> Trajectory:
        traj = Trajectory(
            example_id=row.example_id,
            sample_index=row.sample_index,
            ids=row.ids,
            loss_mask=row.loss_mask,
            logprobs=row.logprobs,
            prompt_len=row.prompt_len,
            turns=row.turns,
            answer=row.answer,
            finish_reason=row.finish or "context",
            response_text=self._decode(row.ids[row.prompt_len :], skip_special=False),
        )
        traj.check()
        return traj

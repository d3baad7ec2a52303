"""Records that cross module boundaries. Plain frozen dataclasses; no behaviour beyond formatting."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Passage:
    """One retrievable unit of text.

    ``score`` is set by a retriever (higher is better; BM25 score or inner product), None otherwise.
    """

    id: str
    title: str
    text: str
    score: float | None = None

    @property
    def contents(self) -> str:
        """Search-R1's serialization: the quoted title on the first line, then the text."""
        return f'"{self.title}"\n{self.text}' if self.title else self.text

    @classmethod
    def from_contents(cls, id: str, contents: str, score: float | None = None) -> Passage:
        """Inverse of :attr:`contents` (a first line in double quotes is the title)."""
        first, sep, rest = contents.partition("\n")
        if sep and len(first) >= 2 and first.startswith('"') and first.endswith('"'):
            return cls(id=id, title=first[1:-1], text=rest, score=score)
        return cls(id=id, title="", text=contents, score=score)

    def with_score(self, score: float) -> Passage:
        return replace(self, score=score)


@dataclass(frozen=True, slots=True)
class QAExample:
    """A question with its gold answers.

    ``id`` is unique across datasets (``<dataset>/<native id>``); ``answers`` holds every accepted
    alias, the first one being canonical. ``supporting_ids`` names gold passages when the source has them.
    """

    id: str
    question: str
    answers: tuple[str, ...]
    dataset: str
    supporting_ids: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Turn:
    """One policy turn of a rollout: what the policy did and what the environment answered.

    ``action`` is "search", "answer" or "invalid"; ``generated`` / ``injected`` count the tokens the
    policy sampled in this turn and the tokens the environment appended after it (passages, corrective
    messages, forced-answer prefixes), all masked out of the loss.
    """

    action: str
    generated: int
    injected: int = 0
    query: str | None = None
    passage_ids: tuple[str, ...] = ()
    retrieval_s: float = 0.0  # this search's share of its retriever call (call seconds / queries in it)
    search_wait_s: float = 0.0  # how long this sample waited for its passages (its whole call, and any queue)
    invalid_reason: str | None = None


@dataclass(slots=True)
class Trajectory:
    """A finished multi-turn rollout of one sample, token-exact.

    All per-token lists have length T = ``len(ids)`` (prompt included):
    ``loss_mask[t] = 1`` exactly when token t was sampled by the policy in this rollout (0 for the
    prompt, injected ``<information>`` blocks, corrective messages and forced prefixes);
    ``attention_mask`` is 1 for every real token (padding is added only when batching);
    ``logprobs[t]`` is the sampling log-prob of a policy token, 0.0 elsewhere.
    """

    example_id: str
    sample_index: int
    ids: list[int]
    loss_mask: list[int]
    logprobs: list[float]
    prompt_len: int
    turns: list[Turn]
    answer: str | None
    finish_reason: str
    response_text: str = ""

    @property
    def attention_mask(self) -> list[int]:
        return [1] * len(self.ids)

    @property
    def n_searches(self) -> int:
        return sum(1 for t in self.turns if t.action == "search")

    @property
    def n_invalid(self) -> int:
        return sum(1 for t in self.turns if t.action == "invalid")

    @property
    def n_policy_tokens(self) -> int:
        return sum(self.loss_mask)

    def check(self) -> None:
        """Raise ValueError if the per-token fields disagree in length or the prompt is not masked."""
        n = len(self.ids)
        if not (len(self.loss_mask) == len(self.logprobs) == n):
            raise ValueError(
                f"trajectory {self.example_id}: ids {n}, loss_mask {len(self.loss_mask)}, logprobs {len(self.logprobs)}"
            )
        if any(self.loss_mask[: self.prompt_len]):
            raise ValueError(f"trajectory {self.example_id}: prompt tokens carry loss_mask=1")

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

"""Rollout test doubles: an in-memory keyword retriever over a four-passage corpus, a scripted engine."""

from __future__ import annotations

from collections.abc import Sequence

from searchrl.data.protocols import PROTOCOLS
from searchrl.rollout.backend import SamplingParams
from searchrl.rollout.engine import RolloutEngine, RolloutLimits
from searchrl.rollout.scripted import ScriptedBackend
from searchrl.types import Passage

GREEDY = SamplingParams(greedy=True)


class KeywordRetriever:
    """In-memory retriever: ranks passages by shared lowercase words with the query."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        self.passages = list(passages)
        self.calls: list[list[str]] = []

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        self.calls.append(list(queries))
        out = []
        for q in queries:
            words = set(q.lower().split())
            scored = sorted(
                self.passages, key=lambda p: (-len(words & set((p.title + " " + p.text).lower().split())), p.id)
            )
            out.append([p.with_score(1.0) for p in scored[:k]])
        return out


CORPUS = [
    Passage("p1", "Varnholt", "Varnholt is a city founded in 1712 on the river Oss."),
    Passage("p2", "Ilse Marrow", "Ilse Marrow was born in Varnholt and founded the Quillon Company."),
    Passage("p3", "Quillon Company", "The Quillon Company makes brass instruments."),
    Passage("p4", "Tessaly", "Tessaly is a village of weavers."),
]


def make_engine(tokenizer, scripts, limits=None, protocol="search_r1"):  # type: ignore[no-untyped-def]
    """A :class:`RolloutEngine` over a :class:`ScriptedBackend` of ``scripts`` and a :class:`KeywordRetriever`."""
    backend = ScriptedBackend(tokenizer, scripts)
    retriever = KeywordRetriever(CORPUS)
    engine = RolloutEngine(backend, retriever, tokenizer, PROTOCOLS[protocol], limits or RolloutLimits())
    return engine, backend, retriever


def prompt_ids(tokenizer, question: str) -> list[int]:  # type: ignore[no-untyped-def]
    return list(tokenizer(f"Question: {question}\n", add_special_tokens=False)["input_ids"])

"""Retrieval quality: recall@k of gold passages, matched by title (as HotpotQA's ``supporting_facts``
and MuSiQue's ``is_supporting`` paragraphs name them)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from searchrl.retrieval.base import Retriever
from searchrl.types import Passage


def title_recall(results: Sequence[Sequence[Passage]], gold_titles: Sequence[Collection[str]]) -> list[float]:
    """Per question: the share of its gold titles found among its retrieved passages' titles.

    ``results[i]`` are the passages retrieved for question i (already cut to k); ``gold_titles[i]`` must
    not be empty.
    """
    if len(results) != len(gold_titles):
        raise ValueError(f"{len(results)} result lists for {len(gold_titles)} gold title sets")
    recalls = []
    for i, (passages, gold) in enumerate(zip(results, gold_titles, strict=True)):
        want = set(gold)
        if not want:
            raise ValueError(f"question {i} has no gold titles")
        recalls.append(len(want & {p.title for p in passages}) / len(want))
    return recalls


def recall_at_k(
    retriever: Retriever, questions: Sequence[str], gold_titles: Sequence[Collection[str]], k: int
) -> float:
    """Mean over questions of the share of gold titles among the top ``k`` (one batched search)."""
    if not questions:
        raise ValueError("recall needs at least one question")
    recalls = title_recall(retriever.search(list(questions), k), gold_titles)
    return sum(recalls) / len(recalls)

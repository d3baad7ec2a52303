"""Retrieval quality: recall@k of gold passages (matched by title, as HotpotQA's supporting facts are)."""

from __future__ import annotations

from collections.abc import Sequence

from searchrl.retrieval.base import Retriever


def recall_at_k(retriever: Retriever, questions: Sequence[str], gold_titles: Sequence[set[str]], k: int) -> float:
    """Mean over questions of |gold titles among the top-k titles| / |gold titles|."""
    if len(questions) != len(gold_titles) or not questions:
        raise ValueError("need one non-empty gold title set per question")
    hits = []
    for passages, gold in zip(retriever.search(list(questions), k), gold_titles, strict=True):
        got = {p.title for p in passages}
        hits.append(len(gold & got) / len(gold))
    return sum(hits) / len(hits)

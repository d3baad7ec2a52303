"""Hybrid retrieval: BM25 and dense results fused by reciprocal rank (Cormack et al., 2009).

Each retriever returns its top ``depth`` passages; a passage's fused score is
``sum over retrievers of 1 / (rrf_k + rank)`` (rank 1 is the best, a retriever that did not return the
passage adds nothing), and the top ``k`` by fused score are returned with that score. Ties keep the
first retriever's order. Passages are matched by id, so both retrievers must index the same passages
(a hybrid index folder holds one store for both). RRF needs no score calibration between BM25's
unbounded scores and cosine similarities, which is why it is the usual fusion for this pair.
"""

from __future__ import annotations

from collections.abc import Sequence

from searchrl.retrieval.base import Retriever
from searchrl.types import Passage


def rrf_fuse(ranked: Sequence[Sequence[Passage]], k: int, rrf_k: int = 60) -> list[Passage]:
    """Fuse several ranked lists for one query; the top ``k`` with their RRF score."""
    scores: dict[str, float] = {}
    first: dict[str, Passage] = {}
    for row in ranked:
        for rank, p in enumerate(row, 1):
            scores[p.id] = scores.get(p.id, 0.0) + 1.0 / (rrf_k + rank)
            first.setdefault(p.id, p)
    order = sorted(scores, key=lambda pid: -scores[pid])  # stable: first-seen order breaks ties
    return [first[pid].with_score(scores[pid]) for pid in order[:k]]


class HybridRetriever:
    """A :class:`Retriever` fusing ``sparse`` (BM25) and ``dense`` by reciprocal rank."""

    def __init__(self, sparse: Retriever, dense: Retriever, *, rrf_k: int = 60, depth: int = 50) -> None:
        if rrf_k < 1 or depth < 1:
            raise ValueError(f"rrf_k and depth must be at least 1, got {rrf_k} and {depth}")
        self.sparse = sparse
        self.dense = dense
        self.rrf_k = rrf_k
        self.depth = depth
        self.passages = getattr(sparse, "passages", None)

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """Top-``k`` fused passages per query, best first, ``score`` the RRF score."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not queries:
            return []
        depth = max(k, self.depth)
        sparse = self.sparse.search(queries, depth)
        dense = self.dense.search(queries, depth)
        return [rrf_fuse([s, d], k, self.rrf_k) for s, d in zip(sparse, dense, strict=True)]

"""The retriever protocol every backend implements (in process, over HTTP, or on the web)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from searchrl.types import Passage


class RetrievalError(RuntimeError):
    """A retriever could not answer (dead server after retries, bad index, provider error)."""


@runtime_checkable
class Retriever(Protocol):
    """Anything that answers a batch of queries with ranked passages.

    Implementations: :class:`~searchrl.retrieval.bm25.BM25Retriever`,
    :class:`~searchrl.retrieval.dense.retriever.DenseRetriever`, the HTTP client and the web-search adapter.
    A failure to answer raises :class:`RetrievalError`.
    """

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """Top-``k`` passages for each query, best first, each with ``score`` set (batched)."""
        ...

"""The tantivy BM25 engine (PyPI ``tantivy``, the Rust search library): block-max WAND over memory-mapped
segments, built with several writer threads.

Tantivy indexes the tokens :func:`searchrl.retrieval.bm25.tokenize` makes (joined by spaces, split again by
tantivy's whitespace tokenizer), so the vocabulary, stopwords and stemming are those of the bm25s engines.
A query is a disjunction of one term query per token (a repeated token counts twice, as in bm25s). Each
document carries its store row in a fast field, read back for the hits.

Deviations from the bm25s engines' BM25, all tantivy's and not settable from Python: ``k1`` is 1.2 and
``b`` 0.75 whatever the index was built with; document lengths are stored in one byte (exact up to 40
tokens, then in buckets that grow with length), so scores and ranks are close to, not equal to, exact
BM25; scores carry tantivy's ``(1 + k1)`` factor. Top-10 agreement with exhaustive BM25 is therefore a
recall (``benchmarks/retrieval_bm25_engines.py`` measures it). Passages matching no query term are not
returned by tantivy; the result is padded with the lowest unreturned rows at score 0, as bm25s pads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from searchrl.retrieval.base import RetrievalError

TANTIVY_DIR = "tantivy"
K1, B = 1.2, 0.75  # tantivy's constants (tantivy::query::bm25)
WRITER_HEAP_PER_THREAD = 128 * 1024 * 1024  # bytes buffered per writer thread before a segment is flushed


def _schema() -> Any:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("row", fast=True)
    builder.add_text_field("body", tokenizer_name="whitespace", index_option="freq")
    return builder.build()


class TantivyEngine:
    """A tantivy index over tokenized passages (on disk in ``tantivy/`` or in memory)."""

    name: Literal["tantivy"] = "tantivy"

    def __init__(self, index: Any) -> None:
        index.reload()
        self.index = index
        self.schema = index.schema
        self.searcher = index.searcher()
        self.n_docs = int(self.searcher.num_docs)

    @classmethod
    def build(
        cls,
        token_batches: Iterable[Sequence[Sequence[str]]],
        path: Path | None,
        *,
        n_threads: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> TantivyEngine:
        """Index every batch's token lists, rows numbered in order, into ``path`` (a new folder; None:
        in memory) with ``n_threads`` writer threads (0: tantivy's choice)."""
        import os

        import tantivy

        threads = n_threads or min(8, os.cpu_count() or 1)
        if path is not None:
            path.mkdir(parents=True, exist_ok=False)
        index = tantivy.Index(_schema(), path=None if path is None else str(path))
        writer = index.writer(heap_size=WRITER_HEAP_PER_THREAD * threads, num_threads=threads)
        row = 0
        for batch in token_batches:
            for words in batch:
                doc = tantivy.Document()  # the keyword constructor would type the row as i64
                doc.add_unsigned("row", row)
                doc.add_text("body", " ".join(words))
                writer.add_document(doc)
                row += 1
            if progress:
                progress(len(batch))
        writer.commit()
        writer.wait_merging_threads()
        return cls(index)

    @classmethod
    def load(cls, directory: Path) -> TantivyEngine:
        """The engine over ``directory/tantivy`` (an index folder built with the tantivy engine)."""
        import tantivy

        path = directory / TANTIVY_DIR
        if not (path.is_dir() and tantivy.Index.exists(str(path))):
            raise RetrievalError(
                f"{directory} has no tantivy index ({TANTIVY_DIR}/): it was built without the tantivy engine "
                "(every folder built before it existed is). Serve it with retrieval.bm25_engine=sparse, or add "
                "the engine with searchrl.retrieval.bm25.add_engine(folder, 'tantivy') or a rebuild"
            )
        return cls(tantivy.Index.open(str(path)))

    @property
    def params(self) -> dict[str, Any]:
        return {"k1": K1, "b": B, "method": "tantivy", "engine": self.name}

    def top_k(self, tokens: Sequence[Sequence[str]], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows [Q, k] int64, scores [Q, k] float32), best first; see the module docstring for padding."""
        import tantivy

        rows = np.zeros((len(tokens), k), np.int64)
        scores = np.zeros((len(tokens), k), np.float32)
        for i, words in enumerate(tokens):
            hits: list[tuple[float, Any]] = []
            if words:
                terms = [tantivy.Query.term_query(self.schema, "body", w, index_option="freq") for w in words]
                query = tantivy.Query.boolean_query([(tantivy.Occur.Should, t) for t in terms])
                hits = self.searcher.search(query, limit=k, count=False).hits
            found = self.searcher.fast_field_values("row", [addr for _, addr in hits]) if hits else []
            rows[i, : len(found)] = found
            scores[i, : len(found)] = [score for score, _ in hits]
            if len(found) < k:
                rows[i, len(found) :] = _pad(set(found), k - len(found))
        return rows, scores


def _pad(taken: set[int], n: int) -> list[int]:
    """The ``n`` lowest rows not in ``taken``."""
    out: list[int] = []
    row = 0
    while len(out) < n:
        if row not in taken:
            out.append(row)
        row += 1
    return out

"""BM25 over a passage list, built on ``bm25s`` (sparse precomputed scores, batched top-k).

Tokenization: lowercase word tokens of two or more characters, English stopwords removed, and the
Snowball stemmer when ``PyStemmer`` is installed (it is optional; without it words are not stemmed).
Title and text are indexed together, as Search-R1's ``contents`` field is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from searchrl.types import Passage


def _stemmer() -> Any:
    try:
        import Stemmer  # PyStemmer, optional
    except ImportError:
        return None
    return Stemmer.Stemmer("english")


class BM25Retriever:
    """In-process BM25. ``search`` is batched; scores are BM25 (higher is better)."""

    def __init__(self, passages: Sequence[Passage], model: Any, stemmed: bool) -> None:
        self.passages = list(passages)
        self.model = model
        self.stemmed = stemmed
        self._stem = _stemmer() if stemmed else None

    @classmethod
    def build(
        cls, passages: Sequence[Passage], k1: float = 1.5, b: float = 0.75, progress: bool = False
    ) -> BM25Retriever:
        import bm25s

        if not passages:
            raise ValueError("cannot build a BM25 index over an empty corpus")
        stem = _stemmer()
        tokens = bm25s.tokenize(
            [f"{p.title}\n{p.text}" for p in passages], stopwords="en", stemmer=stem, show_progress=progress
        )
        model = bm25s.BM25(k1=k1, b=b)
        model.index(tokens, show_progress=progress)
        return cls(passages, model, stemmed=stem is not None)

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        import bm25s

        if not queries:
            return []
        k = max(1, min(k, len(self.passages)))
        words = bm25s.tokenize(list(queries), stopwords="en", stemmer=self._stem, show_progress=False, return_ids=False)
        # unknown words are dropped; a query left empty (only stopwords) scores 0 everywhere
        known = [[w for w in ws if w and w in self.model.vocab_dict] for ws in words]
        docs, scores = self.model.retrieve(known, k=k, show_progress=False, n_threads=1)
        out = []
        for row_docs, row_scores in zip(docs, scores, strict=True):
            out.append([self.passages[int(d)].with_score(float(s)) for d, s in zip(row_docs, row_scores, strict=True)])
        return out

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.model.save(str(directory / "bm25"), show_progress=False)
        (directory / "bm25" / "searchrl.json").write_text(json.dumps({"stemmed": self.stemmed}))

    @classmethod
    def load(cls, directory: str | Path, passages: Sequence[Passage]) -> BM25Retriever:
        import bm25s

        directory = Path(directory)
        model = bm25s.BM25.load(str(directory / "bm25"), show_progress=False)
        meta = json.loads((directory / "bm25" / "searchrl.json").read_text())
        if meta["stemmed"] and _stemmer() is None:
            raise RuntimeError("this BM25 index was built with PyStemmer; install it: pip install PyStemmer")
        return cls(passages, model, stemmed=bool(meta["stemmed"]))

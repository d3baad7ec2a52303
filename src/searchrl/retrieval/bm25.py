"""BM25 over a passage list, built on ``bm25s`` (BM25 scores precomputed into a sparse matrix at index
time, so a query costs one sparse row sum and a top-k selection).

Tokenization, the same for passages and queries: lowercase word tokens of two or more characters,
bm25s's English stopwords removed, and the Snowball English stemmer when ``PyStemmer`` is installed
(optional; ``stem=None`` uses it if present, and an index records whether it was stemmed). Title and
text are indexed together, as Search-R1 indexes its ``contents`` field. Scores are bm25s's (Lucene
variant, ``k1`` 1.5, ``b`` 0.75 by default): higher is better.

A batch of queries is tokenized in one call and scored by one ``retrieve`` call. Queries run one after
another by default (``n_threads=0``): bm25s's per-query work holds the GIL, and threads measured no
faster on a 9,000-passage corpus; raise ``n_threads`` for corpora of millions of passages, where each
query's dense score row is large.

For corpora that do not fit in memory, :meth:`BM25Retriever.build_folder` builds the same index over a
stream of batches (:mod:`searchrl.retrieval.bm25_stream`), and :meth:`BM25Retriever.load` with
``mmap`` maps its score arrays; passage text then comes from the on-disk store, by row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.ondisk.store import STORE_FILE, PassageStore, fetch, write_store
from searchrl.types import Passage

META_FILE = "searchrl_bm25.json"


def stemmer_available() -> bool:
    """Whether ``PyStemmer`` (the optional stemmer) is installed."""
    import importlib.util

    return importlib.util.find_spec("Stemmer") is not None


def _stemmer(stem: bool) -> Any:
    """PyStemmer's English stemmer, or None when ``stem`` is false."""
    if not stem:
        return None
    if not stemmer_available():
        raise RetrievalError("stemmed BM25 needs PyStemmer: pip install PyStemmer (or build with stem=False)")
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(texts: Sequence[str], stemmer: Any = None, progress: bool = False) -> list[list[str]]:
    """Word tokens per text (see the module docstring); a text of only stopwords gives ``[]``."""
    import bm25s

    tokens = bm25s.tokenize(
        list(texts), lower=True, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=progress
    )
    return [list(t) for t in tokens]


def tokenize_ids(texts: Sequence[str], stemmer: Any = None) -> tuple[list[list[int]], dict[str, int]]:
    """The tokens of :func:`tokenize` as ids into this call's vocabulary (word -> id); cheaper in bulk."""
    import bm25s

    ids, vocab = bm25s.tokenize(
        list(texts), lower=True, stopwords="en", stemmer=stemmer, return_ids=True, show_progress=False
    )
    return ids, vocab


class BM25Retriever:
    """In-process BM25 over ``passages``; :meth:`search` is batched.

    Build with :meth:`build` (in memory) or :meth:`build_folder` (streaming, to disk), persist with
    :meth:`save` / :meth:`load` (the folder holds bm25s's arrays in ``bm25/``, the passage store and a
    small json with the tokenization settings).
    """

    def __init__(self, passages: Sequence[Passage], model: Any, *, stemmed: bool, n_threads: int = 0) -> None:
        self.passages = passages if isinstance(passages, PassageStore) else list(passages)
        self.model = model
        self.stemmed = stemmed
        self.n_threads = n_threads
        self._stemmer = _stemmer(stemmed)

    @classmethod
    def build(
        cls,
        passages: Sequence[Passage],
        *,
        k1: float = 1.5,
        b: float = 0.75,
        stem: bool | None = None,
        n_threads: int = 0,
        progress: bool = False,
    ) -> BM25Retriever:
        """Index ``passages``; ``stem=None`` stems when PyStemmer is installed."""
        import bm25s

        if not passages:
            raise ValueError("cannot build a BM25 index over an empty corpus")
        stemmed = stemmer_available() if stem is None else stem
        tokens = tokenize([f"{p.title}\n{p.text}" for p in passages], _stemmer(stemmed), progress)
        model = bm25s.BM25(k1=k1, b=b)
        model.index(tokens, show_progress=progress)
        return cls(passages, model, stemmed=stemmed, n_threads=n_threads)

    @staticmethod
    def build_folder(
        store: PassageStore,
        directory: str | Path,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        stem: bool | None = None,
        batch: int = 20_000,
        progress: Any = None,
    ) -> dict[str, Any]:
        """Index every passage of ``store`` into ``directory`` in bounded memory (``bm25/`` and the meta
        json; the caller puts the store beside them); ``progress(n)`` after each batch. Returns counts."""
        from searchrl.retrieval.bm25_stream import build_bm25_stream

        stemmed = stemmer_available() if stem is None else stem
        stemmer = _stemmer(stemmed)
        directory = Path(directory)
        info = build_bm25_stream(
            store.batches(batch),
            directory / "bm25",
            lambda texts: tokenize_ids(texts, stemmer),
            k1=k1,
            b=b,
            progress=progress,
        )
        (directory / META_FILE).write_text(json.dumps({"stemmed": stemmed, "n_passages": info["n_docs"]}))
        return {**info, "params": {"k1": k1, "b": b, "method": "lucene", "stemmed": stemmed}}

    @property
    def params(self) -> dict[str, Any]:
        """The settings that shape the scores (recorded in index manifests)."""
        return {"k1": self.model.k1, "b": self.model.b, "method": self.model.method, "stemmed": self.stemmed}

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """Top-``k`` passages per query (``k`` capped at the corpus size), best first, BM25 ``score`` set.

        A query with no indexed word (empty, only stopwords, unknown words) scores 0 everywhere and gets
        ``k`` arbitrary passages with score 0.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not queries:
            return []
        k = min(k, len(self.passages))
        vocab = self.model.vocab_dict
        # bm25s rejects words it has not indexed: keep only the known ones
        known = [[w for w in words if w in vocab] for words in tokenize(queries, self._stemmer)]
        docs, scores = self.model.retrieve(known, k=k, show_progress=False, n_threads=self.n_threads)
        return [
            [p.with_score(s) for p, s in zip(fetch(self.passages, row_docs.tolist()), row_scores.tolist(), strict=True)]
            for row_docs, row_scores in zip(docs, scores, strict=True)
        ]

    def save(self, directory: str | Path) -> None:
        """Write the index into ``directory`` (created if needed): ``bm25/``, the meta json, the store."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(str(directory / "bm25"), show_progress=False)
        (directory / META_FILE).write_text(json.dumps({"stemmed": self.stemmed, "n_passages": len(self.passages)}))
        store = directory / STORE_FILE
        if not (isinstance(self.passages, PassageStore) and self.passages.path.resolve() == store.resolve()):
            write_store(self.passages, store, dedupe=False)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        passages: Sequence[Passage] | None = None,
        *,
        n_threads: int = 0,
        mmap: bool = False,
    ) -> BM25Retriever:
        """Read a folder written by :meth:`save`; pass ``passages`` when already read (saves a re-read).

        ``mmap`` memory-maps the score arrays instead of reading them (large indexes).
        """
        import bm25s

        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise RetrievalError(f"{directory} holds no BM25 index ({META_FILE} is missing)")
        meta = json.loads(meta_path.read_text())
        passages = PassageStore(directory / STORE_FILE) if passages is None else passages
        model = bm25s.BM25.load(str(directory / "bm25"), mmap=mmap, show_progress=False)
        n_docs = int(model.scores["num_docs"])
        if n_docs != len(passages) or meta.get("n_passages", n_docs) != n_docs:
            raise RetrievalError(f"BM25 index in {directory} holds {n_docs} passages, but {len(passages)} were given")
        return cls(passages, model, stemmed=bool(meta["stemmed"]), n_threads=n_threads)

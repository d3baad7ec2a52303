"""BM25 over a passage list, scored by an engine picked by name (:mod:`searchrl.retrieval.bm25_engines`:
bm25s's precomputed score matrix summed by numba or numpy, or tantivy).

Tokenization, the same for passages and queries and for every engine: lowercase word tokens of two or more
characters, bm25s's English stopwords removed, and the Snowball English stemmer when ``PyStemmer`` is
installed (optional; ``stem=None`` uses it if present, and an index records whether it was stemmed).
Title and text are indexed together, as Search-R1 indexes its ``contents`` field. Scores are bm25s's
(Lucene variant, ``k1`` 1.5, ``b`` 0.75 by default; tantivy's own constants for tantivy): higher is better.

A batch of queries is de-duplicated (:func:`~searchrl.retrieval.query_cache.dedupe`: each distinct
normalized query is scored once and its row fanned out), tokenized in one call, scored in one engine call,
and its passages fetched from the store in one query. ``n_threads`` > 1 spreads a batch over threads (the
numba kernel's own, or numpy's thread pool); by default queries run one after another on one core.

For corpora that do not fit in memory, :meth:`BM25Retriever.build_folder` builds the same index over a
stream of batches (:mod:`searchrl.retrieval.bm25_stream`, plus the tantivy engine's files when asked for),
and :meth:`BM25Retriever.load` with ``mmap`` maps its arrays; passage text then comes from the on-disk
store, by row. Folders built before the engines existed hold the bm25s arrays only: numba and numpy load
them; tantivy says how to add its files (:meth:`BM25Retriever.add_engine`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.bm25_engines import BM25S_DIR, DEFAULT_BM25_ENGINE, ENGINES, BM25Engine, Bm25sEngine, Engine
from searchrl.retrieval.bm25_tantivy import TANTIVY_DIR, TantivyEngine
from searchrl.retrieval.ondisk.store import STORE_FILE, PassageStore, fetch, write_store
from searchrl.retrieval.query_cache import SearchStats, dedupe, fan_out
from searchrl.types import Passage

META_FILE = "searchrl_bm25.json"


def stemmer_available() -> bool:
    """Whether ``PyStemmer`` (the optional stemmer) is installed."""
    import importlib.util

    return importlib.util.find_spec("Stemmer") is not None


def english_stemmer(stem: bool) -> Any:
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


def passage_texts(passages: Sequence[Passage]) -> list[str]:
    """What BM25 indexes of each passage: title and text."""
    return [f"{p.title}\n{p.text}" for p in passages]


class BM25Retriever:
    """In-process BM25 over ``passages``; :meth:`search` is batched.

    Build with :meth:`build` (in memory) or :meth:`build_folder` (streaming, to disk), persist with
    :meth:`save` / :meth:`load` (the folder holds the engine's files — ``bm25/`` for bm25s, ``tantivy/``
    for tantivy — the passage store and a small json with the tokenization settings). ``index_id`` names
    the passages, the scoring settings and the engine (stable across loads of one folder; random for an
    index built in memory), for caches; ``stats`` counts queries.
    """

    def __init__(
        self,
        passages: Sequence[Passage],
        engine: Engine,
        *,
        stemmed: bool,
        directory: Path | None = None,
        mmap: bool = False,
    ) -> None:
        self.passages = passages if isinstance(passages, PassageStore) else list(passages)
        self.engine = engine
        self.stemmed = stemmed
        self.directory = directory  # the folder the engine was loaded from, for with_engine
        self.mmap = mmap
        self._stemmer = english_stemmer(stemmed)
        self.stats = SearchStats()
        self._stats_lock = threading.Lock()
        content = self.passages.fingerprint if isinstance(self.passages, PassageStore) else f"memory:{uuid.uuid4()}"
        key = json.dumps([content, self.params], sort_keys=True)
        self.index_id = hashlib.sha256(key.encode()).hexdigest()[:16]

    @classmethod
    def build(
        cls,
        passages: Sequence[Passage],
        *,
        k1: float = 1.5,
        b: float = 0.75,
        stem: bool | None = None,
        engine: BM25Engine = DEFAULT_BM25_ENGINE,
        n_threads: int = 0,
        progress: bool = False,
    ) -> BM25Retriever:
        """Index ``passages`` in memory with ``engine``; ``stem=None`` stems when PyStemmer is installed."""
        if not passages:
            raise ValueError("cannot build a BM25 index over an empty corpus")
        stemmed = stemmer_available() if stem is None else stem
        tokens = tokenize(passage_texts(passages), english_stemmer(stemmed), progress)
        return cls(passages, ENGINES[engine].build(tokens, k1, b, n_threads), stemmed=stemmed)

    @staticmethod
    def build_folder(
        store: PassageStore,
        directory: str | Path,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        stem: bool | None = None,
        batch: int = 20_000,
        engines: Sequence[BM25Engine] = (DEFAULT_BM25_ENGINE,),
        progress: Any = None,
    ) -> dict[str, Any]:
        """Index every passage of ``store`` into ``directory`` in bounded memory: the bm25s arrays
        (``bm25/``, always: numba, numpy and hybrid indexes read them), the tantivy index when
        ``engines`` names it, and the meta json (the caller puts the store beside them);
        ``progress(n)`` after each batch. Returns counts."""
        from searchrl.retrieval.bm25_stream import build_bm25_stream

        stemmed = stemmer_available() if stem is None else stem
        stemmer = english_stemmer(stemmed)
        directory = Path(directory)
        info = build_bm25_stream(
            store.batches(batch),
            directory / BM25S_DIR,
            lambda texts: tokenize_ids(texts, stemmer),
            k1=k1,
            b=b,
            progress=progress,
        )
        (directory / META_FILE).write_text(json.dumps({"stemmed": stemmed, "n_passages": info["n_docs"]}))
        if "tantivy" in engines:
            _build_tantivy(store, directory / TANTIVY_DIR, stemmer, batch)
        return {**info, "params": {"k1": k1, "b": b, "method": "lucene", "stemmed": stemmed}}

    @staticmethod
    def add_engine(directory: str | Path, engine: BM25Engine, *, batch: int = 20_000) -> None:
        """Add ``engine``'s files to an index folder built without them (tantivy; numba and numpy read the
        bm25s arrays every folder has), from its passage store; written aside, then renamed into place."""
        directory = Path(directory)
        if ENGINES[engine].folder == BM25S_DIR or (directory / TANTIVY_DIR).exists():
            return
        stemmer = english_stemmer(bool(_read_meta(directory)["stemmed"]))
        tmp = directory / f".{TANTIVY_DIR}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        store = PassageStore(directory / STORE_FILE)
        try:
            _build_tantivy(store, tmp, stemmer, batch)
        finally:
            store.close()
        tmp.rename(directory / TANTIVY_DIR)

    @property
    def params(self) -> dict[str, Any]:
        """The settings that shape the scores (recorded in index manifests), the engine's name included."""
        return {**self.engine.params, "stemmed": self.stemmed}

    def with_engine(self, name: BM25Engine, n_threads: int = 0) -> BM25Retriever:
        """This index scored by engine ``name`` (bm25s backends share the arrays; others load their files)."""
        if name == self.engine.name:
            return self
        if isinstance(self.engine, Bm25sEngine) and name != "tantivy":
            engine: Engine = self.engine.with_backend(name)
        elif self.directory is None:
            raise RetrievalError(f"an index built in memory cannot switch to engine {name}; build it with that engine")
        else:
            engine = _matching(ENGINES[name].load(self.directory, self.mmap, n_threads), self.passages, self.directory)
        return BM25Retriever(self.passages, engine, stemmed=self.stemmed, directory=self.directory, mmap=self.mmap)

    def query_tokens(self, queries: Sequence[str]) -> list[list[str]]:
        """The tokens the engine scores for each query (lower-cased words, stopwords out, stemmed when the
        index is)."""
        return tokenize(queries, self._stemmer)

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """Top-``k`` passages per query (``k`` capped at the corpus size), best first, BM25 ``score`` set.

        A query with no indexed word (empty, only stopwords, unknown words) scores 0 everywhere and gets
        the first ``k`` passages with score 0. Duplicate queries (after whitespace normalization) are
        scored once; each gets its own list of the same passages.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not queries:
            return []
        k = min(k, len(self.passages))
        unique, where = dedupe(queries)
        rows, scores = self.engine.top_k(self.query_tokens(unique), k)
        wanted = sorted(set(rows.ravel().tolist()))
        by_row = dict(zip(wanted, fetch(self.passages, wanted), strict=True))
        results = [
            [by_row[r].with_score(s) for r, s in zip(row_rows, row_scores, strict=True)]
            for row_rows, row_scores in zip(rows.tolist(), scores.tolist(), strict=True)
        ]
        with self._stats_lock:
            self.stats.queries += len(queries)
            self.stats.unique += len(unique)
            self.stats.misses += len(unique)
        return fan_out(results, where)

    def save(self, directory: str | Path) -> None:
        """Write the index into ``directory`` (created if needed): the engine's files, the meta json, the store
        (a tantivy index is written by indexing the passages again)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(self.engine, Bm25sEngine):
            self.engine.model.save(str(directory / BM25S_DIR), show_progress=False)
        else:
            shutil.rmtree(directory / TANTIVY_DIR, ignore_errors=True)
            TantivyEngine.build([tokenize(passage_texts(self.passages), self._stemmer)], directory / TANTIVY_DIR)
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
        engine: BM25Engine = DEFAULT_BM25_ENGINE,
        n_threads: int = 0,
        mmap: bool = False,
    ) -> BM25Retriever:
        """Read a folder written by :meth:`save` or :meth:`build_folder` with ``engine``; pass ``passages``
        when already read (saves a re-read). ``mmap`` memory-maps the bm25s arrays instead of reading them."""
        directory = Path(directory)
        meta = _read_meta(directory)
        passages = PassageStore(directory / STORE_FILE) if passages is None else passages
        scorer = _matching(ENGINES[engine].load(directory, mmap, n_threads), passages, directory)
        if meta.get("n_passages", scorer.n_docs) != scorer.n_docs:
            raise RetrievalError(f"BM25 index in {directory} holds {scorer.n_docs} passages, its meta says otherwise")
        return cls(passages, scorer, stemmed=bool(meta["stemmed"]), directory=directory, mmap=mmap)


def _matching(engine: Engine, passages: Sequence[Passage], directory: Path) -> Engine:
    """``engine``, if it indexes as many passages as there are."""
    if engine.n_docs != len(passages):
        raise RetrievalError(
            f"BM25 index in {directory} holds {engine.n_docs} passages, but {len(passages)} were given"
        )
    return engine


def _read_meta(directory: Path) -> dict[str, Any]:
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise RetrievalError(f"{directory} holds no BM25 index ({META_FILE} is missing)")
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    return meta


def _build_tantivy(store: PassageStore, out: Path, stemmer: Any, batch: int) -> None:
    """The tantivy engine's index of ``store`` at ``out`` (tokens as the bm25s arrays have them)."""
    batches = (tokenize(passage_texts(part), stemmer) for part in store.batches(batch))
    TantivyEngine.build(batches, out)

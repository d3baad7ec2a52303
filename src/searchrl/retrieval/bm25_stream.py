"""BM25 built over a stream of passage batches in bounded memory, written in ``bm25s``'s on-disk layout.

``bm25s.BM25.index`` wants every document's tokens at once as Python lists (about 40 bytes per token:
70 GB for wiki-18). This builder never holds more than one batch of tokens, plus arrays that grow with
the vocabulary (document frequencies) and with the passage count (one int32 length per passage):

1. **Tokenize.** Each batch is tokenized (:func:`searchrl.retrieval.bm25.tokenize_ids`), its words
   mapped to ids in a vocabulary that grows as words first appear, and its (term, document, tf) triples are
   written to a run file sorted by term, then document. Document lengths and frequencies accumulate.
2. **Merge.** With the passage count, mean length and every term's document frequency known, the
   score matrix's column pointers are fixed. Terms are then taken in ranges holding at most
   ``budget`` nonzeros; each range's slices are read from every run (runs are in document order, so a
   stable sort by term keeps documents ascending), scored, and appended to the output arrays.

The scores are bm25s's Lucene BM25 (idf ``log(1 + (N - df + 0.5) / (df + 0.5))``, tf part
``tf / (tf + k1 (1 - b + b |d| / avgdl))``), computed in float64 and stored as float32 as bm25s stores
them, so a query's scores match an in-memory ``bm25s`` build to float32 rounding. The folder loads with
``bm25s.BM25.load(mmap=True)``.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from searchrl.types import Passage

DEFAULT_BUDGET = 16_000_000
# texts -> (token ids per text, that call's vocabulary word -> id), as bm25s.tokenize(return_ids=True)
Tokenizer = Callable[
    [list[str]], tuple[list[list[int]], dict[str, int]]
]  # nonzeros per merge range: about 200 MB of working arrays


def _npy_writer(path: Path, dtype: str, length: int) -> BinaryIO:
    """An open ``.npy`` file with the header for a 1-d array of ``length`` items; append the raw data."""
    fh = open(path, "wb")  # noqa: SIM115 - closed by the caller after the data is appended
    np.lib.format.write_array_header_1_0(fh, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": (length,)})
    return fh


class _Runs:
    """Phase 1: per-batch run files of (term, doc, tf), sorted by (term, doc)."""

    def __init__(self, work: Path, tokenize: Tokenizer) -> None:
        self.work = work
        self.tokenize = tokenize
        self.vocab: dict[str, int] = {}
        self.df = np.zeros(1 << 16, dtype=np.int64)
        self.lengths: list[np.ndarray] = []
        self.n_docs = 0
        self.n_runs = 0

    def add(self, texts: list[str]) -> None:
        ids, local_vocab = self.tokenize(texts)
        vocab = self.vocab
        # batch-local token ids -> global ids: one dict lookup per distinct word, then one gather
        to_global = np.zeros(len(local_vocab), dtype=np.int64)
        for word, i in local_vocab.items():
            to_global[i] = vocab.setdefault(word, len(vocab))
        lengths = np.fromiter((len(t) for t in ids), dtype=np.int32, count=len(ids))
        flat = to_global[np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))]
        local = np.repeat(np.arange(len(ids), dtype=np.int64), lengths)
        pairs, tf = np.unique((flat << 32) | local, return_counts=True)  # sorted by term, then doc
        terms = (pairs >> 32).astype(np.int32)
        docs = (pairs & 0xFFFFFFFF).astype(np.int64) + self.n_docs
        if len(vocab) > len(self.df):
            self.df = np.concatenate([self.df, np.zeros(max(len(vocab), 2 * len(self.df)) - len(self.df), np.int64)])
        self.df[: len(vocab)] += np.bincount(terms, minlength=len(vocab))
        run = self.work / f"run{self.n_runs:05d}"
        np.save(f"{run}.terms.npy", terms)
        np.save(f"{run}.docs.npy", docs.astype(np.int32))
        np.save(f"{run}.tf.npy", tf.astype(np.float32))
        self.lengths.append(lengths)
        self.n_docs += len(ids)
        self.n_runs += 1


def _ranges(df: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive term ranges [t0, t1) with at most ``budget`` nonzeros each (a bigger term alone)."""
    out = []
    start, acc = 0, 0
    for t, n in enumerate(df.tolist()):
        if acc and acc + n > budget:
            out.append((start, t))
            start, acc = t, 0
        acc += n
    out.append((start, len(df)))
    return out


def _merge(runs: _Runs, out: Path, k1: float, b: float, budget: int) -> int:
    """Phase 2: score every (term, doc) and write bm25s's CSC arrays; returns the nonzero count."""
    n_vocab = len(runs.vocab)
    df = np.zeros(n_vocab, dtype=np.int64)
    df[: min(n_vocab, len(runs.df))] = runs.df[:n_vocab]
    lengths = np.concatenate(runs.lengths) if runs.lengths else np.zeros(0, np.int32)
    n_docs = len(lengths)
    avgdl = float(lengths.mean()) if n_docs else 1.0
    idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5))
    norm = k1 * ((1 - b) + b * lengths / avgdl)  # [N] float64, the tf part's denominator minus tf
    nnz = int(df.sum())
    indptr = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)
    np.save(out / "indptr.csc.index.npy", indptr)
    names = [f"run{i:05d}" for i in range(runs.n_runs)]
    data_fh = _npy_writer(out / "data.csc.index.npy", "float32", nnz)
    idx_fh = _npy_writer(out / "indices.csc.index.npy", "int32", nnz)
    try:
        for t0, t1 in _ranges(df, budget):
            parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
            for name in names:
                terms = np.load(runs.work / f"{name}.terms.npy", mmap_mode="r")
                lo, hi = np.searchsorted(terms, [t0, t1])
                if hi > lo:
                    docs = np.load(runs.work / f"{name}.docs.npy", mmap_mode="r")
                    tf = np.load(runs.work / f"{name}.tf.npy", mmap_mode="r")
                    parts.append((np.array(terms[lo:hi]), np.array(docs[lo:hi]), np.array(tf[lo:hi])))
                del terms
            if not parts:
                continue
            terms_r = np.concatenate([p[0] for p in parts])
            order = np.argsort(terms_r, kind="stable")
            docs_r = np.concatenate([p[1] for p in parts])[order]
            tf_r = np.concatenate([p[2] for p in parts])[order].astype(np.float64)
            scores = idf[terms_r[order]] * tf_r / (tf_r + norm[docs_r])
            data_fh.write(scores.astype(np.float32).tobytes())
            idx_fh.write(docs_r.astype(np.int32).tobytes())
    finally:
        data_fh.close()
        idx_fh.close()
    return nnz


def build_bm25_stream(
    batches: Iterable[Sequence[Passage]],
    out: str | Path,
    tokenize: Tokenizer,
    *,
    k1: float = 1.5,
    b: float = 0.75,
    budget: int = DEFAULT_BUDGET,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write a bm25s index folder at ``out`` over ``batches`` (title and text of each passage, as
    :class:`~searchrl.retrieval.bm25.BM25Retriever` indexes them); returns its counts.

    ``tokenize`` turns a list of texts into token ids and its vocabulary (:data:`Tokenizer`); ``budget`` bounds the merge's working set
    (nonzeros per term range); ``progress(n)`` is called after each batch.
    """
    import bm25s

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "runs.tmp"
    work.mkdir(exist_ok=True)
    try:
        runs = _Runs(work, tokenize)
        for batch in batches:
            runs.add([f"{p.title}\n{p.text}" for p in batch])
            if progress:
                progress(len(batch))
        if runs.n_docs == 0:
            raise ValueError("cannot build a BM25 index over an empty corpus")
        runs.vocab.setdefault("", len(runs.vocab))  # bm25s keeps an empty token for queries with no word
        nnz = _merge(runs, out, k1, b, budget)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (out / "vocab.index.json").write_text(json.dumps(runs.vocab, ensure_ascii=False), encoding="utf-8")
    model = bm25s.BM25(k1=k1, b=b)
    params = {
        "k1": k1,
        "b": b,
        "delta": model.delta,
        "method": model.method,
        "idf_method": model.idf_method,
        "dtype": model.dtype,
        "int_dtype": model.int_dtype,
        "num_docs": runs.n_docs,
        "version": bm25s.__version__,
        "backend": model.backend,
    }
    (out / "params.index.json").write_text(json.dumps(params, indent=2))
    return {"n_docs": runs.n_docs, "n_vocab": len(runs.vocab), "nnz": nnz}

"""MaxScore pruning in the sparse engine (searchrl.retrieval.bm25_maxscore) on 1,000 real wiki-18 passages:
it must read fewer postings than the query's terms hold and still return exactly what the unpruned sparse
kernel returns (rows and bitwise scores), for k from 1 to beyond the touched passages, and fall back to the
unpruned kernel when an index's postings are not in row order. Exactness is equality, no tolerance: both
paths add the same float32 terms in the query's order."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from searchrl.retrieval import bm25_maxscore
from searchrl.retrieval.bm25 import BM25Retriever, tokenize
from searchrl.retrieval.bm25_engines import Bm25sEngine
from searchrl.retrieval.corpus import load_corpus
from searchrl.types import Passage


@pytest.fixture(scope="module")
def wiki(raw_data: Path) -> list[Passage]:
    return load_corpus(raw_data / "wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl")


@pytest.fixture(scope="module")
def engine(wiki: list[Passage]) -> Bm25sEngine:
    bm25 = BM25Retriever.build(wiki, engine="sparse")
    assert isinstance(bm25.engine, Bm25sEngine)
    return bm25.engine


@pytest.fixture(scope="module")
def queries(wiki: list[Passage], engine: Bm25sEngine) -> list[list[str]]:
    """A title plus the corpus's four commonest words (what pruning skips), words from passages, repeats,
    one unknown word."""
    rng = np.random.default_rng(1)
    term_of = {t: w for w, t in engine.model.vocab_dict.items()}
    common = " ".join(term_of[int(t)] for t in np.argsort(-np.diff(engine.model.scores["indptr"]))[:4])
    out = [f"{p.title} {common}" for p in wiki[::10]]
    for i in rng.integers(0, len(wiki), size=100).tolist():
        words = wiki[i].text.split()
        start = int(rng.integers(0, max(1, len(words) - 8)))
        out.append(" ".join(words[start : start + int(rng.integers(2, 9))]))
    out += ["the the the of", "zzqxv the"]
    return [q for q in tokenize(out) if q]


def unpruned(engine: Bm25sEngine) -> Bm25sEngine:
    plain = engine.with_backend("sparse")
    plain.prune = False
    return plain


@pytest.mark.parametrize("k", [1, 3, 10, 50])
def test_maxscore_returns_the_unpruned_rows_and_bitwise_scores(
    engine: Bm25sEngine, queries: list[list[str]], k: int
) -> None:
    rows, scores = engine.top_k(queries, k)
    want_rows, want_scores = unpruned(engine).top_k(queries, k)
    assert np.array_equal(rows, want_rows)
    assert np.array_equal(scores, want_scores)  # bitwise, not approximately


def test_maxscore_reads_fewer_postings_where_common_words_can_be_skipped(
    engine: Bm25sEngine, queries: list[list[str]]
) -> None:
    s, vocab = engine.model.scores, engine.model.vocab_dict
    ids = [[vocab[w] for w in q if w in vocab] for q in queries]
    ids = [q for q in ids if q]
    flat = np.concatenate(ids).astype(np.int64)
    pointers = np.cumsum([0] + [len(q) for q in ids], dtype=np.int64)
    buffers = np.zeros(engine.n_docs, np.float32), np.zeros(engine.n_docs, np.int64)
    run = bm25_maxscore.kernels()["top_k"]
    # k = 3: over 1,000 passages a title's words touch too few passages to fix a top 10 before the common
    # lists (measured: pruned on 45 % of the title queries at k = 3, 1 % at k = 10)
    _, _, read = run(flat, pointers, 3, s["data"], s["indptr"], s["indices"], engine.term_bounds(), *buffers, True)
    held = np.array([sum(int(s["indptr"][t + 1] - s["indptr"][t]) for t in q) for q in ids])
    assert (read <= held).all()
    titled = slice(0, 100)  # the title + common words queries come first
    assert (read[titled] < held[titled]).mean() > 0.25  # pruning skipped a common list
    assert read[titled].sum() < 0.8 * held[titled].sum()
    assert not buffers[0].any()  # the accumulator is left as it came


def test_maxscore_falls_back_to_unpruned_when_postings_are_not_in_row_order(
    engine: Bm25sEngine, queries: list[list[str]]
) -> None:
    model = copy.copy(engine.model)
    s = {key: np.array(v) if isinstance(v, np.ndarray) else v for key, v in engine.model.scores.items()}
    t = int(np.argmax(np.diff(s["indptr"])))  # the longest list, reversed: the same matrix, rows descending
    lo, hi = s["indptr"][t], s["indptr"][t + 1]
    s["indices"][lo:hi], s["data"][lo:hi] = s["indices"][lo:hi][::-1].copy(), s["data"][lo:hi][::-1].copy()
    model.scores = s
    shuffled = Bm25sEngine(model, "sparse")
    assert len(shuffled.term_bounds()) == 0  # detected: sparse sums every posting
    rows, scores = shuffled.top_k(queries, 10)
    want_rows, want_scores = unpruned(engine).top_k(queries, 10)
    assert np.array_equal(rows, want_rows) and np.array_equal(scores, want_scores)

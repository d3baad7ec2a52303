"""BM25 engines (numba, numpy, sparse, tantivy) against an exhaustive float64 BM25 on 1,000 real wiki-18 passages,
index folders written before the engines existed, the engine switch of the config, and de-duplication.

Tolerances. numba and numpy sum the same float32 terms in the same order, so their scores are bitwise
equal; against the float64 reference each score is within float32 rounding (relative 1e-5, as the streamed
build's test allows). Their top k is exact up to ties: the k scores returned are the reference's k best
scores, and each row's reference score is the score returned, but which of several passages tied at the
k-th score comes back is the engine's choice. tantivy computes BM25 with k1 1.2 and one-byte document
lengths (see searchrl.retrieval.bm25_tantivy), so it is held to a recall@10 floor against exhaustive BM25
with its own k1 (measured 0.98 here) instead.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest

from searchrl.config import RetrievalConfig
from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.bm25 import BM25Retriever, passage_texts, tokenize
from searchrl.retrieval.bm25_engines import DEFAULT_BM25_ENGINE, ENGINES, BM25Engine, Bm25sEngine
from searchrl.retrieval.corpus import load_corpus
from searchrl.retrieval.factory import retriever_from_config
from searchrl.retrieval.ondisk.build import build_index
from searchrl.retrieval.ondisk.index import IndexMismatch
from searchrl.types import Passage

K = 10


@pytest.fixture(scope="module")
def wiki(raw_data: Path) -> list[Passage]:
    return load_corpus(raw_data / "wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl")


@pytest.fixture(scope="module")
def queries(wiki: list[Passage]) -> list[str]:
    """Titles, two to five words from inside passages, and questions with no indexed word."""
    rng = np.random.default_rng(0)
    out = [p.title for p in wiki[::20]]
    for i in rng.integers(0, len(wiki), size=150).tolist():
        words = wiki[i].text.split()
        n, start = int(rng.integers(2, 6)), int(rng.integers(0, max(1, len(words) - 5)))
        out.append(" ".join(words[start : start + n]))
    return [*out, "the of and", "zzqxv"]


def exhaustive_bm25(docs: Sequence[Sequence[str]], query: Sequence[str], k1: float, b: float) -> np.ndarray:
    """Lucene BM25 of every document for ``query`` (a repeated query word counts twice), float64 [N]."""
    tfs = [Counter(d) for d in docs]
    lengths = np.array([len(d) for d in docs], dtype=np.float64)
    norm = k1 * (1 - b + b * lengths / lengths.mean())
    scores = np.zeros(len(docs))
    for word in query:
        tf = np.array([c.get(word, 0) for c in tfs], dtype=np.float64)
        df = int((tf > 0).sum())
        if df:
            scores += math.log(1 + (len(docs) - df + 0.5) / (df + 0.5)) * tf / (tf + norm)
    return scores


@pytest.fixture(scope="module")
def reference(wiki: list[Passage], queries: list[str]) -> list[np.ndarray]:
    docs = tokenize(passage_texts(wiki))
    return [exhaustive_bm25(docs, q, 1.5, 0.75) for q in tokenize(queries)]


@pytest.fixture(scope="module")
def engines(wiki: list[Passage]) -> dict[str, BM25Retriever]:
    return {name: BM25Retriever.build(wiki, engine=name) for name in ENGINES}


def rows_and_scores(retriever: BM25Retriever, passages: list[Passage], queries: list[str]) -> list[Any]:
    row_of = {p.id: i for i, p in enumerate(passages)}
    return [([row_of[p.id] for p in r], [p.score for p in r]) for r in retriever.search(queries, K)]


@pytest.mark.parametrize("name", ["numba", "numpy", "sparse"])
def test_bm25s_engines_are_exact_up_to_ties(
    name: str, engines: dict[str, BM25Retriever], wiki: list[Passage], queries: list[str], reference: list[Any]
) -> None:
    tied = 0
    for (rows, scores), ref in zip(rows_and_scores(engines[name], wiki, queries), reference, strict=True):
        best = np.sort(ref)[::-1][:K]
        assert scores == pytest.approx(best.tolist(), rel=1e-5, abs=1e-6)  # the k best scores, in order
        assert scores == pytest.approx(ref[rows].tolist(), rel=1e-5, abs=1e-6)  # each row has its score
        tied += set(rows) != set(np.argsort(-ref, kind="stable")[:K].tolist())
    assert tied < len(queries)  # most top-10s are unique; the rest differ among tied passages only


def test_numba_and_numpy_scores_are_bitwise_equal(engines: dict[str, BM25Retriever], queries: list[str]) -> None:
    numba, numpy = engines["numba"].search(queries, K), engines["numpy"].search(queries, K)
    assert [[p.score for p in r] for r in numba] == [[p.score for p in r] for r in numpy]
    for a, b in zip(numba, numpy, strict=True):
        differ = {p.id for p in a} ^ {p.id for p in b}
        assert {p.score for p in a + b if p.id in differ} <= {a[-1].score}  # only ties at the k-th score


def dense_float32(engine: Bm25sEngine, words: Sequence[str]) -> np.ndarray:
    """Every passage's float32 score for ``words``, the terms added in query order (the other backends' sum)."""
    s = engine.model.scores
    scores = np.zeros(engine.n_docs, s["data"].dtype)
    for w in words:
        if w in engine._vocab:
            t = engine._vocab[w]
            np.add.at(
                scores,
                s["indices"][s["indptr"][t] : s["indptr"][t + 1]],
                s["data"][s["indptr"][t] : s["indptr"][t + 1]],
            )
    return scores


def test_sparse_is_the_dense_scores_top_k_with_lowest_row_ties(
    engines: dict[str, BM25Retriever], wiki: list[Passage], queries: list[str]
) -> None:
    """sparse touches only the query's postings, yet returns exactly the dense float32 ranking's first k
    (score descending, then row ascending), with bitwise the numba engine's scores."""
    sparse, numba = engines["sparse"], engines["numba"]
    assert isinstance(sparse.engine, Bm25sEngine)
    got = rows_and_scores(sparse, wiki, queries)
    for (rows, scores), words in zip(got, tokenize(queries), strict=True):
        dense = dense_float32(sparse.engine, words)
        order = np.lexsort((np.arange(len(dense)), -dense))[:K]
        assert rows == order.tolist() and scores == dense[order].tolist()
    assert [s for _, s in got] == [s for _, s in rows_and_scores(numba, wiki, queries)]


def test_sparse_fills_short_lists_and_keeps_its_buffers_per_thread(wiki: list[Passage]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    bm25 = BM25Retriever.build(wiki, engine="sparse")
    rare = wiki[7].title  # a title: few passages share its words
    rows, scores = bm25.engine.top_k(tokenize([rare]), len(wiki))
    touched = int((scores[0] > 0).sum())
    assert 0 < touched < len(wiki) and (scores[0][touched:] == 0).all()
    assert rows[0][touched:].tolist() == sorted(set(range(len(wiki))) - set(rows[0][:touched].tolist()))
    qs = [p.title for p in wiki[:200]]
    alone = [bm25.search([q], K) for q in qs]
    with ThreadPoolExecutor(4) as pool:  # the kernel releases the GIL; each thread scores into its own buffers
        together = list(pool.map(lambda q: bm25.search([q], K), qs))
    assert together == alone


def test_sparse_refuses_a_method_with_non_positive_or_non_occurrence_scores(wiki: list[Passage]) -> None:
    import bm25s

    model = bm25s.BM25(method="bm25l")
    model.index(tokenize(passage_texts(wiki[:50])), show_progress=False)
    with pytest.raises(RetrievalError, match="method 'bm25l'"):
        Bm25sEngine(model, "sparse")


def test_tantivy_recall_against_exhaustive_bm25(
    engines: dict[str, BM25Retriever], wiki: list[Passage], queries: list[str]
) -> None:
    docs = tokenize(passage_texts(wiki))
    query_tokens = tokenize(queries)
    recall = []
    for (rows, _), words in zip(rows_and_scores(engines["tantivy"], wiki, queries), query_tokens, strict=True):
        ref = exhaustive_bm25(docs, words, 1.2, 0.75)
        if ref.max() > 0:
            # passages tied with the reference's 10th score all count as right answers
            recall.append(len(set(rows) & set(np.nonzero(ref >= np.sort(ref)[-K] - 1e-9)[0].tolist())) / K)
    assert np.mean(recall) >= 0.95
    empty = engines["tantivy"].search(["the of and"], 3)[0]
    assert [p.id for p in empty] == [p.id for p in wiki[:3]] and {p.score for p in empty} == {0.0}


def test_every_engine_handles_edge_queries_and_k(wiki: list[Passage]) -> None:
    for name in ENGINES:
        small = BM25Retriever.build(wiki[:20], engine=name)
        out = small.search(["the of and", "zzzzqqq", "", wiki[3].title], 50)
        assert [len(x) for x in out] == [20, 20, 20, 20], name  # k capped at the corpus size
        assert {p.score for row in out[:3] for p in row} == {0.0}, name
        assert out[3][0].title == wiki[3].title and (out[3][0].score or 0.0) > 0, name
        assert small.params["engine"] == name


def test_duplicates_are_scored_once_with_the_same_rows(engines: dict[str, BM25Retriever]) -> None:
    bm25 = engines["numba"]
    calls: list[int] = []
    inner = bm25.engine.top_k

    def counting(tokens: Sequence[Sequence[str]], k: int) -> Any:
        calls.append(len(tokens))
        return inner(tokens, k)

    asked = ["Roskilde bishop", "Genentech", "  Roskilde   bishop ", "Genentech", "Absalon"]
    alone = [bm25.search([q], 3)[0] for q in asked]
    bm25.engine.top_k = counting  # type: ignore[method-assign]
    try:
        before = bm25.stats.copy()
        got = bm25.search(asked, 3)
    finally:
        del bm25.engine.top_k
    assert got == alone and got[0] is not got[2]  # same rows, same order; each its own list
    assert calls == [3]
    assert bm25.stats.since(before).as_dict() == {"queries": 5, "unique": 3, "hits": 0, "misses": 3}


def test_old_folder_loads_with_every_bm25s_engine_and_tantivy_says_how(wiki: list[Passage], tmp_path: Path) -> None:
    """An index folder as every searchrl before the engines wrote it (bm25s arrays, built by
    build_index), served through the config with each engine, the default (sparse) included."""
    folder = build_index(wiki[:200], tmp_path / "idx", "bm25", progress=False)
    assert not (folder / "tantivy").exists()
    asked = [p.text[:100] for p in wiki[:30]]
    got = {}
    assert RetrievalConfig(index_dir=str(folder)).bm25_engine == DEFAULT_BM25_ENGINE == "sparse"
    for name in ("numba", "numpy", "sparse"):
        retriever = retriever_from_config(RetrievalConfig(index_dir=str(folder), bm25_engine=name))
        assert isinstance(retriever, BM25Retriever) and retriever.engine.name == name
        assert isinstance(retriever.engine, Bm25sEngine)
        assert isinstance(retriever.engine.model.scores["data"], np.memmap)  # retrieval.mmap defaults on
        got[name] = [[p.score for p in row] for row in retriever.search(asked, 5)]
    assert got["numba"] == got["numpy"] == got["sparse"]
    with pytest.raises(RetrievalError, match=r"no tantivy index .*bm25_engine=sparse.*add_engine"):
        retriever_from_config(RetrievalConfig(index_dir=str(folder), bm25_engine="tantivy"))
    BM25Retriever.add_engine(folder, "tantivy")
    other = tmp_path / "other.jsonl"
    other.write_text('{"id": "x", "contents": "another corpus"}\n')
    with pytest.raises(IndexMismatch, match="corpus_fingerprint"):  # the manifest is checked for every engine
        retriever_from_config(RetrievalConfig(index_dir=str(folder), corpus=str(other), bm25_engine="tantivy"))
    tantivy = retriever_from_config(RetrievalConfig(index_dir=str(folder), bm25_engine="tantivy"))
    assert isinstance(tantivy, BM25Retriever) and tantivy.engine.name == "tantivy"
    assert sum(row[0].id == p.id for row, p in zip(tantivy.search(asked, 1), wiki, strict=False)) >= 28


def test_an_index_built_for_tantivy_loads_with_it(wiki: list[Passage], tmp_path: Path) -> None:
    folder = build_index(wiki[:50], tmp_path / "idx", "bm25", progress=False, bm25_engine="tantivy")
    loaded = retriever_from_config(RetrievalConfig(index_dir=str(folder), bm25_engine="tantivy"))
    assert isinstance(loaded, BM25Retriever) and loaded.engine.name == "tantivy"
    assert loaded.search([wiki[3].text], 1)[0][0].id == wiki[3].id


def test_folder_without_arrays_says_how_to_rebuild(wiki: list[Passage], tmp_path: Path) -> None:
    folder = build_index(wiki[:50], tmp_path / "idx", "bm25", progress=False)
    for path in sorted((folder / "bm25").iterdir()):
        path.unlink()
    with pytest.raises(RetrievalError, match=r"no bm25s arrays .*searchrl index build"):
        retriever_from_config(RetrievalConfig(index_dir=str(folder), bm25_engine="numba"))


def test_build_folder_with_tantivy_and_index_ids(wiki: list[Passage], tmp_path: Path) -> None:
    from searchrl.retrieval.ondisk.store import STORE_FILE, PassageStore, write_store

    write_store(wiki[:100], tmp_path / STORE_FILE, dedupe=False)
    BM25Retriever.build_folder(PassageStore(tmp_path / STORE_FILE), tmp_path, stem=False, engines=("tantivy",))
    loaded = {name: BM25Retriever.load(tmp_path, engine=name) for name in ENGINES}
    assert len({r.index_id for r in loaded.values()}) == len(ENGINES)  # the engine is part of what answers
    assert BM25Retriever.load(tmp_path, engine="tantivy").index_id == loaded["tantivy"].index_id  # stable
    assert BM25Retriever.build(wiki[:100]).index_id != BM25Retriever.build(wiki[:100]).index_id  # in memory
    assert loaded["numba"].with_engine("tantivy").index_id == loaded["tantivy"].index_id


def test_config_engine_names_are_the_registry(wiki: list[Passage], tmp_path: Path) -> None:
    assert set(get_args(BM25Engine)) == set(ENGINES)
    assert RetrievalConfig().bm25_engine == DEFAULT_BM25_ENGINE
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "\n".join(f'{{"id": "{p.id}", "contents": "{p.title}"}}' for p in wiki[:10] if '"' not in p.title)
    )
    built = retriever_from_config(RetrievalConfig(corpus=str(corpus), bm25_engine="numpy"))
    assert isinstance(built, BM25Retriever) and built.engine.name == "numpy"
    with pytest.raises(ValueError, match="bm25_engine"):
        RetrievalConfig(bm25_engine="lucene")  # type: ignore[arg-type]

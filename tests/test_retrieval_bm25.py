"""BM25 (bm25s): hand-computed scores, batched search on real wiki-18 passages, save/load round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from searchrl.retrieval.base import RetrievalError, Retriever
from searchrl.retrieval.bm25 import META_FILE, BM25Retriever, stemmer_available, tokenize, tokenize_ids
from searchrl.retrieval.bm25_engines import Bm25sEngine
from searchrl.retrieval.corpus import load_corpus
from searchrl.retrieval.ondisk.store import STORE_FILE, PassageStore, write_store
from searchrl.types import Passage


@pytest.fixture(scope="module")
def wiki(raw_data: Path) -> list[Passage]:
    return load_corpus(raw_data / "wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl")


@pytest.fixture(scope="module")
def bm25(wiki: list[Passage]) -> BM25Retriever:
    return BM25Retriever.build(wiki)


def test_scores_match_hand_computed_bm25() -> None:
    docs = [Passage("a", "", "apple banana"), Passage("b", "", "apple apple cherry"), Passage("c", "", "durian")]
    top = BM25Retriever.build(docs).search(["Apple"], 3)[0]
    # Lucene BM25: idf = ln(1 + (N - df + .5) / (df + .5)); tf part = tf / (tf + k1 (1 - b + b len/avglen))
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    want_b = idf * 2 / (2 + 1.5 * (0.25 + 0.75 * 3 / 2))
    want_a = idf * 1 / (1 + 1.5 * (0.25 + 0.75 * 2 / 2))
    assert [p.id for p in top] == ["b", "a", "c"]
    assert [p.score for p in top] == pytest.approx([want_b, want_a, 0.0], rel=1e-5)


def test_tokenize_lowercases_and_drops_stopwords() -> None:
    assert tokenize(["The Cat sat on a mat, I think", "the of and"]) == [["cat", "sat", "mat", "think"], []]


def test_opening_words_find_their_passages(bm25: BM25Retriever, wiki: list[Passage]) -> None:
    assert isinstance(bm25, Retriever)
    queries = [p.text[:120] for p in wiki[:50]]
    results = bm25.search(queries, 5)
    assert sum(res[0].id == p.id for res, p in zip(results, wiki, strict=False)) >= 45
    for res in results:
        scores = [p.score for p in res if p.score is not None]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)


def test_batched_equals_one_at_a_time(bm25: BM25Retriever) -> None:
    queries = ["who founded Genentech", "Algonkin vocabulary", "the", "Roskilde bishop Absalon"]
    assert bm25.search(queries, 3) == [bm25.search([q], 3)[0] for q in queries]


def test_edge_queries_and_k(bm25: BM25Retriever, wiki: list[Passage]) -> None:
    small = BM25Retriever.build(wiki[:20])
    out = small.search(["the of and", "zzzzqqq", "", wiki[3].title], 50)
    assert [len(x) for x in out] == [20, 20, 20, 20]  # k capped at the corpus size
    assert {p.score for row in out[:3] for p in row} == {0.0}  # nothing known: all zero
    assert (out[3][0].score or 0.0) > 0
    assert small.search([], 3) == []
    with pytest.raises(ValueError, match="k must be at least 1"):
        small.search(["x"], 0)
    with pytest.raises(ValueError, match="empty corpus"):
        BM25Retriever.build([])


def test_save_load_round_trip(bm25: BM25Retriever, wiki: list[Passage], tmp_path: Path) -> None:
    queries = [p.title for p in wiki[100:140]] + ["Danish fleet against the Wendish pirates"]
    bm25.save(tmp_path / "idx")
    assert {"bm25", META_FILE, STORE_FILE} <= {p.name for p in (tmp_path / "idx").iterdir()}
    assert BM25Retriever.load(tmp_path / "idx").search(queries, 4) == bm25.search(queries, 4)
    assert BM25Retriever.load(tmp_path / "idx", wiki, mmap=True).search(queries, 4) == bm25.search(queries, 4)
    with pytest.raises(RetrievalError, match="holds 1000 passages, but 999 were given"):
        BM25Retriever.load(tmp_path / "idx", wiki[:999])
    with pytest.raises(RetrievalError, match="holds no BM25 index"):
        BM25Retriever.load(tmp_path)


@pytest.mark.skipif(stemmer_available(), reason="PyStemmer is installed here")
def test_stemming_needs_pystemmer(wiki: list[Passage], tmp_path: Path) -> None:
    assert BM25Retriever.build(wiki[:5]).stemmed is False  # stem=None: only when installed
    with pytest.raises(RetrievalError, match="pip install PyStemmer"):
        BM25Retriever.build(wiki[:5], stem=True)
    BM25Retriever.build(wiki[:5]).save(tmp_path)
    (tmp_path / META_FILE).write_text(json.dumps({"stemmed": True, "n_passages": 5}))
    with pytest.raises(RetrievalError, match="pip install PyStemmer"):
        BM25Retriever.load(tmp_path)


def test_streaming_build_matches_the_in_memory_build(bm25: BM25Retriever, wiki: list[Passage], tmp_path: Path) -> None:
    """Small batches and a small merge budget force many runs and term ranges; the matrix must be the
    one bm25s builds in memory. Scores differ only by float32 rounding (bm25s rounds each tf part to
    float32 before multiplying by the idf; the stream rounds once), so they are compared to 1e-5."""
    from searchrl.retrieval.bm25_stream import build_bm25_stream

    queries = [p.title for p in wiki[:60]] + ["Danish fleet against the Wendish pirates", "the of", "zzqx"]
    info = build_bm25_stream(
        [wiki[i : i + 37] for i in range(0, len(wiki), 37)], tmp_path / "idx" / "bm25", tokenize_ids, budget=2_000
    )
    assert isinstance(bm25.engine, Bm25sEngine)
    assert info["n_docs"] == 1000 and info["nnz"] == len(bm25.engine.model.scores["data"])
    (tmp_path / "idx" / META_FILE).write_text(json.dumps({"stemmed": False, "n_passages": 1000}))
    write_store(wiki, tmp_path / "idx" / STORE_FILE, dedupe=False)
    streamed = BM25Retriever.load(tmp_path / "idx", mmap=True)
    assert isinstance(streamed.passages, PassageStore)  # text fetched on demand, not held
    got, want = streamed.search(queries, 5), bm25.search(queries, 5)
    assert [[p.id for p in r] for r in got[:-2]] == [[p.id for p in r] for r in want[:-2]]
    assert [p.score for r in got for p in r] == pytest.approx([p.score for r in want for p in r], abs=1e-5)
    assert {p.score for r in got[-2:] for p in r} == {0.0}  # stopwords only, unknown word


def test_build_folder_streams_a_store(wiki: list[Passage], tmp_path: Path) -> None:
    write_store(wiki, tmp_path / STORE_FILE, dedupe=False)
    store = PassageStore(tmp_path / STORE_FILE)
    seen: list[int] = []
    info = BM25Retriever.build_folder(store, tmp_path, stem=False, batch=300, progress=seen.append)
    assert seen == [300, 300, 300, 100] and info["params"]["stemmed"] is False
    assert BM25Retriever.load(tmp_path).search(["Evan Morris lobbyist"], 1)[0][0].id == wiki[0].id

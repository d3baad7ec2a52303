"""Import a prebuilt faiss index with its corpus, in Search-R1's published layout, without re-encoding.

Search-R1 publishes ``e5_Flat.index`` (a faiss ``IndexFlatIP`` over E5-base-v2 passage embeddings,
768-d) and ``wiki-18.jsonl`` (``{"id", "contents": '"Title"\\ntext'}`` per line), where vector ``i``
is line ``i`` of the corpus; its server encodes queries with the same E5 model (``query: `` prefix).
:func:`import_index` streams the corpus into a passage store in line order (no deduplication: rows must
stay aligned with the vectors; a line without an id gets its 0-based line number, as Search-R1 uses),
checks that the counts and the encoder's width agree with the index, and writes an index folder whose
``faiss.index`` is a hard link to the given file (a symbolic link when the file lies on another file
system), so 65 GB are neither re-encoded nor copied. The folder then loads and serves like any dense
index folder (memory-mapped with ``retrieval.mmap``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from searchrl.retrieval.corpus import iter_corpus
from searchrl.retrieval.ondisk.index import MANIFEST, MANIFEST_VERSION, InvalidIndex, library_versions
from searchrl.retrieval.ondisk.store import STORE_FILE, write_store
from searchrl.types import Passage
from searchrl.utils import atomic_dir, atomic_write_text, file_fingerprint


def _numbered(corpus: Path, fmt: str) -> Iterator[Passage]:
    for n, p in enumerate(iter_corpus(corpus, fmt)):
        yield p if p.id else Passage(str(n), p.title, p.text)


def _link(src: Path, dst: Path) -> str:
    try:
        os.link(src, dst)
        return "hard link"
    except OSError:
        os.symlink(src.resolve(), dst)
        return "symbolic link"


def import_index(
    index_file: str | Path,
    corpus: str | Path,
    out_dir: str | Path,
    *,
    encoder: str,
    fmt: str = "search_r1",
    nprobe: int = 32,
    ef_search: int = 128,
    batch_size: int = 64,
    device: str | None = None,
) -> Path:
    """Write an index folder at ``out_dir`` serving ``index_file`` over ``corpus`` with ``encoder``.

    Raises :class:`~searchrl.retrieval.ondisk.index.InvalidIndex` when the index cannot be read, or its vector
    count or width disagrees with the corpus or the encoder.
    """
    import faiss

    from searchrl import __version__
    from searchrl.retrieval.dense.encoder import embedding_dim, encoder_prefixes, load_encoder
    from searchrl.retrieval.dense.faiss_index import read_index
    from searchrl.retrieval.dense.retriever import DenseRetriever
    from searchrl.retrieval.ondisk.store import PassageStore

    index_file, corpus = Path(index_file), Path(corpus)
    if not index_file.is_file():
        raise InvalidIndex(f"faiss index file not found: {index_file}")
    try:
        index = read_index(index_file, mmap=True)  # maps the vectors: only the header is read now
    except RuntimeError as exc:
        raise InvalidIndex(f"{index_file} is not a faiss index ({str(exc).strip().splitlines()[-1][:200]})") from None
    model = load_encoder(encoder, device)
    if embedding_dim(model) != index.d:
        raise InvalidIndex(
            f"{index_file} holds {index.d}-d vectors, but encoder {encoder!r} gives {embedding_dim(model)}-d ones; "
            "pass the encoder the index was built with"
        )
    start = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        info = write_store(_numbered(corpus, fmt), tmp / STORE_FILE, dedupe=False)
        if info.n_passages != index.ntotal:
            raise InvalidIndex(
                f"{index_file} holds {index.ntotal} vectors but {corpus} has {info.n_passages} passages; "
                "vector i must be passage i of the corpus"
            )
        how = _link(index_file, tmp / "faiss.index")
        store = PassageStore(tmp / STORE_FILE)
        retriever = DenseRetriever(
            store, model, index, encoder=encoder, faiss=type(faiss.downcast_index(index)).__name__,
            nprobe=nprobe, ef_search=ef_search, batch_size=batch_size,
        )  # fmt: skip
        (tmp / "searchrl_dense.json").write_text(json.dumps(retriever.meta(), indent=2))
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "kind": "dense",
            "encoder": encoder,
            "corpus_fingerprint": file_fingerprint(corpus),
            "passages_fingerprint": info.fingerprint,
            "source": str(corpus),
            "n_passages": info.n_passages,
            "params": retriever.params,
            "imported": {"index_file": str(index_file), "as": how, "passage_prefix": encoder_prefixes(encoder)[1]},
            "bytes_store": (tmp / STORE_FILE).stat().st_size,
            "bytes_index": index_file.stat().st_size,
            "searchrl_version": __version__,
            "libraries": library_versions("dense"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.perf_counter() - start, 3),
        }
        store.close()
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return Path(out_dir)

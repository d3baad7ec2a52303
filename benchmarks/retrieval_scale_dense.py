"""Dense at 2M vectors: compressed faiss indexes vs flat on synthetic clustered vectors, then a server.

The vectors are synthetic (no CPU here encodes 2M passages in the time available; the encoder's
throughput is measured separately): ``--n`` unit vectors of 384 dimensions (the offline encoder's
width), from 2,000 clusters. Each vector is a cluster centre plus noise whose spectrum decays as a
power law (standard deviation of component i proportional to (i + 1)^-0.6, in a random rotation), so
most variance lies in a few hundred directions, as in real sentence embeddings, then normalised.
Queries are 1,000 fresh draws from the same mixture. Ground truth is exact inner-product search
over the shards, by brute force in blocks.

Steps (fresh processes, so each peak RSS is its own; files under ``/tmp/searchrl_scale``):

* ``generate`` — shards in :mod:`searchrl.retrieval.dense.shards`'s layout, the queries, the exact top-10.
* ``build --factory F`` — :func:`searchrl.retrieval.dense.faiss_index.build_from_shards` (trained on a 200k
  sample), written to ``dense_<F>/faiss.index``; time, peak RSS, file size.
* ``search --factory F --nprobe P [--refine R]`` — the index read memory-mapped, recall@10 against exact
  search and queries/s (one thread, batches of 8), and the process's RSS: what a server holds for the
  index. ``--refine R`` re-ranks R x 10 candidates exactly from ``vectors.npy`` (written once from the
  shards) read row by row with ``pread`` (:mod:`searchrl.retrieval.dense.exact_rescore`).
* ``serve --factory F`` — the index put in an index folder with the 2M-passage store of the BM25
  benchmark (run that first) and served by ``searchrl serve`` (the offline MiniLM encodes each text
  query); queries/s over HTTP and the server's RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from retrieval_scale_common import gib, proc_kib, query_load, served

SCRATCH = Path("/tmp/searchrl_scale")
DIM = 384


def generate(scratch: Path, n: int, seed: int, shard: int = 100_000) -> None:
    from searchrl.retrieval.dense.faiss_index import exact_topk
    from searchrl.retrieval.dense.shards import shard_path

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((2000, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rotation = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0].astype(np.float32)
    scale = (np.arange(DIM) + 1.0) ** -0.6 * 0.35

    def draw(m: int) -> np.ndarray:
        noise = (rng.standard_normal((m, DIM)) * scale).astype(np.float32) @ rotation
        x = centres[rng.integers(0, len(centres), size=m)] + noise
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    work = scratch / "vectors"
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i, first in enumerate(range(0, n, shard)):
        np.save(shard_path(work, i), draw(min(shard, n - first)).astype(np.float32))
    queries = draw(1000).astype(np.float32)
    np.save(scratch / "queries.npy", queries)
    shards = sorted(work.glob("shard_*.npy"))
    np.save(scratch / "exact_top10.npy", exact_topk(shards, queries, 10))
    print(json.dumps({"vectors": n, "dim": DIM, "seconds": round(time.perf_counter() - start, 1)}))


def _name(factory: str) -> str:
    return "dense_" + factory.replace(",", "_")


def build(scratch: Path, factory: str) -> None:
    import faiss

    from searchrl.retrieval.dense.faiss_index import build_from_shards

    shards = sorted((scratch / "vectors").glob("shard_*.npy"))
    start = time.perf_counter()
    index = build_from_shards(shards, factory, train_size=200_000)
    seconds = time.perf_counter() - start
    out = scratch / _name(factory)
    out.mkdir(exist_ok=True)
    faiss.write_index(index, str(out / "faiss.index"))
    size = (out / "faiss.index").stat().st_size
    print(json.dumps({"factory": factory, "vectors": index.ntotal, "seconds": round(seconds, 1),
                      "peak_rss_gib": gib(proc_kib("self", "VmHWM")), "bytes_index": size,
                      "bytes_per_vector": round(size / index.ntotal, 1)}))  # fmt: skip


def search(scratch: Path, factory: str, nprobe: int, refine: int) -> None:
    """Recall@10 vs exact, queries/s and the index's resident memory; ``refine`` > 0 re-ranks
    ``refine x 10`` candidates exactly from ``vectors.npy`` on disk (read by row, not mapped)."""
    from searchrl.retrieval.dense.exact_rescore import DiskVectors, refined_search, write_vectors
    from searchrl.retrieval.dense.faiss_index import read_index, set_search_params

    vectors = None
    if refine > 0:
        path = scratch / "vectors.npy"
        if not path.is_file():
            write_vectors(sorted((scratch / "vectors").glob("shard_*.npy")), path)
        vectors = DiskVectors(path)
    base, base_anon = proc_kib("self", "VmRSS"), proc_kib("self", "RssAnon")
    index = read_index(scratch / _name(factory) / "faiss.index", mmap=True)
    set_search_params(index, nprobe=nprobe, ef_search=128, k=10)
    queries, exact = np.load(scratch / "queries.npy"), np.load(scratch / "exact_top10.npy")
    refined_search(index, vectors, queries[:8], 10, refine)
    start = time.perf_counter()
    got = np.concatenate(
        [refined_search(index, vectors, queries[i : i + 8], 10, refine)[1] for i in range(0, len(queries), 8)]
    )
    seconds = time.perf_counter() - start
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(exact, got, strict=True)])
    flat_bytes = index.ntotal * DIM * 4
    rss = proc_kib("self", "VmRSS") - base
    print(json.dumps({"factory": factory, "nprobe": nprobe, "refine": refine,
                      "recall_at_10_vs_flat": round(float(recall), 4),
                      "qps_1_thread_batch_8": round(len(queries) / seconds, 1),
                      "index_rss_gib": gib(rss), "index_rss_anon_gib": gib(proc_kib("self", "RssAnon") - base_anon),
                      "flat_gib": gib(flat_bytes // 1024),
                      "memory_ratio_vs_flat": round(flat_bytes / 1024 / max(rss, 1), 1)}))  # fmt: skip


def serve(scratch: Path, factory: str, nprobe: int, n_queries: int, refine: int) -> None:
    """An index folder (this faiss index + the BM25 benchmark's store) served by ``searchrl serve``."""
    from retrieval_scale_bm25 import sample_queries
    from searchrl.retrieval.dense.encoder import DEFAULT_ENCODER
    from searchrl.retrieval.dense.faiss_index import read_index
    from searchrl.retrieval.dense.retriever import DenseRetriever
    from searchrl.retrieval.ondisk.index import MANIFEST, MANIFEST_VERSION
    from searchrl.retrieval.ondisk.store import STORE_FILE, PassageStore

    folder = scratch / (_name(factory) + "_served")
    folder.mkdir(exist_ok=True)
    for name, src in (("faiss.index", scratch / _name(factory) / "faiss.index"),
                      (STORE_FILE, scratch / "bm25_index" / STORE_FILE)):  # fmt: skip
        if not (folder / name).exists():
            os.link(src, folder / name)
    if refine > 0 and not (folder / "vectors.npy").exists():
        os.link(scratch / "vectors.npy", folder / "vectors.npy")  # written by the search step
    store, index = PassageStore(folder / STORE_FILE), read_index(folder / "faiss.index", mmap=True)
    meta = DenseRetriever(store, None, index, faiss=factory, nprobe=nprobe).meta()
    (folder / "searchrl_dense.json").write_text(json.dumps(meta))
    manifest = {"manifest_version": MANIFEST_VERSION, "kind": "dense", "encoder": DEFAULT_ENCODER,
                "corpus_fingerprint": store.fingerprint, "passages_fingerprint": store.fingerprint,
                "n_passages": len(store), "params": {"faiss": factory, "dim": DIM}, "source": "synthetic vectors"}  # fmt: skip
    (folder / MANIFEST).write_text(json.dumps(manifest))
    queries = sample_queries(scratch / "corpus.jsonl", n_queries, seed=2)
    overrides = ["retrieval.kind=dense", f"retrieval.index_dir={folder}", f"retrieval.nprobe={nprobe}",
                 f"retrieval.refine={refine}"]  # fmt: skip
    with served(overrides, scratch / "serve_dense.log") as (url, proc):
        load = query_load(url, queries, topk=3, batch=8, threads=4)
        mem = {"rss_gib": gib(proc_kib(proc.pid, "VmRSS")), "peak_rss_gib": gib(proc_kib(proc.pid, "VmHWM")),
               "rss_file_gib": gib(proc_kib(proc.pid, "RssFile")), "rss_anon_gib": gib(proc_kib(proc.pid, "RssAnon"))}  # fmt: skip
    print(json.dumps({"factory": factory, "nprobe": nprobe, "refine": refine, **load, "server": mem}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["generate", "build", "search", "serve"])
    ap.add_argument("--scratch", type=Path, default=SCRATCH)
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--factory", default="IVF1024,PQ48")
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--refine", type=int, default=0, help="search: exact re-rank of refine x 10 candidates")
    args = ap.parse_args()
    if args.step == "generate":
        generate(args.scratch, args.n, args.seed)
    elif args.step == "build":
        build(args.scratch, args.factory)
    elif args.step == "search":
        search(args.scratch, args.factory, args.nprobe, args.refine)
    else:
        serve(args.scratch, args.factory, args.nprobe, args.queries, args.refine)


if __name__ == "__main__":
    main()

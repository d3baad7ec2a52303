"""Where one BM25 query's time goes, end to end, over the engines benchmark's index folder (issue 23, step 1).

The folder is loaded as ``searchrl serve`` loads it (``retriever_from_config``), pinned to one core, and
after a warm-up each generated query (2-5 words from passages, the engines benchmark's set) is answered one
at a time, timing the phases of ``BM25Retriever.search`` separately:

* de-duplication (``query_cache.dedupe``) and tokenization (lowercase, stopwords, stemming);
* vocabulary lookup (token -> id) and the engine's scoring and top-k (numba / numpy kernel; tantivy's
  search as one phase);
* the passage fetch by row (the SQLite store) and building the result objects.

Then the same queries through ``search`` as a whole (queries/s; the phases' sum should match it), and
through the HTTP server's JSON layer is measured by ``retrieval_bm25_engines.py serve``. Prints one row per
engine: milliseconds per query per phase and the share of the total.

Usage (after ``retrieval_bm25_engines.py all``, over the same scratch folder, with the CPU alone):
  python benchmarks/retrieval_bm25_profile.py --scratch /tmp/searchrl_bm25_engines --queries 1000
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from retrieval_bm25_engines import SCRATCH, load
from retrieval_scale_bm25 import sample_queries
from searchrl.retrieval.bm25_engines import Bm25sEngine
from searchrl.retrieval.ondisk.store import fetch
from searchrl.retrieval.query_cache import dedupe


def profile(retriever: Any, queries: list[str], k: int) -> dict[str, float]:
    """Seconds per phase summed over ``queries``, each answered alone (the path of ``search``)."""
    engine = retriever.engine
    t = dict.fromkeys(("dedupe", "tokenize", "vocab", "score_topk", "fetch", "results"), 0.0)
    for q in queries:
        t0 = time.perf_counter()
        unique, _ = dedupe([q])
        t1 = time.perf_counter()
        tokens = retriever.query_tokens(unique)
        t2 = time.perf_counter()
        if isinstance(engine, Bm25sEngine):
            ids = engine.term_ids(tokens)
            t3 = time.perf_counter()
            if ids[0]:
                rows, scores = engine.score_ids(ids, k)
            else:
                rows, scores = engine.top_k(tokens, k)
        else:
            t3 = time.perf_counter()
            rows, scores = engine.top_k(tokens, k)
        t4 = time.perf_counter()
        wanted = sorted(set(rows.ravel().tolist()))
        got = fetch(retriever.passages, wanted)
        t5 = time.perf_counter()
        by_row = dict(zip(wanted, got, strict=True))
        _ = [
            [by_row[r].with_score(s) for r, s in zip(rr, ss, strict=True)]
            for rr, ss in zip(rows.tolist(), scores.tolist(), strict=True)
        ]
        t6 = time.perf_counter()
        for name, a, b in (("dedupe", t0, t1), ("tokenize", t1, t2), ("vocab", t2, t3), ("score_topk", t3, t4),
                           ("fetch", t4, t5), ("results", t5, t6)):  # fmt: skip
            t[name] += b - a
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scratch", type=Path, default=SCRATCH)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--engines", default="numba,numpy,tantivy")
    args = ap.parse_args()
    os.sched_setaffinity(0, {0})
    queries = sample_queries(args.scratch / "corpus.jsonl", args.queries, seed=1)
    print(f"{args.queries} generated queries, one at a time, top-{args.k}, one core; ms per query")
    phases = ("dedupe", "tokenize", "vocab", "score_topk", "fetch", "results")
    print("| engine | " + " | ".join(phases) + " | sum of phases | whole search | queries/s |")
    print("|---" * (len(phases) + 4) + "|")
    for name in args.engines.split(","):
        retriever = load(args.scratch / "index", name)
        for q in queries[:20]:  # warm-up: kernel compilation, page cache
            retriever.search([q], args.k)
        t = profile(retriever, queries, args.k)
        start = time.perf_counter()
        for q in queries:
            retriever.search([q], args.k)
        whole = (time.perf_counter() - start) / len(queries)
        total = sum(t.values())
        cells = [f"{1000 * t[p] / len(queries):.3f} ({100 * t[p] / total:.0f} %)" for p in phases]
        print(f"| {name} | " + " | ".join(cells) + f" | {1000 * total / len(queries):.3f} | {1000 * whole:.3f} "
              f"| {1 / whole:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()

"""MaxScore pruning in the sparse BM25 engine, on and off, in one process over the 2M index of
``retrieval_bm25_engines.py`` (its scratch folder: ``corpus.jsonl`` and ``index/``).

Pinned to one core, after a warm-up: the generated queries and the real NQ and HotpotQA questions of
``../shared/data``, one query at a time through ``search`` (tokenizing, scoring, store fetch), pruned and
unpruned alternating in rounds of 200 queries so that both see the same machine state. Also: whether the
two return the same rows and bitwise the same scores for every query (they must: pruning is exact), and
the share of the query terms' postings the pruned kernel read.

Usage (when nothing else holds the CPU):
  python benchmarks/retrieval_bm25_maxscore.py --scratch /tmp/searchrl_bm25_engines
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_bm25_engines import SCRATCH, load, query_sets


def timed_rounds(retrievers: dict[str, Any], queries: list[str], k: int, size: int = 200) -> dict[str, float]:
    """Queries/s of each retriever, one query per call, alternating in rounds of ``size`` queries."""
    spent = dict.fromkeys(retrievers, 0.0)
    for i in range(0, len(queries), size):
        for name, retriever in retrievers.items():
            start = time.perf_counter()
            for q in queries[i : i + size]:
                retriever.search([q], k)
            spent[name] += time.perf_counter() - start
    return {name: round(len(queries) / s, 1) for name, s in spent.items()}


def postings_read(engine: Any, tokens: list[list[str]], k: int) -> tuple[int, int]:
    """(postings the pruned kernel read, postings the query terms hold) over ``tokens``."""
    from searchrl.retrieval import bm25_maxscore

    s = engine.model.scores
    ids = [q for q in engine.term_ids(tokens) if q]
    flat = np.concatenate(ids).astype(np.int64)
    pointers = np.cumsum([0] + [len(q) for q in ids], dtype=np.int64)
    buffers = np.zeros(engine.n_docs, np.float32), np.zeros(engine.n_docs, np.int64)
    run = bm25_maxscore.kernels()["top_k"]
    _, _, read = run(flat, pointers, k, s["data"], s["indptr"], s["indices"], engine.term_bounds(), *buffers, True)
    held = sum(int(s["indptr"][t + 1] - s["indptr"][t]) for q in ids for t in q)
    return int(read.sum()), held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, default=SCRATCH)
    parser.add_argument("--queries", type=int, default=2000, help="per query set (real ones are cycled)")
    parser.add_argument("--k", type=int, default=3, help="top k per query (Search-R1's default topk is 3)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    index = args.scratch / "index"
    pruned = load(index, "sparse")
    start = time.perf_counter()
    pruned.engine.term_bounds()
    bounds_seconds = round(time.perf_counter() - start, 2)
    plain = load(index, "sparse")
    plain.engine.prune = False
    sets = query_sets(args.scratch / "corpus.jsonl", args.queries)
    for q in sets["generated"][:200]:  # warm-up: compile, page cache
        pruned.search([q], args.k)
        plain.search([q], args.k)
    out: dict[str, Any] = {"passages": pruned.engine.n_docs, "k": args.k, "bounds_seconds": bounds_seconds}
    for label, qs in sets.items():
        cycled = list(itertools.islice(itertools.cycle(qs), args.queries))
        qps = timed_rounds({"pruned": pruned, "unpruned": plain}, cycled, args.k)
        tokens = pruned.query_tokens(qs)
        a = pruned.engine.top_k(tokens, 10)
        b = plain.engine.top_k(tokens, 10)
        read, held = postings_read(pruned.engine, tokens, args.k)
        out[label] = {"distinct": len(qs), "qps_pruned": qps["pruned"], "qps_unpruned": qps["unpruned"],
                      "speedup": round(qps["pruned"] / qps["unpruned"], 2),
                      "identical_top10": bool(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])),
                      "postings_read_fraction": round(read / max(held, 1), 3)}  # fmt: skip
        print(label, json.dumps(out[label]), flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

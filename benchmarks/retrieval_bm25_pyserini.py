"""pyserini (Lucene, through Anserini's Java) beside the engines of ``retrieval_bm25_engines.py``.

Search-R1's own BM25 runs use pyserini. It needs a Java: Anserini 0.22.1 (pyserini 0.22.1, the last
line that runs on Java 11-17) works with Debian 12's ``openjdk-17-jre-headless``; pyserini >= 0.36
needs Java 21, which Debian 12 does not ship. ``scripts/pyserini_venv.sh`` makes a side environment
(``.pyserini-venv``: pyserini with no dependencies, pyjnius, numpy) so searchrl's own lock stays as it is.

Run after ``retrieval_bm25_engines.py all`` over the same scratch folder (its generated corpus, which is
already in Anserini's JsonCollection layout, its query sets and its exhaustive BM25):

* ``build`` — ``io.anserini.index.IndexCollection`` over ``corpus.jsonl`` (2 threads, Lucene's default
  English analyzer: Porter stemming and stopwords), timed, with the Java process's peak RSS and the
  index's bytes per passage.
* ``search`` — in the side environment, pinned to core 0: ``SimpleSearcher`` with BM25 k1 1.5, b 0.75
  (searchrl's), one query at a time through pyjnius as a pyserini user calls it, after a warm-up; the
  generated, NQ and HotpotQA sets cycled to ``--queries``; RSS; and each distinct generated and NQ query's
  top-10 ids for ``agree``.
* ``agree`` — recall@10 against the engines benchmark's exhaustive BM25 (searchrl's tokenizer: ties count
  as hits). Lucene tokenizes differently (its stopword list and stemmer, and BM25 without the (k1 + 1)
  factor, which does not change a ranking), so this is the overlap of two BM25 variants, not exactness.

Usage, when nothing else holds the CPU:
  bash scripts/pyserini_venv.sh
  python benchmarks/retrieval_bm25_pyserini.py all --n 2000000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCRATCH = Path("/tmp/searchrl_bm25_engines")
SIDE_PYTHON = Path(__file__).resolve().parents[1] / ".pyserini-venv/bin/python"
K_AGREE = 10


def anserini_jar(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import pyserini, os; print(os.path.dirname(pyserini.__file__))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    jars = sorted(Path(out, "resources/jars").glob("anserini-*-fatjar.jar"))
    if not jars:
        raise SystemExit(f"no Anserini jar under {out}/resources/jars")
    return jars[-1]


def kib_of(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def step_build(scratch: Path, python: Path) -> dict[str, Any]:
    """Lucene's index of corpus.jsonl: seconds, the Java process's peak RSS, bytes per passage."""
    docs, index = scratch / "pyserini_docs", scratch / "pyserini_index"
    shutil.rmtree(docs, ignore_errors=True)
    shutil.rmtree(index, ignore_errors=True)
    docs.mkdir()
    (docs / "corpus.jsonl").symlink_to((scratch / "corpus.jsonl").resolve())
    cmd = ["java", "-Xmx8g", "-cp", str(anserini_jar(python)), "io.anserini.index.IndexCollection",
           "-collection", "JsonCollection", "-generator", "DefaultLuceneDocumentGenerator", "-input", str(docs),
           "-index", str(index), "-threads", "2"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child: the JVM
    with open(scratch / "corpus.jsonl", encoding="utf-8") as fh:
        n = sum(1 for _ in fh)
    size = sum(p.stat().st_size for p in index.rglob("*") if p.is_file())
    return {"seconds": round(seconds, 1), "peak_rss_gib": round(peak_kib / 2**20, 2), "passages": n,
            "bytes_per_passage": round(size / n, 1)}  # fmt: skip


def write_queries(scratch: Path, n: int) -> Path:
    """The engines benchmark's query sets (main environment), for the side environment to read."""
    from retrieval_bm25_engines import query_sets

    path = scratch / "pyserini_queries.json"
    path.write_text(json.dumps(query_sets(scratch / "corpus.jsonl", n)))
    return path


def step_search(scratch: Path, n: int, k: int) -> dict[str, Any]:
    """Runs in the side environment (pyjnius, no searchrl): one query per call, pinned to one core."""
    from pyserini.pyclass import autoclass  # pyserini puts its Anserini jar on the classpath

    os.sched_setaffinity(0, {0})
    searcher = autoclass("io.anserini.search.SimpleSearcher")(str(scratch / "pyserini_index"))
    searcher.set_bm25(1.5, 0.75)
    sets = json.loads((scratch / "pyserini_queries.json").read_text())
    for q in sets["generated"][:200]:  # warm-up: the JIT, the page cache
        searcher.search(q, k)
    out: dict[str, Any] = {}
    for label, queries in sets.items():
        cycled = list(itertools.islice(itertools.cycle(queries), n))
        start = time.perf_counter()
        for q in cycled:
            searcher.search(q, k)
        out[f"qps_1core_{label}"] = round(n / (time.perf_counter() - start), 1)
    for label in ("generated", "nq"):
        ids = [[hit.docid for hit in searcher.search(q, K_AGREE)] for q in sets[label]]
        (scratch / f"pyserini_ids_{label}.json").write_text(json.dumps(ids))
    out["rss_after_gib"] = round(kib_of("self", "VmRSS") / 2**20, 2)  # this process and the JVM in it
    return out


def step_agree(scratch: Path, n: int) -> dict[str, Any]:
    """recall@10 (ties as hits) of pyserini's top 10 against exhaustive BM25 with searchrl's tokenizer."""
    import math

    import numpy as np

    from retrieval_bm25_engines import judge, postings, query_sets
    from searchrl.retrieval.bm25 import BM25Retriever, english_stemmer, tokenize
    from searchrl.retrieval.ondisk.store import PassageStore

    index = scratch / "index"
    stemmer = english_stemmer(BM25Retriever.load(index, engine="numpy", mmap=True).stemmed)
    sets = {label: tokenize(qs, stemmer) for label, qs in query_sets(scratch / "corpus.jsonl", n).items()
            if label != "hotpotqa"}  # fmt: skip
    lengths, post = postings(index, {w for qs in sets.values() for q in qs for w in q})
    norm = 1.5 * (0.25 + 0.75 * lengths / lengths.mean())
    store = PassageStore(index / "passages.sqlite")
    out: dict[str, Any] = {}
    for label, queries in sets.items():
        ids = json.loads((scratch / f"pyserini_ids_{label}.json").read_text())
        recall, counted = 0.0, 0
        for words, got in zip(queries, ids, strict=True):
            scores = np.zeros(len(lengths))
            for w in words:
                if w in post:
                    docs, tf = post[w]
                    idf = math.log(1 + (len(lengths) - len(docs) + 0.5) / (len(docs) + 0.5))
                    scores[docs] += idf * tf / (tf + norm[docs])
            if scores.max() <= 0 or len(got) < K_AGREE:
                continue  # no indexed word (or Lucene found fewer than 10): no comparable ranking
            rows = np.array([store.row_of(d) for d in got], dtype=np.int64)
            recall += judge(rows, scores)[2]
            counted += 1
        out[label] = {"queries": counted, "recall_at_10": round(recall / max(counted, 1), 4)}
    return out


def run_all(args: argparse.Namespace) -> None:
    python = Path(args.python)
    if not python.is_file():
        raise SystemExit(f"no side environment at {python}: run scripts/pyserini_venv.sh first")
    if not (args.scratch / "index/manifest.json").is_file():
        raise SystemExit(f"{args.scratch} has no engines benchmark: run retrieval_bm25_engines.py all first")
    saved = args.scratch / "pyserini_build.json"
    if not saved.exists():
        saved.write_text(json.dumps(step_build(args.scratch, python)))
    build = json.loads(saved.read_text())
    write_queries(args.scratch, args.queries)
    common = ["--scratch", str(args.scratch), "--queries", str(args.queries), "--k", str(args.k)]
    res = subprocess.run([str(python), __file__, "search", *common], check=True, stdout=subprocess.PIPE, text=True)
    search = json.loads(res.stdout.strip().splitlines()[-1])
    agree = step_agree(args.scratch, args.queries)
    print(json.dumps({"build": build, "search": search, "agree": agree}, indent=2))
    print(
        f"\n| pyserini 0.22.1 (Lucene) | {build['seconds']} | {build['peak_rss_gib']} | {build['bytes_per_passage']} "
        f"| {search['rss_after_gib']} | {search['qps_1core_generated']} | {search['qps_1core_nq']} "
        f"| {search['qps_1core_hotpotqa']} | recall@10 {agree['generated']['recall_at_10']} "
        f"(NQ {agree['nq']['recall_at_10']}) |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["all", "build", "search", "agree"])
    ap.add_argument("--scratch", type=Path, default=SCRATCH)
    ap.add_argument("--python", default=str(SIDE_PYTHON), help="the side environment's python (pyjnius, pyserini)")
    ap.add_argument("--n", type=int, default=2_000_000, help="unused here; the engines benchmark generated the corpus")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=3)
    args = ap.parse_args()
    if args.step == "all":
        run_all(args)
    elif args.step == "build":
        print(json.dumps(step_build(args.scratch, Path(args.python))))
    elif args.step == "search":
        print(json.dumps(step_search(args.scratch, args.queries, args.k)))
    else:
        print(json.dumps(step_agree(args.scratch, args.queries)))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()

"""BM25 engines side by side (numba, numpy, sparse, tantivy) on the generated corpus of ``retrieval_scale_bm25.py``.

``all`` runs every step below in order, each a fresh process so its peak RSS (``VmHWM``) is its own, then
prints one table and the ratio lines. Files go in a scratch folder outside the repository.

* ``generate`` — the corpus (``retrieval_scale_bm25.generate``), skipped when ``corpus.jsonl`` exists.
* ``build`` — ``build_index_from_file`` (what ``searchrl index build`` runs): the store and the bm25s
  arrays, which numba and numpy both read. Time, peak RSS, bytes per passage.
* ``tantivy`` — ``BM25Retriever.add_engine(folder, "tantivy")``: tantivy's index of the same tokens
  (tokenizing again, writer threads = cores). Time, peak RSS, bytes per passage.
* ``engine NAME`` — the folder loaded as ``searchrl serve`` loads it (``retriever_from_config``), pinned to
  one core; after a warm-up, one query at a time through ``search`` (tokenizing, scoring, store fetch):
  ``--queries`` generated queries (2-5 words from passages, as the scale benchmark draws them), and the
  real NQ and HotpotQA questions of ``../shared/data`` (about 530 and 610 distinct, cycled to
  ``--queries``); also batches of 64. RSS after load and after. Saves each distinct query's top-10 store
  rows for ``agree``.
* ``pair NAME CORE`` — one of two processes, pinned to cores 0 and 1, each answering half of the
  generated queries one at a time; started together once both are loaded: queries/s on both cores.
* ``serve NAME`` — ``searchrl serve`` with the engine (server cache off), requests of 8 from 4 client
  threads, as ``retrieval_scale_bm25.py serve``.
* ``agree`` — exhaustive BM25 in float64 from the tokens (same tokenizer, k1 1.5, b 0.75; and k1 1.2,
  tantivy's), and each engine's top 10 against it on the generated and NQ queries: *exact up to ties*
  (every passage scoring above the 10th score returned, nothing scoring below it; passages within 1e-5
  of the 10th score, float32 rounding, are interchangeable), *identical* (the set equals the reference's
  top 10 with ties broken by lowest row) and recall@10 (ties count as hits). Queries with no indexed
  word are left out (every engine returns score-0 rows for them).

Each finished step of ``all`` is kept in the scratch folder (``result.<step>.json``), so an interrupted
run resumes where it stopped; ``--fresh`` measures every step again.

Usage (niced, when nothing else holds the CPU):
  python benchmarks/retrieval_bm25_engines.py all --n 2000000
  python benchmarks/retrieval_bm25_engines.py all --n 5000 --scratch /tmp/bm25_engines_check  # a check
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval_scale_bm25 import generate, sample_queries
from retrieval_scale_common import RAW, gib, proc_kib, query_load, served

SCRATCH = Path("/tmp/searchrl_bm25_engines")
ENGINE_NAMES = ("numba", "numpy", "sparse", "tantivy")
NQ = RAW / "nq/RUC-NLPIR__FlashRAG/test.jsonl"
HOTPOT = RAW / "hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train.json"
MIXED = RAW / "multi/GAIR-NLP__DeepResearcher/test.parquet"  # 512 questions of each source
K_AGREE = 10


def real_questions(source: str) -> list[str]:
    """Every distinct ``nq`` or ``hotpotqa`` question in ``../shared/data`` (about 530 and 610)."""
    import pyarrow.parquet as pq

    table = pq.read_table(MIXED, columns=["data_source", "prompt"]).to_pylist()
    out = [row["prompt"][0]["content"] for row in table if row["data_source"] == source]
    if source == "nq":
        out += [json.loads(line)["question"] for line in NQ.read_text(encoding="utf-8").splitlines() if line]
    else:
        out += [rec["question"] for rec in json.loads(HOTPOT.read_text(encoding="utf-8"))]
    return list(dict.fromkeys(out))


def query_sets(corpus: Path, n: int) -> dict[str, list[str]]:
    """``n`` generated queries and the real questions (distinct; timings cycle through them to ``n``)."""
    return {"generated": sample_queries(corpus, n, seed=1), "nq": real_questions("nq"),
            "hotpotqa": real_questions("hotpotqa")}  # fmt: skip


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pin(cores: set[int]) -> None:
    os.sched_setaffinity(0, cores)


def load(index: Path, name: str) -> Any:
    from searchrl.config import RetrievalConfig
    from searchrl.retrieval.factory import retriever_from_config

    return retriever_from_config(RetrievalConfig(index_dir=str(index), bm25_engine=name))  # type: ignore[arg-type]


def one_at_a_time(retriever: Any, queries: list[str], k: int) -> float:
    """Queries/s answering ``queries`` one call each."""
    start = time.perf_counter()
    for q in queries:
        retriever.search([q], k)
    return len(queries) / (time.perf_counter() - start)


def step_build(corpus: Path, index: Path) -> dict[str, Any]:
    from searchrl.retrieval.ondisk.build import build_index_from_file

    shutil.rmtree(index, ignore_errors=True)
    start = time.perf_counter()
    build_index_from_file(corpus, index, "bm25", progress=False)
    n = json.loads((index / "manifest.json").read_text())["n_passages"]
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_gib": gib(proc_kib("self", "VmHWM")),
            "passages": n, "bytes_per_passage": round(dir_bytes(index / "bm25") / n, 1),
            "store_bytes_per_passage": round((index / "passages.sqlite").stat().st_size / n, 1)}  # fmt: skip


def step_tantivy(index: Path) -> dict[str, Any]:
    from searchrl.retrieval.bm25 import BM25Retriever

    shutil.rmtree(index / "tantivy", ignore_errors=True)
    start = time.perf_counter()
    BM25Retriever.add_engine(index, "tantivy")
    n = json.loads((index / "manifest.json").read_text())["n_passages"]
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_gib": gib(proc_kib("self", "VmHWM")),
            "bytes_per_passage": round(dir_bytes(index / "tantivy") / n, 1)}  # fmt: skip


def step_engine(name: str, corpus: Path, index: Path, scratch: Path, n: int, k: int) -> dict[str, Any]:
    pin({0})
    start = time.perf_counter()
    retriever = load(index, name)
    loaded = {"load_seconds": round(time.perf_counter() - start, 2), "rss_loaded_gib": gib(proc_kib("self", "VmRSS"))}
    sets = query_sets(corpus, n)
    start = time.perf_counter()
    retriever.search([sets["generated"][0]], k)  # numba: compiles here unless its disk cache has the kernel
    first = round(time.perf_counter() - start, 3)
    for q in sets["generated"][:200]:  # warm-up: page cache, allocator
        retriever.search([q], k)
    cycled = {label: list(itertools.islice(itertools.cycle(qs), n)) for label, qs in sets.items()}
    qps = {f"qps_1core_{label}": round(one_at_a_time(retriever, qs, k), 1) for label, qs in cycled.items()}
    gen = sets["generated"]
    start = time.perf_counter()
    for i in range(0, len(gen), 64):
        retriever.search(gen[i : i + 64], k)
    qps["qps_1core_batched64"] = round(len(gen) / (time.perf_counter() - start), 1)
    for label in ("generated", "nq"):  # top-10 store rows, for agree
        rows = [[retriever.passages.row_of(p.id) for p in r] for r in retriever.search(sets[label], K_AGREE)]
        np.save(scratch / f"rows_{name}_{label}.npy", np.array(rows, dtype=np.int64))
    return {**loaded, "first_query_seconds": first, **qps, "rss_after_gib": gib(proc_kib("self", "VmRSS")),
            "peak_rss_gib": gib(proc_kib("self", "VmHWM")), "rss_anon_gib": gib(proc_kib("self", "RssAnon"))}  # fmt: skip


def step_pair(name: str, core: int, corpus: Path, index: Path, scratch: Path, n: int, k: int) -> dict[str, Any]:
    pin({core})
    retriever = load(index, name)
    queries = sample_queries(corpus, n, seed=1)[core::2]
    for q in queries[:100]:
        retriever.search([q], k)
    (scratch / f"ready.{core}").touch()
    while not (scratch / "go").exists():
        time.sleep(0.01)
    start = time.perf_counter()
    for q in queries:
        retriever.search([q], k)
    return {"queries": len(queries), "seconds": time.perf_counter() - start}


def two_cores(args: argparse.Namespace, name: str) -> float | None:
    """Queries/s of two pinned processes started together (None on a one-core machine)."""
    if len(os.sched_getaffinity(0)) < 2:
        return None
    for f in [args.scratch / "go", args.scratch / "ready.0", args.scratch / "ready.1"]:
        f.unlink(missing_ok=True)
    procs = [
        subprocess.Popen(child(args, "pair", name, str(core)), stdout=subprocess.PIPE, text=True) for core in (0, 1)
    ]
    while not all((args.scratch / f"ready.{core}").exists() for core in (0, 1)):
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"a pair process of {name} exited early")
        time.sleep(0.05)
    (args.scratch / "go").touch()
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return round(sum(r["queries"] for r in results) / max(r["seconds"] for r in results), 1)


def step_serve(name: str, corpus: Path, index: Path, n: int) -> dict[str, Any]:
    queries = sample_queries(corpus, n, seed=1)
    overrides = ["retrieval.kind=bm25", f"retrieval.index_dir={index}", f"retrieval.bm25_engine={name}",
                 "serve.max_queries=64", "serve.cache_size=0"]  # fmt: skip
    with served(overrides, index.parent / f"serve_{name}.log") as (url, proc):
        load = query_load(url, queries, topk=3, batch=8, threads=4)
        rss = gib(proc_kib(proc.pid, "VmRSS"))
    return {"qps_server": load["qps"], "server_rss_gib": rss}


def postings(index: Path, terms: set[str]) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Document lengths [N] and, for each of ``terms``, (rows, term counts), by tokenizing the store."""
    from searchrl.retrieval.bm25 import BM25Retriever, english_stemmer, passage_texts, tokenize_ids
    from searchrl.retrieval.ondisk.store import PassageStore

    stemmer = english_stemmer(BM25Retriever.load(index, engine="numpy", mmap=True).stemmed)
    lengths, parts, base = [], {t: [] for t in terms}, 0  # type: ignore[var-annotated]
    for batch in PassageStore(index / "passages.sqlite").batches(20_000):
        ids, vocab = tokenize_ids(passage_texts(batch), stemmer)
        lens = np.fromiter(map(len, ids), np.int64, len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.int64, int(lens.sum()))
        local = {vocab[t]: t for t in terms if t in vocab}
        keep = np.isin(flat, np.fromiter(local, np.int64, len(local)))
        doc = np.repeat(np.arange(len(ids)), lens)[keep]
        pairs, tf = np.unique(flat[keep] * len(ids) + doc, return_counts=True)  # sorted by term, then doc
        term, doc = pairs // len(ids), pairs % len(ids)
        bounds = np.searchsorted(term, np.unique(term))
        for lo, hi in zip(bounds, [*bounds[1:], len(term)], strict=True):
            parts[local[int(term[lo])]].append((doc[lo:hi] + base, tf[lo:hi]))
        lengths.append(lens)
        base += len(ids)
    post = {t: (np.concatenate([d for d, _ in p]), np.concatenate([f for _, f in p]).astype(np.float64))
            for t, p in parts.items() if p}  # fmt: skip
    return np.concatenate(lengths).astype(np.float64), post


def judge(rows: np.ndarray, scores: np.ndarray) -> tuple[bool, bool, float]:
    """(exact up to ties, identical with ties by lowest row, recall@10 with ties as hits) of one query."""
    k = len(rows)
    kth = np.partition(scores, -k)[-k]
    tol = 1e-5 * kth
    above, ok = np.nonzero(scores > kth + tol)[0], np.nonzero(scores >= kth - tol)[0]  # rows ascending
    got = set(rows.tolist())
    tied = np.setdiff1d(ok, above, assume_unique=True)
    reference = set(above.tolist()) | set(tied[: k - len(above)].tolist())
    return set(above.tolist()) <= got <= set(ok.tolist()), got == reference, len(got & set(ok.tolist())) / k


def step_agree(corpus: Path, index: Path, scratch: Path, n: int) -> dict[str, Any]:
    from searchrl.retrieval.bm25 import BM25Retriever, english_stemmer, tokenize

    stemmer = english_stemmer(BM25Retriever.load(index, engine="numpy", mmap=True).stemmed)
    sets = {label: tokenize(qs, stemmer) for label, qs in query_sets(corpus, n).items() if label != "hotpotqa"}
    lengths, post = postings(index, {w for qs in sets.values() for q in qs for w in q})
    out: dict[str, Any] = {}
    for k1 in (1.5, 1.2):
        norm = k1 * (0.25 + 0.75 * lengths / lengths.mean())
        for label, queries in sets.items():
            rows = {e: np.load(scratch / f"rows_{e}_{label}.npy") for e in ENGINE_NAMES}
            tally = {e: np.zeros(3) for e in ENGINE_NAMES}
            counted = 0
            for i, words in enumerate(queries):
                scores = np.zeros(len(lengths))
                for w in words:
                    if w in post:
                        docs, tf = post[w]
                        idf = math.log(1 + (len(lengths) - len(docs) + 0.5) / (len(docs) + 0.5))
                        scores[docs] += idf * tf / (tf + norm[docs])
                if scores.max() <= 0:
                    continue  # no indexed word: no reference ranking
                counted += 1
                for e in ENGINE_NAMES:
                    tally[e] += judge(rows[e][i], scores)
            for e in ENGINE_NAMES:
                exact, same, recall = (tally[e] / max(counted, 1)).round(4).tolist()
                out[f"{e}/{label}/k1={k1}"] = {"queries": counted, "exact_up_to_ties": exact, "identical": same,
                                               "recall_at_10": recall}  # fmt: skip
    return out


def child(args: argparse.Namespace, *step: str) -> list[str]:
    common = ["--scratch", str(args.scratch), "--n", str(args.n), "--queries", str(args.queries), "--k", str(args.k)]
    return [sys.executable, str(Path(__file__).resolve()), *step, *common]


def run(args: argparse.Namespace, *step: str) -> dict[str, Any]:
    """One step in a fresh process; its last stdout line (JSON)."""
    print(f"-- {' '.join(step)}", file=sys.stderr, flush=True)
    out = subprocess.run(child(args, *step), check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def kept(args: argparse.Namespace, name: str, measure: Any) -> Any:
    """A step's result from ``<scratch>/result.<name>.json`` when an earlier ``all`` finished it (an
    interrupted run resumes at the first unfinished step; delete the files, or use --fresh, to measure
    everything again), else measured now and saved."""
    path = args.scratch / f"result.{name}.json"
    if path.exists() and not args.fresh:
        print(f"-- {name}: kept from {path}", file=sys.stderr, flush=True)
        return json.loads(path.read_text())
    value = measure()
    path.write_text(json.dumps(value))
    return value


def run_all(args: argparse.Namespace) -> None:
    corpus, saved = args.scratch / "corpus.jsonl", {s: args.scratch / f"{s}.json" for s in ("build", "tantivy")}
    if not corpus.exists():
        run(args, "generate")
    if not saved["build"].exists():  # a new build drops the tantivy files too
        saved["tantivy"].unlink(missing_ok=True)
    for step, path in saved.items():  # builds are kept between runs; delete the json to measure again
        if not path.exists():
            path.write_text(json.dumps(run(args, step)))
    build, tv = (json.loads(path.read_text()) for path in saved.values())
    res = {e: kept(args, f"engine.{e}", lambda e=e: run(args, "engine", e)) for e in ENGINE_NAMES}
    for e in ENGINE_NAMES:
        res[e]["qps_2cores"] = kept(args, f"pair.{e}", lambda e=e: two_cores(args, e))
        if not args.no_serve:
            res[e].update(kept(args, f"serve.{e}", lambda e=e: run(args, "serve", e)))
    agree = kept(args, "agree", lambda: run(args, "agree"))
    print(json.dumps({"build": build, "tantivy": tv, "engines": res, "agree": agree}, indent=2))
    n = build["passages"]
    counts = {label: agree[f"numba/{label}/k1=1.5"]["queries"] for label in ("generated", "nq")}
    print(f"\n{n:,} passages; timed: top-{args.k}, {args.queries} queries per set, one per call unless said; "
          f"agreement: top-10 over {counts['generated']} generated queries (NQ: {counts['nq']})\n")  # fmt: skip
    print(
        "| engine | build s | build peak GiB | bytes/passage | RSS GiB | q/s 1 core | NQ | HotpotQA | batched 64 "
        "| 2 cores | server | exact up to ties | identical | recall@10 |"
    )
    print("|---" * 14 + "|")
    for e in ENGINE_NAMES:
        b, r = (tv if e == "tantivy" else build), res[e]
        a = agree[f"{e}/generated/k1=1.5"]
        print(f"| {e} | {b['seconds']} | {b['peak_rss_gib']} | {b['bytes_per_passage']} | {r['rss_after_gib']} "
              f"| {r['qps_1core_generated']} | {r['qps_1core_nq']} | {r['qps_1core_hotpotqa']} "
              f"| {r['qps_1core_batched64']} | {r['qps_2cores']} | {r.get('qps_server', '-')} "
              f"| {a['exact_up_to_ties']} | {a['identical']} | {a['recall_at_10']} |")  # fmt: skip
    best = max(ENGINE_NAMES, key=lambda e: res[e]["qps_1core_generated"])
    print(f"\nBM25 queries/s on one core over {n:,} passages: {res[best]['qps_1core_generated']} ({best}; goal >= 500)")
    if not args.no_serve:
        top = max(ENGINE_NAMES, key=lambda e: res[e]["qps_server"])
        print(f"BM25 queries/s through the server over {n:,} passages: {res[top]['qps_server']} ({top}; goal >= 300)")
    for a_, b_ in (
        ("numba", "numpy"),
        ("sparse", "numba"),
        ("sparse", "numpy"),
        ("tantivy", "numpy"),
        ("sparse", "tantivy"),
    ):
        ratio = res[a_]["qps_1core_generated"] / res[b_]["qps_1core_generated"]
        print(f"ratio {a_} / {b_}, one core: {ratio:.1f}x")
    for e in ENGINE_NAMES:
        two = res[e]["qps_2cores"]
        scale = f"{two / res[e]['qps_1core_generated']:.2f}x" if two else "n/a (one core)"
        print(f"ratio two cores / one core, {e}: {scale}")
        linear = res[e]["qps_1core_generated"] * n / 21_000_000
        print(f"{e} at 21M passages, one core, if time grows linearly with the corpus: {linear:.1f} queries/s")
    print(
        f"tantivy recall@10 vs exhaustive BM25 at its own k1 1.2: {agree['tantivy/generated/k1=1.2']['recall_at_10']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["all", "generate", "build", "tantivy", "engine", "pair", "serve", "agree"])
    ap.add_argument("args", nargs="*", help="engine NAME | pair NAME CORE | serve NAME")
    ap.add_argument("--scratch", type=Path, default=SCRATCH)
    ap.add_argument("--n", type=int, default=2_000_000, help="passages to generate")
    ap.add_argument("--queries", type=int, default=1000, help="queries per set (generated, NQ, HotpotQA)")
    ap.add_argument("--k", type=int, default=3, help="top-k of the timed searches (agreement uses 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-serve", action="store_true", help="skip the searchrl serve measurement")
    ap.add_argument("--fresh", action="store_true", help="measure every step again (builds stay kept)")
    args = ap.parse_args()
    corpus, index, s = args.scratch / "corpus.jsonl", args.scratch / "index", args.scratch
    result: dict[str, Any] | None = None
    if args.step == "all":
        run_all(args)
    elif args.step == "generate":
        generate(corpus, args.n, args.seed)
    elif args.step == "build":
        result = step_build(corpus, index)
    elif args.step == "tantivy":
        result = step_tantivy(index)
    elif args.step == "engine":
        result = step_engine(args.args[0], corpus, index, s, args.queries, args.k)
    elif args.step == "pair":
        result = step_pair(args.args[0], int(args.args[1]), corpus, index, s, args.queries, args.k)
    elif args.step == "serve":
        result = step_serve(args.args[0], corpus, index, args.queries)
    else:
        result = step_agree(corpus, index, s, args.queries)
    if result is not None:
        print(json.dumps(result))


if __name__ == "__main__":
    main()

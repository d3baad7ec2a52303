"""BM25 at 2M passages: a generated wiki-like corpus, streaming ingest + BM25 build, then the server.

Three steps, each a fresh process so its peak RSS (``VmHWM``) is its own; the files go in a scratch
folder outside the repository (default ``/tmp/searchrl_scale``), never committed:

* ``generate`` — ``--n`` passages of 100 words each plus a 1-3 word title, in Search-R1 jsonl. Words
  follow a Zipf-Mandelbrot law (``p(r) ~ 1 / (r + 2.7)``) over a vocabulary whose head is the real
  words of the wiki samples in ``../shared/data/raw`` ranked by their frequency there (so the most
  common words are real stopwords and function words) and whose tail is 1M synthetic words of 2-5 syllables,
  the long tail of names and rare words a Wikipedia dump has. Seeded, so reruns give the same file.
* ``build`` — ``build_index_from_file`` (what ``searchrl index build`` runs): the corpus streamed into
  the SQLite store, deduplicated on disk, then BM25 over the store in bounded memory. Prints time,
  peak RSS and the on-disk bytes of each component.
* ``serve`` — ``searchrl serve`` over the folder (BM25 memory-mapped), then ``--queries`` queries of
  2-5 words drawn from random passages, sent in requests of 8 from 4 client threads; prints queries/s
  and the server's RSS (now and peak).

Usage (niced, in the background, one at a time):
  python benchmarks/retrieval_scale_bm25.py generate --n 2000000
  python benchmarks/retrieval_scale_bm25.py build
  python benchmarks/retrieval_scale_bm25.py serve
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

from retrieval_scale_common import RAW, gib, proc_kib, query_load, served

SCRATCH = Path("/tmp/searchrl_scale")
SAMPLES = [
    "wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl",
    "wikipedia/RUCAIBox__R1-Searcher/filtered_kilt_sample_100.jsonl",
    "hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train_corpus.json",
]
SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ne",
    "ru",
    "sa",
    "ti",
    "vo",
    "ba",
    "de",
    "fi",
    "gu",
    "ha",
    "je",
    "ko",
    "la",
    "mu",
    "no",
    "pe",
    "qui",
    "ra",
    "se",
    "to",
    "va",
    "wy",
    "zo",
    "an",
    "el",
    "in",
    "or",
    "us",
]


def vocabulary(rng: np.random.Generator, tail: int = 1_000_000) -> np.ndarray:
    """Real sample words by frequency, then ``tail`` distinct synthetic words."""
    counts: Counter[str] = Counter()
    for name in SAMPLES:
        counts.update(re.findall(r"[A-Za-z][a-z]+|\d+", (RAW / name).read_text(encoding="utf-8")))
    head = [w for w, _ in counts.most_common()]
    seen = set(head)
    words = list(head)
    while len(words) < len(head) + tail:
        n = rng.integers(2, 6, size=200_000)
        parts = rng.integers(0, len(SYLLABLES), size=(200_000, 5))
        for k, row in zip(n.tolist(), parts.tolist(), strict=True):
            w = "".join(SYLLABLES[i] for i in row[:k])
            if w not in seen:
                seen.add(w)
                words.append(w)
    return np.array(words[: len(head) + tail], dtype=object)


def generate(out: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng)
    cdf = np.cumsum(1.0 / (np.arange(len(vocab)) + 2.7))
    cdf /= cdf[-1]
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    chunk = 20_000
    with open(out, "w", encoding="utf-8") as fh:
        for first in range(0, n, chunk):
            m = min(chunk, n - first)
            words = vocab[np.searchsorted(cdf, rng.random((m, 100)))]
            titles = vocab[np.searchsorted(cdf, rng.random((m, 3)) * 0.2 + 0.8)]  # titles: rarer words
            title_len = rng.integers(1, 4, size=m)
            lines = []
            for i in range(m):
                title = " ".join(w.capitalize() for w in titles[i, : title_len[i]])
                contents = f'"{title}"\n' + " ".join(words[i])
                lines.append(json.dumps({"id": str(first + i), "contents": contents}, ensure_ascii=False))
            fh.write("\n".join(lines) + "\n")
    print(json.dumps({"passages": n, "vocab": len(vocab), "bytes": out.stat().st_size,
                      "seconds": round(time.perf_counter() - start, 1)}))  # fmt: skip


def build(corpus: Path, out: Path) -> None:
    from searchrl.retrieval.ondisk.build import build_index_from_file

    start = time.perf_counter()
    build_index_from_file(corpus, out, "bm25", progress=False)
    seconds = time.perf_counter() - start
    manifest = json.loads((out / "manifest.json").read_text())
    sizes = {p.name: p.stat().st_size for p in (out / "bm25").iterdir()}
    n = manifest["n_passages"]
    report = {
        "passages": n,
        "seconds": round(seconds, 1),
        "peak_rss_gib": gib(proc_kib("self", "VmHWM")),
        "bytes_store": manifest["bytes_store"],
        "bytes_bm25": sizes,
        "bytes_per_passage": {
            "store": round(manifest["bytes_store"] / n, 1),
            "bm25": round(sum(sizes.values()) / n, 1),
        },
        "bm25": manifest["bm25"],
    }
    print(json.dumps(report, indent=2))


def sample_queries(corpus: Path, n: int, seed: int) -> list[str]:
    """``n`` queries of 2-5 words from random passages of the first 200k lines."""
    rng = np.random.default_rng(seed)
    lines = []
    with open(corpus, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= 200_000:
                break
            lines.append(line)
    out = []
    for i in rng.integers(0, len(lines), size=n).tolist():
        words = json.loads(lines[i])["contents"].split("\n", 1)[1].split()
        k = int(rng.integers(2, 6))
        start = int(rng.integers(0, len(words) - k))
        out.append(" ".join(words[start : start + k]))
    return out


def serve(corpus: Path, index: Path, n_queries: int, threads: int) -> None:
    queries = sample_queries(corpus, n_queries, seed=1)
    log = index.parent / "serve_bm25.log"
    with served(["retrieval.kind=bm25", f"retrieval.index_dir={index}", "serve.max_queries=64"], log) as (url, proc):
        idle = {"rss_gib": gib(proc_kib(proc.pid, "VmRSS"))}
        load = query_load(url, queries, topk=3, batch=8, threads=threads)
        after = {"rss_gib": gib(proc_kib(proc.pid, "VmRSS")), "peak_rss_gib": gib(proc_kib(proc.pid, "VmHWM")),
                 "rss_file_gib": gib(proc_kib(proc.pid, "RssFile")), "rss_anon_gib": gib(proc_kib(proc.pid, "RssAnon"))}  # fmt: skip
    print(json.dumps({"server_after_load": idle, **load, "server": after}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["generate", "build", "serve"])
    ap.add_argument("--scratch", type=Path, default=SCRATCH)
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    corpus, index = args.scratch / "corpus.jsonl", args.scratch / "bm25_index"
    if args.step == "generate":
        generate(corpus, args.n, args.seed)
    elif args.step == "build":
        build(corpus, index)
    else:
        serve(corpus, index, args.queries, args.threads)


if __name__ == "__main__":
    main()

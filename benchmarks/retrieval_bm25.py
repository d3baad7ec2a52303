"""BM25 query throughput, one run, one ratio: ours (``BM25Retriever``, bm25s, batched) vs ``rank_bm25``.

Corpus: the union of the HotpotQA, MuSiQue (HippoRAG) and 2Wiki passage corpora in ``../shared/data/raw``
(about 9,000 passages). Queries: real questions (R1-Searcher's 2Wiki and MuSiQue 500-question sets and
HippoRAG's HotpotQA sample). Both engines index the same tokens (bm25s's tokenizer: lowercase, English
stopwords removed); ``rank_bm25.BM25Okapi`` gets its queries pre-tokenized and untimed, while ours is
timed end to end (tokenizing included) through the public ``search`` — so the ratio is conservative.
The two rank with slightly different IDF formulas (Lucene vs Okapi with an epsilon floor), so top-3
agreement is printed alongside, for information.

Usage: .venv/bin/python benchmarks/retrieval_bm25.py [--rank-bm25-queries 300] [--k 3]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.retrieval.corpus import load_corpus
from searchrl.types import Passage

RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "raw"
CORPORA = [
    "2wikimultihopqa/OSU-NLP-Group__HippoRAG/2wikimultihopqa_corpus.json",
    "hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train_corpus.json",
    "musique/OSU-NLP-Group__HippoRAG/musique_train_corpus.json",
]
QUESTION_FILES = [
    "2wikimultihopqa/RUCAIBox__R1-Searcher/2wiki_500.jsonl",
    "musique/RUCAIBox__R1-Searcher/musique_500.jsonl",
]
HOTPOT_QA = "hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train.json"


def load_real_data(raw: Path = RAW) -> tuple[list[Passage], list[str]]:
    """The union corpus (duplicates across sources dropped) and the real questions."""
    seen: set[tuple[str, str]] = set()
    passages: list[Passage] = []
    for name in CORPORA:
        for p in load_corpus(raw / name):
            if (p.title, p.text) not in seen:
                seen.add((p.title, p.text))
                passages.append(Passage(id=f"{len(passages)}", title=p.title, text=p.text))
    questions = []
    for name in QUESTION_FILES:
        with open(raw / name, encoding="utf-8") as fh:
            questions += [json.loads(line)["question"] for line in fh if line.strip()]
    questions += [rec["question"] for rec in json.loads((raw / HOTPOT_QA).read_text(encoding="utf-8"))]
    return passages, questions


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """Fastest wall time of ``runs`` calls of ``fn`` (seconds)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rank-bm25-queries", type=int, default=300, help="queries timed for rank_bm25 (slow)")
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args()

    import bm25s
    from rank_bm25 import BM25Okapi

    passages, questions = load_real_data()
    print(f"corpus: {len(passages)} passages; queries: {len(questions)} real questions; top-{args.k}")

    start = time.perf_counter()
    ours = BM25Retriever.build(passages)
    print(f"ours: index built in {time.perf_counter() - start:.2f} s (stemmed={ours.stemmed})")
    stemmer = None
    if ours.stemmed:
        import Stemmer

        stemmer = Stemmer.Stemmer("english")
    doc_tokens = bm25s.tokenize(
        [f"{p.title}\n{p.text}" for p in passages],
        stopwords="en",
        stemmer=stemmer,
        return_ids=False,
        show_progress=False,
    )
    start = time.perf_counter()
    theirs = BM25Okapi(doc_tokens)
    print(f"rank_bm25: index built in {time.perf_counter() - start:.2f} s")

    ours.search(questions[:50], args.k)  # warm-up
    t_ours = best_of(3, lambda: ours.search(questions, args.k))
    qps_ours = len(questions) / t_ours

    sample = questions[: args.rank_bm25_queries]
    q_tokens = bm25s.tokenize(sample, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)
    start = time.perf_counter()
    theirs_top = [theirs.get_top_n(toks, passages, n=args.k) for toks in q_tokens]
    qps_theirs = len(sample) / (time.perf_counter() - start)

    ours_top = ours.search(sample, args.k)
    same_top1 = sum(a[0].id == b[0].id for a, b in zip(ours_top, theirs_top, strict=True)) / len(sample)
    overlap = sum(len({p.id for p in a} & {p.id for p in b}) for a, b in zip(ours_top, theirs_top, strict=True))
    print(f"ours (batched, {len(questions)} queries, best of 3): {qps_ours:,.0f} queries/s")
    print(f"rank_bm25 BM25Okapi.get_top_n ({len(sample)} queries): {qps_theirs:,.1f} queries/s")
    print(f"ratio ours / rank_bm25: {qps_ours / qps_theirs:,.1f}x  (goal >= 20x)")
    print(
        f"agreement on {len(sample)} queries: top-1 {same_top1:.1%}, top-{args.k} overlap {overlap / (len(sample) * args.k):.1%}"
    )


if __name__ == "__main__":
    main()

"""Greedy agent evaluation throughput by batch size, one run: the same questions at batch 16 and larger.

    .venv/bin/python benchmarks/eval_batch.py RUN_DIR [--n 32] [--sizes 16,32]

RUN_DIR is a run folder with a checkpoint (e.g. an experiment's warm_start). Questions: the first n
2-hop test questions of the world named by the environment (default: the medium world of seed 1, the
experiments' world). Prints questions/s per batch size, the ratio to the first size, and how many greedy
answers agree with the first size (padding changes float sums, so a few can differ).
"""

from __future__ import annotations

import argparse
import time

from searchrl.data.world import generate_world
from searchrl.eval.run import evaluate
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.rollout.build import build_rollout
from searchrl.rollout.hf import HFGenerator
from searchrl.trainer.checkpoint import load_trained_policy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--sizes", default="16,32")
    ap.add_argument("--world-seed", type=int, default=1)
    ap.add_argument("--world-size", default="medium")
    args = ap.parse_args()
    world = generate_world(args.world_seed, args.world_size)
    questions = [e for e in world.questions["test"] if e.metadata.get("type") == "2hop"][: args.n]
    retriever = BM25Retriever.build(world.passages)
    cfg, policy, tok, _ = load_trained_policy(args.run_dir)
    first: list[str | None] = []
    base = 0.0
    for size in (int(s) for s in args.sizes.split(",")):
        t = time.perf_counter()
        engine = build_rollout(cfg, HFGenerator(policy, tok), retriever, tok)
        rows = evaluate("agent", questions, engine, batch_size=size)
        rate = len(rows) / (time.perf_counter() - t)
        answers = [r.answer for r in rows]
        first = first or answers
        base = base or rate
        same = sum(a == b for a, b in zip(first, answers, strict=True))
        print(
            f"batch {size}: {rate:.3f} questions/s, ratio {rate / base:.2f}, answers equal to the first {same}/{len(rows)}"
        )


if __name__ == "__main__":
    main()

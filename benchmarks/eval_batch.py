"""Greedy agent evaluation throughput by batch size, one run: the same questions at each batch size.

    .venv/bin/python benchmarks/eval_batch.py RUN_DIR [--n 64] [--sizes 16,8,32,64] [--unshared 16]

RUN_DIR is a run folder with a checkpoint (e.g. an experiment's warm_start). Questions: the first n/2
1-hop and n/2 2-hop test questions of the world (default: the medium world of seed 1, the experiments'
world), as the held-out sets mix them. Every size runs with the HF backend's shared prefill (the common
instruction once per batch, each prompt once); ``--unshared`` sizes run once more without it. Prints
questions/s per setting, the ratio to the first, and how many greedy answers agree with the first
(padding changes float sums, so a few can differ), then the fastest size.
"""

from __future__ import annotations

import argparse
import time

from searchrl.data.world import generate_world
from searchrl.eval.run import EVAL_BATCH, evaluate
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.rollout.build import build_rollout
from searchrl.rollout.hf import HFGenerator
from searchrl.trainer.checkpoint import load_trained_policy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--sizes", default="16,8,32,64")
    ap.add_argument("--unshared", default="16", help="sizes also run without the shared prefill ('' = none)")
    ap.add_argument("--world-seed", type=int, default=1)
    ap.add_argument("--world-size", default="medium")
    args = ap.parse_args()
    world = generate_world(args.world_seed, args.world_size)
    test = world.questions["test"]
    questions = [e for e in test if e.metadata.get("type") == "1hop"][: args.n // 2]
    questions += [e for e in test if e.metadata.get("type") == "2hop"][: args.n - len(questions)]
    retriever = BM25Retriever.build(world.passages)
    cfg, policy, tok, _ = load_trained_policy(args.run_dir)
    settings = [(int(x), True) for x in args.sizes.split(",")]
    settings += [(int(x), False) for x in args.unshared.split(",") if x]
    warm = build_rollout(cfg, HFGenerator(policy, tok), retriever, tok)
    evaluate("agent", questions[:4], warm, batch_size=4)  # unmeasured: first-call costs (allocator, caches)
    first: list[str | None] = []
    base = 0.0
    rates: dict[int, float] = {}
    for size, shared in settings:
        t = time.perf_counter()
        engine = build_rollout(cfg, HFGenerator(policy, tok, share_prefill=shared), retriever, tok)
        rows = evaluate("agent", questions, engine, batch_size=size)
        rate = len(rows) / (time.perf_counter() - t)
        answers = [r.answer for r in rows]
        first = first or answers
        base = base or rate
        if shared:
            rates[size] = rate
        same = sum(a == b for a, b in zip(first, answers, strict=True))
        print(
            f"batch {size}{'' if shared else ' (no shared prefill)'}: {rate:.3f} questions/s, ratio {rate / base:.2f},"
            f" answers equal to the first {same}/{len(rows)}",
            flush=True,
        )
    best = max(rates, key=lambda k: rates[k])
    print(f"Eval batch size fastest on this machine: {best} ({rates[best]:.3f} questions/s)")
    print(f"searchrl.eval.run.EVAL_BATCH today: {EVAL_BATCH} (set it to the fastest size to make that the default)")


if __name__ == "__main__":
    main()

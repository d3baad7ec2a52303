"""Fault drill: a training run against two retrieval replicas, one killed (SIGKILL) mid-run.

Two ``searchrl serve`` processes serve the same BM25 index folder (the default world's passages) on two
ports. ``searchrl.trainer.loop.Trainer`` runs as it is (tiny 2-layer model over the real tokenizer,
GRPO) with ``retrieval.kind=http`` and both URLs. A random tiny model never writes a search tag, so the
rollout engine's generator backend is a scripted one whose every sample searches twice, then answers:
the trainer, rollout engine, multi-URL client and servers are the real ones. After step 2 replica A is
killed; the run must finish every step with no error, replica B must have answered searches after the
kill, and every step's ``rollout/searches`` must be the full count (no search lost).

Usage: python benchmarks/retrieval_fault_drill.py [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import threading
import time
from pathlib import Path

import httpx

from retrieval_scale_common import served


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--kill-after", type=int, default=2)
    args = ap.parse_args()

    from searchrl.config import load_config
    from searchrl.data.sources import load_source
    from searchrl.data.world import default_world
    from searchrl.metrics import read_metrics
    from searchrl.models import load_tokenizer, tiny_model
    from searchrl.retrieval.factory import retriever_from_config
    from searchrl.retrieval.ondisk.build import build_index
    from searchrl.rollout.scripted import ScriptedBackend
    from searchrl.trainer.loop import Trainer

    scratch = Path(tempfile.mkdtemp(prefix="searchrl_drill_"))
    world = default_world()
    folder = build_index(world.passages, scratch / "idx", "bm25", progress=False)
    serve = ["retrieval.kind=bm25", f"retrieval.index_dir={folder}"]
    with served(serve, scratch / "a.log") as (url_a, proc_a), served(serve, scratch / "b.log") as (url_b, _):
        overrides = [
            "retrieval.kind=http", f"retrieval.url=[{url_a}, {url_b}]", "retrieval.timeout_s=5",
            f"train.steps={args.steps}", "train.lora_r=0", "train.prompts_per_step=2", "train.mini_batch=4",
            "train.micro_batch=2", "train.checkpoint_every=100", "train.kl_coef=0.0", "train.algorithm=grpo",
            "rollout.group_size=2", "rollout.max_new_tokens=16", "rollout.max_turns=3",
        ]  # fmt: skip
        cfg = load_config(None, overrides)
        tok = load_tokenizer("smollm2-135m-instruct")
        model = tiny_model(tok, layers=2, hidden=64, heads=4, seed=0)
        examples = load_source("world:default", "train")
        retriever = retriever_from_config(cfg.retrieval)
        trainer = Trainer(cfg, model, tok, retriever, examples, scratch / "run")
        rows = cfg.train.prompts_per_step * cfg.rollout.group_size
        script = ["<search> born in city </search>", "<search> founder of </search>", "<answer> Paris </answer>"]
        trainer.engine.backend = ScriptedBackend(tok, [script] * rows)
        killed_at: list[float] = []

        def killer() -> None:
            metrics = scratch / "run" / "metrics.jsonl"
            while not metrics.exists() or len(metrics.read_text().splitlines()) < args.kill_after:
                time.sleep(0.05)
            proc_a.send_signal(signal.SIGKILL)
            killed_at.append(time.time())

        threading.Thread(target=killer, daemon=True).start()
        start = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - start
        a_alive = proc_a.poll() is None
        health_b = httpx.get(url_b.removesuffix("/retrieve") + "/health").json()
    history = read_metrics(scratch / "run" / "metrics.jsonl")
    steps = [int(m["step"]) for m in history]
    searches = [m["rollout/searches"] for m in history]
    report = {
        "steps": steps,
        "searches_per_sample": searches,
        "replica_a_killed": bool(killed_at) and not a_alive,
        "replica_b_healthy": health_b.get("status") == "ok",
        "client_alive_after": retriever.alive(),  # type: ignore[attr-defined]
        "seconds": round(seconds, 1),
    }
    print(json.dumps(report, indent=2))
    ok = steps == list(range(1, args.steps + 1)) and report["replica_a_killed"] and min(searches) == max(searches)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""F2's mechanism, measured on fixed text: how each RL arm's policy scores the injected passages.

Training-batch metrics (``actor/injected_logprob``) move with the batch: each step samples new questions
and new passages. This script holds the text fixed. The experiment's warm start samples one trajectory per
question on the first ``--n`` questions of a split (dev by default, never the held-out test questions),
and every arm x seed scores those same tokens at its first and last checkpoint:

* ``injected``: mean log-prob per injected token (retrieved passages, tags) — the quantity the unmasked
  ablation trains up, since it puts the passages in the loss;
* ``policy``: mean log-prob per token the warm start wrote (how far the policy drifted from it).

Usage: .venv/bin/python scripts/mechanism.py runs/experiments/search_r1_f2 --arms grpo grpo_unmasked
Writes EXPERIMENT/mechanism.json and prints a markdown table (one row per arm x seed x checkpoint).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from searchrl.data.world import generate_world
from searchrl.experiment.spec import ExperimentSpec
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.rollout.backend import SamplingParams
from searchrl.rollout.build import build_rollout
from searchrl.rollout.engine import RolloutRequest
from searchrl.rollout.hf import HFGenerator
from searchrl.rollout.prompts import prompt_ids
from searchrl.trainer.batch import RolloutBatch, collate
from searchrl.trainer.checkpoint import checkpoint_dir, load_trained_policy, load_weights
from searchrl.trainer.logprobs import token_logprobs


@torch.no_grad()
def mean_logprobs(policy, batch: RolloutBatch, micro: int = 4) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Mean log-prob per injected token and per policy token of ``batch``."""
    policy.eval()
    sums = {"injected": 0.0, "policy": 0.0}
    for s in range(0, batch.size, micro):
        sub = batch.select(torch.arange(s, min(s + micro, batch.size)))
        both = (sub.injected_mask + sub.policy_mask).clamp(max=1)
        lp, _ = token_logprobs(policy, sub.input_ids, sub.attention_mask, both)
        sums["injected"] += float((lp * sub.injected_mask).sum())
        sums["policy"] += float((lp * sub.policy_mask).sum())
    return {
        "injected": sums["injected"] / float(batch.injected_mask.sum()),
        "policy": sums["policy"] / float(batch.policy_mask.sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("experiment", type=Path)
    ap.add_argument("--arms", nargs="+", required=True)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--split", default="dev")
    args = ap.parse_args()
    out: Path = args.experiment
    spec = ExperimentSpec.model_validate(yaml.safe_load((out / "spec.yaml").read_text()))
    world = generate_world(spec.world.seed, spec.world.size)  # type: ignore[arg-type]
    retriever = BM25Retriever.build(world.passages)
    questions = [e for e in world.questions[args.split] if e.metadata.get("type") in spec.rl_types][: args.n]
    cfg, warm, tok, _ = load_trained_policy(out / "warm_start")
    engine = build_rollout(cfg, HFGenerator(warm, tok), retriever, tok)
    r = cfg.rollout
    reqs = [RolloutRequest(e.id, 0, prompt_ids(tok, engine.protocol, e.question)) for e in questions]
    trajs = [t for t in engine.run(reqs, SamplingParams(temperature=r.temperature), seed=0) if t.n_searches > 0]
    batch = collate(trajs, [0.0] * len(trajs), list(range(len(trajs))), int(tok.pad_token_id))
    print(f"{len(trajs)} warm-start trajectories with a search; {int(batch.injected_mask.sum())} injected tokens")
    rows = [{"arm": "warm_start", "seed": None, "step": 0, **mean_logprobs(warm, batch)}]
    for arm in args.arms:
        for seed_dir in sorted((out / "arms" / arm).glob("seed*")):
            _, policy, _, last = load_trained_policy(seed_dir)
            end = mean_logprobs(policy, batch)
            load_weights(checkpoint_dir(seed_dir, 0), "policy", policy)
            start = mean_logprobs(policy, batch)
            seed = int(seed_dir.name.removeprefix("seed"))
            rows += [{"arm": arm, "seed": seed, "step": 0, **start}, {"arm": arm, "seed": seed, "step": last, **end}]
            print(
                f"{arm} seed {seed}: injected {start['injected']:.3f} -> {end['injected']:.3f}, "
                f"policy {start['policy']:.3f} -> {end['policy']:.3f}",
                flush=True,
            )
    record = {"questions": len(questions), "split": args.split, "trajectories": len(trajs), "rows": rows}
    (out / "mechanism.json").write_text(json.dumps(record, indent=1))
    print("\n| arm | seed | step | injected log-prob / token | policy-token log-prob |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['arm']} | {row['seed']} | {row['step']} | {row['injected']:.3f} | {row['policy']:.3f} |")


if __name__ == "__main__":
    main()

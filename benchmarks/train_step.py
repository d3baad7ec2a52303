"""Training-step efficiency, one run, ratios (SmolLM2-135M-Instruct on this machine's CPU).

1. Update FLOP/s as a fraction of the machine's matmul peak, measured in the same run, for fp32 and
   bf16: one full fine-tuning step (log-probs on every response position, backward, AdamW) on
   B x T tokens; FLOPs counted as 6 x parameters x tokens (forward 2, backward 4) plus attention.
2. Peak memory of computing target log-probs: ours (``token_logprobs``: the transformer body once, the
   vocabulary head in chunks, only at masked positions) vs the naive full-vocabulary fp32
   ``log_softmax`` over every position. Each variant runs in a fresh subprocess; the number is the
   growth of peak resident memory over the same process after loading the model.

Usage: .venv/bin/python benchmarks/train_step.py [--batch 4] [--tokens 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def update_flops(dtype: torch.dtype, batch: int, tokens: int) -> tuple[float, float]:
    """(achieved FLOP/s, seconds per step) of one full fine-tuning step."""
    from searchrl.algorithms.masked import masked_mean
    from searchrl.models import load_policy
    from searchrl.trainer.policy import token_logprobs

    model, _ = load_policy("smollm2-135m-instruct")
    model = model.to(dtype).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    ids = torch.randint(20, 40000, (batch, tokens))
    attn = torch.ones_like(ids)
    mask = torch.ones(batch, tokens - 1)
    n_params = sum(p.numel() for p in model.parameters())
    cfg = model.config
    attn_flops = 12 * cfg.num_hidden_layers * cfg.hidden_size * tokens * tokens * batch / 2  # causal half
    flops = 6 * n_params * batch * tokens + attn_flops
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        lp, _ = token_logprobs(model, ids, attn, mask)
        loss = -masked_mean(lp, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    best = min(times[1:])
    return flops / best, best


def logprob_memory(kind: str, batch: int, tokens: int) -> float:
    """Peak RSS growth (MB) of one log-prob computation with gradients, in this fresh process."""
    from searchrl.models import load_policy
    from searchrl.trainer.policy import token_logprobs

    model, _ = load_policy("smollm2-135m-instruct")
    ids = torch.randint(20, 40000, (batch, tokens))
    attn = torch.ones_like(ids)
    mask = torch.zeros(batch, tokens - 1)
    mask[:, tokens // 2 :] = 1  # the response half of each sequence
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind == "ours":
        lp, _ = token_logprobs(model, ids, attn, mask)
    else:
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0] * mask
    lp.sum().backward()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--memory", choices=["ours", "naive"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory:
        print(json.dumps({"mb": logprob_memory(args.memory, args.batch, args.tokens)}))
        return
    print(f"threads {torch.get_num_threads()}, batch {args.batch} x {args.tokens} tokens")
    for dtype in (torch.float32, torch.bfloat16):
        peak = matmul_peak(dtype)
        achieved, secs = update_flops(dtype, args.batch, args.tokens)
        print(
            f"{dtype!s:15s} matmul peak {peak / 1e9:6.1f} GFLOP/s; update {achieved / 1e9:6.1f} GFLOP/s "
            f"({secs:.2f} s/step); fraction {achieved / peak:.2f} (goal >= 0.5)"
        )
    mem = {}
    for kind in ("ours", "naive"):
        cmd = [sys.executable, __file__, "--memory", kind, "--batch", str(args.batch), "--tokens", str(args.tokens)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        mem[kind] = json.loads(out)["mb"]
    print(
        f"log-prob peak memory: ours {mem['ours']:.0f} MB, naive {mem['naive']:.0f} MB, "
        f"ratio {mem['ours'] / mem['naive']:.2f} (goal <= 0.25)"
    )


if __name__ == "__main__":
    main()

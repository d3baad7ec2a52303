"""Training-step efficiency, one run, ratios (SmolLM2-135M-Instruct on this machine's CPU).

1. Update FLOP/s as a fraction of the machine's matmul peak, measured in the same run, for fp32 and
   bf16: one full fine-tuning step (log-probs on every response position, backward, AdamW) on
   B x T tokens; FLOPs counted as 6 x parameters x tokens (forward 2, backward 4) plus attention.
2. Peak memory of turning hidden states into target log-probs (forward and backward): ours (the
   vocabulary head in chunks, only at masked positions, logsumexp instead of log_softmax) vs the naive
   full-vocabulary fp32 ``log_softmax`` over every position. "Ours" is ``algorithms.logprobs.head_logprobs``
   as the trainer calls it: the head applied in chunks only at masked positions, logsumexp instead of
   log_softmax, and the logits recomputed in the backward pass instead of stored. Measured with the head
   frozen (LoRA, the recipes' setting) and trained (full fine-tuning adds a vocabulary-sized weight
   gradient to both). Each variant runs in a fresh subprocess; the number is the growth of peak resident
   memory after the transformer body has run.

Usage: .venv/bin/python benchmarks/train_step.py [--batch 4] [--tokens 256] [--dtypes float32,bfloat16]
On a CPU without native bf16 (AVX2 only, like this one) a bf16 step at the default size takes minutes;
`--batch 2 --tokens 128 --peak-n 1024` measures both dtypes on the same shapes in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """The best of ``a @ b`` and ``F.linear`` (the op every projection in the model uses) on n x n inputs.

    They can differ by 10x: on this AVX2 CPU a bf16 ``a @ b`` runs ~1.3 GFLOP/s, a bf16 ``F.linear``
    ~15 GFLOP/s, so a peak taken from ``a @ b`` alone would flatter the bf16 update."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = 0.0
    for op in (torch.matmul, torch.nn.functional.linear):
        op(a, b)  # warm-up
        t0 = time.perf_counter()
        for _ in range(reps):
            op(a, b)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0))
    return best


def update_flops(dtype: torch.dtype, batch: int, tokens: int) -> tuple[float, float]:
    """(achieved FLOP/s, seconds per step) of one full fine-tuning step."""
    from searchrl.algorithms.masked import masked_mean
    from searchrl.models import load_policy
    from searchrl.trainer.logprobs import token_logprobs

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


def peak_rss_mb() -> float:
    """This process's resident high-water mark. Read from /proc (VmHWM) rather than getrusage: Linux
    carries the parent's ru_maxrss across fork + exec, which hid the child's own peak after a big parent."""
    from pathlib import Path

    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def logprob_memory(kind: str, batch: int, tokens: int, head_grad: bool) -> float:
    """Peak RSS growth (MB) of the vocabulary-head part of a log-prob computation with gradients.

    The transformer body runs first (its hidden states are the same input for both variants); what is
    measured is turning hidden states into target log-probs and back-propagating to them.
    """
    from searchrl.algorithms.logprobs import head_logprobs
    from searchrl.models import load_policy
    from searchrl.trainer.logprobs import LOGPROB_CHUNK

    model, _ = load_policy("smollm2-135m-instruct")
    head = model.get_output_embeddings()
    head.weight.requires_grad_(head_grad)
    ids = torch.randint(20, 40000, (batch, tokens))
    mask = torch.zeros(batch, tokens - 1, dtype=torch.bool)
    mask[:, tokens // 2 :] = True  # the response half of each sequence
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state[:, :-1].contiguous()
    hidden.requires_grad_(True)
    targets = ids[:, 1:]
    base = peak_rss_mb()
    if kind == "ours":  # what trainer.logprobs.token_logprobs does after the body
        lp = head_logprobs(hidden[mask], head.weight, targets[mask], chunk=LOGPROB_CHUNK)
    else:
        logits = head(hidden).float()
        lp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0][mask]
    lp.sum().backward()
    return peak_rss_mb() - base


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--dtypes", default="float32,bfloat16", help="which update dtypes to time")
    ap.add_argument(
        "--peak-n",
        type=int,
        default=2048,
        help="matmul size for the peak (a bf16 a @ b at 2048 takes over a minute on an AVX2-only CPU)",
    )
    ap.add_argument("--memory", choices=["ours", "naive"], help=argparse.SUPPRESS)
    ap.add_argument("--head-grad", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory:
        print(json.dumps({"mb": logprob_memory(args.memory, args.batch, args.tokens, args.head_grad)}))
        return
    print(f"threads {torch.get_num_threads()}, batch {args.batch} x {args.tokens} tokens")
    for dtype in (getattr(torch, name) for name in args.dtypes.split(",") if name):
        peak = matmul_peak(dtype, n=args.peak_n)
        achieved, secs = update_flops(dtype, args.batch, args.tokens)
        print(
            f"{dtype!s:15s} matmul peak {peak / 1e9:6.1f} GFLOP/s; update {achieved / 1e9:6.1f} GFLOP/s "
            f"({secs:.2f} s/step); fraction {achieved / peak:.2f} (goal >= 0.5)"
        )
    for head_grad, label in ((False, "frozen head (LoRA, as in the recipes)"), (True, "head trained (full FT)")):
        mem = {}
        for kind in ("ours", "naive"):
            cmd = [sys.executable, __file__, "--memory", kind, "--batch", str(args.batch), "--tokens", str(args.tokens)]
            cmd += ["--head-grad"] if head_grad else []
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            mem[kind] = json.loads(out)["mb"]
        if mem["naive"] <= 0:  # the head's peak stayed below the body's: the batch is too small to tell
            print(f"log-prob peak memory, {label}: below the body's peak at this size; use the default batch")
            continue
        print(
            f"log-prob peak memory, {label}: ours {mem['ours']:.0f} MB, naive {mem['naive']:.0f} MB, "
            f"ratio {mem['ours'] / mem['naive']:.2f} (goal <= 0.25)"
        )


if __name__ == "__main__":
    main()

"""Would int8 weights make training rollouts cheaper? SmolLM2-135M on this CPU, one run: speed and damage.

    .venv/bin/python benchmarks/rollout_int8.py [--batch 32] [--prompt 170] [--new-tokens 48]

The rollout is the part of an RL step that no update-side feature can make cheaper (docs/benchmarks.md,
"What bounds the ratio"). torch's dynamic quantization (int8 weights, activations quantized per call) is
the one int8 path in the locked torch that needs no new package. This measures, for the float model and for
dynamic int8 on every linear layer, per output channel, without the MLP's down projection, and on attention
only:

* damage: the mean total-variation distance between the float model's next-token distributions and the int8
  copy's over every position of real prompts (the search_r1 prompt over world questions), and how often their
  most likely tokens agree. A sampler to correct by importance weights must stay close: TV well under 0.05;
* speed: seconds of ``generate`` for ``--batch`` rows of ``--prompt`` random tokens and ``--new-tokens``
  sampled ones, float / int8 (> 1: int8 faster).
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from typing import Any

import torch
from torch import nn

from searchrl.data.protocols import PROTOCOLS
from searchrl.data.world import generate_world
from searchrl.models import load_policy
from searchrl.rollout.prompts import prompt_ids


def quantized(model: Any, keep: Any, per_channel: bool) -> Any:
    qa = torch.ao.quantization
    qconfig = qa.per_channel_dynamic_qconfig if per_channel else qa.default_dynamic_qconfig
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and keep(n)]
    with warnings.catch_warnings():  # eager-mode quantization is marked deprecated; it ships in the locked torch
        warnings.simplefilter("ignore")
        return qa.quantize_dynamic(copy.deepcopy(model), dict.fromkeys(names, qconfig), dtype=torch.qint8)


def damage(ref: Any, model: Any, batches: list[torch.Tensor]) -> tuple[float, float]:
    """(mean total variation, top-1 agreement) over every position of ``batches``."""
    tvs, agree = [], []
    with torch.inference_mode():
        for ids in batches:
            p, q = ref(input_ids=ids).logits[0].float(), model(input_ids=ids).logits[0].float()
            tvs.append(0.5 * (p.softmax(-1) - q.softmax(-1)).abs().sum(-1))
            agree.append((p.argmax(-1) == q.argmax(-1)).float())
    return float(torch.cat(tvs).mean()), float(torch.cat(agree).mean())


def generate_seconds(model: Any, ids: torch.Tensor, new: int, pad: int) -> float:
    att = torch.ones_like(ids)
    with torch.inference_mode():
        model.generate(input_ids=ids[:2], attention_mask=att[:2], max_new_tokens=2, do_sample=True, pad_token_id=pad)
        t0 = time.perf_counter()
        model.generate(
            input_ids=ids, attention_mask=att, max_new_tokens=new, min_new_tokens=new, do_sample=True, pad_token_id=pad
        )
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=170)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--questions", type=int, default=8)
    args = ap.parse_args()
    model, tok = load_policy("smollm2-135m-instruct")
    model.eval()
    world = generate_world(seed=1, size="medium")
    questions = [ex.question for ex in world.questions["test"][: args.questions]]
    batches = [torch.tensor([prompt_ids(tok, PROTOCOLS["search_r1"], q)]) for q in questions]
    ids = torch.randint(100, 40000, (args.batch, args.prompt), generator=torch.Generator().manual_seed(0))
    base = generate_seconds(model, ids, args.new_tokens, int(tok.pad_token_id))
    print(f"float32: generate {base:.1f} s ({args.batch} x {args.new_tokens} tokens)", flush=True)
    print("\n| int8 variant | mean TV to float | top-1 agreement | generate s | float / int8 |\n|---|---|---|---|---|")
    variants = {
        "every linear layer, per tensor": (lambda n: True, False),
        "every linear layer, per channel": (lambda n: True, True),
        "per channel, down_proj kept float": (lambda n: "down_proj" not in n, True),
        "per channel, attention only": (lambda n: "self_attn" in n, True),
    }
    for label, (keep, per_channel) in variants.items():
        q = quantized(model, keep, per_channel)
        tv, top1 = damage(model, q, batches)
        s = generate_seconds(q, ids, args.new_tokens, int(tok.pad_token_id))
        print(f"| {label} | {tv:.3f} | {top1:.2f} | {s:.1f} | {base / s:.2f} |", flush=True)


if __name__ == "__main__":
    main()

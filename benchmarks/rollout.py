"""Rollout throughput, one run, ratios (SmolLM2-135M on this machine's CPU).

1. ours: the multi-turn agent rollout (HF backend, KV cache kept across turns) — sampled tokens/s.
2. plain: ``model.generate`` on the same batch, same number of new tokens, one turn — the ceiling.
3. re-encode: the same turns, but every turn decodes the whole context to text, re-tokenizes it and
   prefills it from scratch, as the original implementations do.

4. limit: plain ``generate`` + one batched forward over the final sequences (the prefill of the injected
   tokens that plain decoding never runs): what the agent must compute at least. Reported as
   ``(plain + prefill) / ours`` in seconds (> 1: ours is faster than that sum, since its prefill of each block
   is chunked into the cached decode).
5. async: the asynchronous loop vs the synchronous one with a scripted backend (latency per sampled token,
   turn lengths varying 4x across samples, a retriever with latency): wall time async / sync (goal <= 0.7).
   ``--async-only`` runs just this part (no model, a few seconds).

The agent's schedule is fixed so that all three sample the same number of tokens: ``turns`` turns of
``new_tokens / turns`` tokens each (end-of-sequence is ignored, as ``min_new_tokens`` does for plain
``generate``). After each turn the environment appends (masked) either a block of realistic size — three real
wiki-18 passages (Search-R1's corpus format, ~100 words each) in ``<information>`` tags, ``--block
wiki`` — or only the short corrective message, ``--block corrective``, which isolates the decode loop.
Usage: .venv/bin/python benchmarks/rollout.py [--batch 8] [--new-tokens 128] [--turns 4] [--async-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from searchrl.data.protocols import PROTOCOLS
from searchrl.models import load_policy, load_tokenizer
from searchrl.rollout.async_engine import AsyncRolloutEngine
from searchrl.rollout.backend import Completion, SamplingParams
from searchrl.rollout.engine import RolloutEngine, RolloutLimits, RolloutRequest
from searchrl.rollout.hf import HFGenerator
from searchrl.rollout.prompts import prompt_ids
from searchrl.rollout.scripted import ScriptedAsyncBackend
from searchrl.types import Passage, Trajectory

QUESTIONS = [
    "Which magazine was started first, Arthur's Magazine or First for Women?",
    "The Oberoi family is part of a hotel company that has a head office in what city?",
    "Musician and satirist Allie Goertz wrote a song about the character Milhouse, named after who?",
    "What nationality was James Henry Miller's wife?",
    "Cadmium Chloride is slightly soluble in this chemical it is also called what?",
    "Which tennis player won more Grand Slam titles, Henri Leconte or Jonathan Stark?",
    "Which genus of moth in the world's seventh-largest country contains only one species?",
    "Who was once considered the best kick boxer in the world, however he has been involved in a number of controversies?",
]


WIKI = Path(__file__).resolve().parents[1].parent / "shared/data/raw/wikipedia/PeterGriffinJin__Search-R1/corpus.jsonl"


def wiki_passages(n: int) -> list[Passage]:
    if WIKI.is_file():
        rows = [json.loads(line) for line in WIKI.read_text(encoding="utf-8").splitlines()[:n]]
        return [Passage.from_contents(r["id"], r["contents"]) for r in rows]
    return [Passage(str(i), "Example", "An example passage about the question. " * 12) for i in range(n)]


class FixedRetriever:
    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        return [wiki_passages(k) for _ in queries]


class ReencodeBackend:
    """The originals' loop: text round trip and a full prefill every turn (no cache reuse)."""

    def __init__(self, inner: HFGenerator) -> None:
        self.inner = inner
        self.tokenizer = inner.tokenizer

    def reset(self) -> None:
        self.inner.reset()

    def generate(self, keys, contexts, max_new_tokens, stop, params, seed) -> list[Completion]:  # type: ignore[no-untyped-def]
        texts = [self.tokenizer.decode(c) for c in contexts]
        again = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        return self.inner.generate(keys, again, max_new_tokens, stop, params, seed)


def time_engine(engine: RolloutEngine, reqs: list[RolloutRequest], params: SamplingParams) -> tuple[float, int]:
    seconds, trajs = time_trajectories(engine, reqs, params)
    return seconds, sum(t.n_policy_tokens for t in trajs)


def time_trajectories(
    engine: RolloutEngine, reqs: list[RolloutRequest], params: SamplingParams
) -> tuple[float, list[Trajectory]]:
    t0 = time.perf_counter()
    trajs = engine.run(reqs, params, seed=0)
    return time.perf_counter() - t0, trajs


def prefill_seconds(model: Any, trajs: list[Trajectory], pad_id: int) -> tuple[float, int]:
    """One no-grad forward over the final sequences (right-padded); returns (seconds, injected tokens)."""
    width = max(len(t.ids) for t in trajs)
    ids = torch.full((len(trajs), width), pad_id)
    attn = torch.zeros_like(ids)
    for b, t in enumerate(trajs):
        ids[b, : len(t.ids)] = torch.tensor(t.ids)
        attn[b, : len(t.ids)] = 1
    t0 = time.perf_counter()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=attn, logits_to_keep=1)
    injected = sum(len(t.ids) - t.prompt_len - t.n_policy_tokens for t in trajs)
    return time.perf_counter() - t0, injected


def async_ratio(tok: Any, samples: int = 16, seconds_per_token: float = 0.004) -> tuple[float, float, float]:
    """(sync s, async s, longest / shortest turn in tokens) of the same scripted rollouts, 3 turns per sample."""
    protocol = PROTOCOLS["search_r1"]
    short, long = "<think> ok </think>", "<think> " + "so the answer may be " * 9 + "</think>"
    scripts = []
    for i in range(samples):
        thinks = [long if (i + turn) % 4 == 0 else short for turn in range(3)]  # each turn has its slow samples
        scripts.append(
            [
                f"{thinks[0]} <search> q{i} </search>",
                f"{thinks[1]} <search> r{i} </search>",
                f"{thinks[2]} <answer> a </answer>",
            ]
        )
    reqs = [
        RolloutRequest(f"q{i}", i, prompt_ids(tok, protocol, QUESTIONS[i % len(QUESTIONS)])) for i in range(samples)
    ]
    limits = RolloutLimits(max_turns=4, max_new_tokens=96, max_context=4096)
    times, lengths = [], []
    for cls in (RolloutEngine, AsyncRolloutEngine):
        backend = ScriptedAsyncBackend(tok, scripts, seconds_per_token)
        engine = cls(backend, DelayedRetriever(), tok, protocol, limits)
        seconds, trajs = time_trajectories(engine, reqs, SamplingParams(greedy=True))
        times.append(seconds)
        lengths = [turn.generated for t in trajs for turn in t.turns]
    return times[0], times[1], max(lengths) / min(lengths)


class DelayedRetriever(FixedRetriever):
    def search(self, queries: Sequence[str], k: int) -> list[list[Passage]]:
        time.sleep(0.02)  # a loopback HTTP retriever's latency, per call
        return super().search(queries, k)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--block", choices=["wiki", "corrective"], default="wiki", help="what is injected after a turn")
    ap.add_argument("--async-only", action="store_true", help="only the scripted async-vs-sync comparison")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.async_only:
        print_async(load_tokenizer("smollm2-135m-instruct"))
        return
    model, tok = load_policy("smollm2-135m-instruct")
    model.eval()
    plain_protocol = PROTOCOLS["search_r1"]
    block = plain_protocol.wrap_information(plain_protocol.format_passages(wiki_passages(3)))
    if args.block == "corrective":
        block = plain_protocol.corrective_message
    protocol = dataclasses.replace(plain_protocol, corrective_message=block)
    prompts = [prompt_ids(tok, protocol, QUESTIONS[i % len(QUESTIONS)]) for i in range(args.batch)]
    reqs = [RolloutRequest(f"q{i}", i, p) for i, p in enumerate(prompts)]
    per_turn = args.new_tokens // args.turns
    # no stop strings can end a turn early: every turn samples exactly per_turn tokens unless EOS
    limits = RolloutLimits(
        max_turns=args.turns, max_searches=args.turns, max_new_tokens=per_turn, max_context=8192, on_budget="stop"
    )
    params = SamplingParams(temperature=1.0)

    ours_gen, base_gen = HFGenerator(model, tok), HFGenerator(model, tok, reuse_cache=False)
    ours_gen.eos_ids = base_gen.eos_ids = set()  # every row samples the full schedule
    ours = RolloutEngine(ours_gen, FixedRetriever(), tok, protocol, limits)
    base = RolloutEngine(ReencodeBackend(base_gen), FixedRetriever(), tok, protocol, limits)
    time_engine(ours, reqs[:2], params)  # warm-up

    t_ours, ours_trajs = time_trajectories(ours, reqs, params)
    n_ours = sum(t.n_policy_tokens for t in ours_trajs)
    t_base, n_base = time_engine(base, reqs, params)
    t_prefill, n_injected = prefill_seconds(model, ours_trajs, int(tok.pad_token_id))

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), tok.pad_token_id)
    attn = torch.zeros_like(ids)
    for b, p in enumerate(prompts):
        ids[b, width - len(p) :] = torch.tensor(p)
        attn[b, width - len(p) :] = 1
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=attn,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            max_new_tokens=n_ours // len(prompts),
            min_new_tokens=n_ours // len(prompts),
            pad_token_id=tok.pad_token_id,
        )
    t_plain = time.perf_counter() - t0
    n_plain = (out.shape[1] - width) * len(prompts)

    r = {"ours": n_ours / t_ours, "plain": n_plain / t_plain, "reencode": n_base / t_base}
    print(
        f"prompt {sum(map(len, prompts)) // len(prompts)} tokens, injected block {len(tok(block)['input_ids'])} tokens"
    )
    print(f"batch {args.batch}, {args.new_tokens} new tokens in {args.turns} turns, threads {torch.get_num_threads()}")
    print(f"ours      {n_ours:6d} tokens {t_ours:7.2f} s {r['ours']:7.1f} tok/s")
    print(f"plain     {n_plain:6d} tokens {t_plain:7.2f} s {r['plain']:7.1f} tok/s")
    print(f"re-encode {n_base:6d} tokens {t_base:7.2f} s {r['reencode']:7.1f} tok/s")
    print(f"ratio ours/plain     = {r['ours'] / r['plain']:.2f}  (limit 1.0, goal >= 0.9)")
    print(
        f"prefill   {n_injected:6d} injected tokens (one forward over the {len(ours_trajs)} final sequences) {t_prefill:7.2f} s"
    )
    print(f"ratio ours/re-encode = {r['ours'] / r['reencode']:.2f}  (goal >= 1.5)")
    print(
        f"ratio (plain + prefill) / ours, in seconds = {(t_plain + t_prefill) / t_ours:.2f}  (the real limit; > 1 beats it)"
    )
    print_async(tok)


def print_async(tok: Any) -> None:
    t_sync, t_async, spread = async_ratio(tok)
    print(
        f"scripted 16 samples x 3 turns, turn lengths up to {spread:.1f}x apart: sync {t_sync:.2f} s, async {t_async:.2f} s"
    )
    print(f"ratio async/sync wall time = {t_async / t_sync:.2f}  (goal <= 0.7)")


if __name__ == "__main__":
    main()

"""How often the untrained model writes a well-formed search under a protocol's prompt (sampled, not greedy).

This is the measurement behind the choice of prompt for R1-Searcher's pure-RL stage 1 (F4 in
docs/findings.md): a protocol whose base rate is near 0 gives RL almost nothing to reinforce. Per
variant it prints the share of samples with at least one well-formed search, with a retrieved passage
that contains a gold answer ("grounded"), with a closed answer tag, with a correct answer (cover EM), and
with an answer that is a worked example's answer ("copied": what the first F4 run's policy did).

A variant is a protocol name, optionally with ``:chat`` or ``:text`` to force the prompt format, e.g.
``r1_searcher_demo:chat`` is the demo's instruction inside the chat template. :data:`CANDIDATES` are
variants of the demo's instruction tried for F4's rerun (``demo_two``, since registered as the protocol
``r1_searcher_demo_two``, and ``demo_hint``).

Usage: .venv/bin/python scripts/base_rate.py r1_searcher r1_searcher_demo r1_searcher_demo:chat \
           [--questions 4 --samples 8 --split dev --type 1hop --temperature 0.9]
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time

from searchrl.config import Config
from searchrl.data.protocols import PROTOCOLS, TagProtocol
from searchrl.data.world import generate_world
from searchrl.models import load_policy
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.rewards.normalize import cover_exact_match, normalize_answer
from searchrl.rollout.backend import SamplingParams
from searchrl.rollout.engine import RolloutEngine, RolloutLimits, RolloutRequest
from searchrl.rollout.hf import HFGenerator
from searchrl.rollout.prompts import prompt_ids

_DEMO = PROTOCOLS["r1_searcher_demo"]
_HEAD, _, _EXAMPLE = _DEMO.instruction.partition("\n\n")
_TAIL = "\n\nQuestion: {question}"
# Candidate in-context explorations for F4's rerun (the policy copied the demo's one example answer): two
# examples with different answers, and the one example with a line that points the answer at the new documents.
CANDIDATES: dict[str, TagProtocol] = {
    "demo_two": dataclasses.replace(PROTOCOLS["r1_searcher_demo_two"], name="demo_two"),
    "demo_hint": dataclasses.replace(
        _DEMO,
        name="demo_hint",
        instruction=_HEAD
        + "\n\n"
        + _EXAMPLE.removesuffix(_TAIL)
        + "\n\nFor a new question, search for it and take the answer from its own documents."
        + _TAIL,
    ),
}


def variant(spec: str) -> TagProtocol:
    name, _, fmt = spec.partition(":")
    known = {**PROTOCOLS, **CANDIDATES}
    if name not in known or fmt not in ("", "chat", "text"):
        raise SystemExit(f"unknown variant '{spec}': one of {sorted(known)}, optionally :chat or :text")
    proto = known[name]
    return dataclasses.replace(proto, chat=fmt == "chat") if fmt else proto


def example_answers(proto: TagProtocol) -> set[str]:
    """Every answer the instruction's worked examples give, normalized."""
    pattern = re.escape(proto.answer_open) + r"(.*?)" + re.escape(proto.answer_close)
    examples = proto.instruction.partition("\n\n")[2]  # after the paragraph that names the tags
    return {normalize_answer(a) for a in re.findall(pattern, examples, flags=re.S)} - {""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--split", default="dev", choices=["train", "dev", "test"])
    ap.add_argument("--type", default="1hop")
    ap.add_argument("--world-seed", type=int, default=1)
    ap.add_argument("--world-size", default="medium")
    ap.add_argument("--temperature", type=float, default=0.9)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--max-turns", type=int, default=3)
    args = ap.parse_args()
    protocols = [(spec, variant(spec)) for spec in args.variants]

    world = generate_world(args.world_seed, args.world_size)
    questions = [e for e in world.questions[args.split] if e.metadata.get("type") == args.type][: args.questions]
    if not questions:
        raise SystemExit(f"the world has no '{args.type}' questions in its {args.split} split")
    passages = {p.id: p for p in world.passages}
    cfg = Config()
    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    backend, retriever = HFGenerator(model, tok), BM25Retriever.build(world.passages)
    limits = RolloutLimits(max_turns=args.max_turns, max_new_tokens=args.max_new_tokens, topk=cfg.retrieval.topk)
    golds = {e.id: e.answers for e in questions}
    print(f"world {args.world_seed} {args.world_size}, {len(questions)} {args.split} {args.type} questions")
    print(
        "| variant | samples | searched | grounded | answered | correct | copied an example | prompt tokens | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for spec, proto in protocols:
        engine = RolloutEngine(backend, retriever, tok, proto, limits)
        reqs = [
            RolloutRequest(e.id, g, prompt_ids(tok, proto, e.question)) for e in questions for g in range(args.samples)
        ]
        t0 = time.perf_counter()
        trajs = engine.run(reqs, SamplingParams(temperature=args.temperature), seed=0)
        seconds = time.perf_counter() - t0
        searched = grounded = answered = correct = copied = 0
        examples = example_answers(proto)
        for t in trajs:
            gold = golds[t.example_id]
            searched += any(turn.action == "search" for turn in t.turns)
            grounded += any(cover_exact_match(passages[p].text, gold) for turn in t.turns for p in turn.passage_ids)
            answered += t.answer is not None
            correct += t.answer is not None and cover_exact_match(t.answer, gold) == 1.0
            copied += t.answer is not None and normalize_answer(t.answer) in examples
        n = len(trajs)
        print(
            f"| {spec} | {n} | {searched}/{n} | {grounded}/{n} | {answered}/{n} | {correct}/{n} | {copied}/{n} "
            f"| {len(reqs[0].prompt_ids)} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()

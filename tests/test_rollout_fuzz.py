"""100,000 random rollouts through the engine (about 8 s, so it runs in the default tier): never raises, invariants always hold.

A character-level tokenizer (one id per character, id 1 = end of sequence) keeps each case cheap; the
engine is tokenizer-agnostic, so the invariants it must keep are the same as with a real tokenizer.
"""

from __future__ import annotations

import random

from searchrl.data.protocols import PROTOCOLS
from searchrl.rollout.backend import SamplingParams
from searchrl.rollout.engine import RolloutEngine, RolloutLimits, RolloutRequest
from searchrl.rollout.scripted import ScriptedBackend
from searchrl.types import Passage

FRAGMENTS = ["<search>", "</search>", "<answer>", "</answer>", "<think>", "</think>", "Oss", " x", "\n", "\x01", ""]


class CharTokenizer:
    eos_token = "\x01"
    eos_token_id = 1

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(chr(i) for i in ids if not (skip_special_tokens and i == 1))


class Echo:
    def search(self, queries, k):  # type: ignore[no-untyped-def]
        return [[Passage(str(i), "T", q[:20] * (i + 1)) for i in range(k)] for q in queries]


def random_turn(rng: random.Random) -> str:
    return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 6)))


def check(traj, backend, key: int, limits: RolloutLimits) -> None:  # type: ignore[no-untyped-def]
    traj.check()
    assert len(traj.ids) <= limits.max_context
    assert len(traj.turns) <= limits.max_turns
    assert [t for t, m in zip(traj.ids, traj.loss_mask, strict=True) if m] == backend.sampled.get(key, [])
    assert sum(traj.loss_mask) + sum(t.injected for t in traj.turns) == len(traj.ids) - traj.prompt_len


def test_100k_random_rollouts() -> None:
    rng = random.Random(0)
    tok = CharTokenizer()
    cases = 0
    while cases < 100_000:
        limits = RolloutLimits(
            max_turns=rng.randint(1, 5),
            max_searches=rng.randint(0, 3),
            max_new_tokens=rng.randint(1, 40),
            max_context=rng.randint(40, 600),
            topk=rng.randint(1, 3),
            answer_reserve=rng.randint(0, 20),
            on_budget=rng.choice(["force_answer", "stop"]),
        )
        n = rng.randint(1, 8)
        scripts = [[random_turn(rng) for _ in range(rng.randint(0, 6))] for _ in range(n)]
        backend = ScriptedBackend(tok, scripts)  # type: ignore[arg-type]
        engine = RolloutEngine(backend, Echo(), tok, PROTOCOLS[rng.choice(["search_r1", "r1_searcher"])], limits)
        reqs = [RolloutRequest(f"q{i}", i, [ord(c) for c in f"Q{i}: ?"]) for i in range(n)]
        for i, traj in enumerate(engine.run(reqs, SamplingParams(greedy=True), seed=cases)):
            check(traj, backend, i, limits)
        cases += n

"""The Hugging Face backend: KV-cache reuse across turns gives exactly the trajectories of a full
recomputation, sampling is reproducible from the seed, and the model's own sampled tokens carry mask 1."""

from __future__ import annotations

import pytest
import torch

from searchrl.data.protocols import PROTOCOLS
from searchrl.rollout.backend import SamplingParams
from searchrl.rollout.engine import RolloutEngine, RolloutLimits, RolloutRequest
from searchrl.rollout.hf import HFGenerator, pick_tokens
from searchrl.rollout.prompts import prompt_ids
from searchrl.types import Passage

QUESTIONS = ["Where was Ilse Marrow born?", "Who founded Quillon?", "What river runs through Varnholt city?"]


class OneDoc:
    def search(self, queries, k):  # type: ignore[no-untyped-def]
        return [[Passage("d", "Doc", f"text about {q}", 1.0)] for q in queries]


def rollout(model, tok, reuse: bool, params: SamplingParams, seed: int = 0, group: int = 1):  # type: ignore[no-untyped-def]
    """``reuse=False``: every call recomputes every row in full (no cache reuse, no shared prefill)."""
    protocol = PROTOCOLS["search_r1"]
    # short turns end by length, so every row goes through several turns with injected (masked) text
    limits = RolloutLimits(max_turns=4, max_new_tokens=6, max_context=1024)
    backend = HFGenerator(model, tok, reuse_cache=reuse, share_prefill=reuse)
    engine = RolloutEngine(backend, OneDoc(), tok, protocol, limits)
    reqs = [
        RolloutRequest(f"q{i}", g, prompt_ids(tok, protocol, q)) for i, q in enumerate(QUESTIONS) for g in range(group)
    ]
    return engine.run(reqs, params, seed=seed), engine


def test_cache_reuse_matches_full_recompute(tiny_lm, smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    greedy = SamplingParams(greedy=True)
    a, eng_a = rollout(tiny_lm, smol_tokenizer, True, greedy)
    b, eng_b = rollout(tiny_lm, smol_tokenizer, False, greedy)
    for x, y in zip(a, b, strict=True):
        assert x.ids == y.ids and x.loss_mask == y.loss_mask
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-4)
        assert len(x.turns) >= 2
    fed_a, fed_b = eng_a.backend.tokens_fed, eng_b.backend.tokens_fed  # type: ignore[attr-defined]
    assert fed_a < fed_b  # the prompt and earlier turns were not recomputed


def test_shared_prompt_prefill_gives_the_trajectories_of_the_unshared_one(tiny_lm, smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """Groups of 3 samples per question: the instruction runs once, each question's rest once per group."""
    protocol = PROTOCOLS["search_r1"]
    prompts = [prompt_ids(smol_tokenizer, protocol, q) for q in QUESTIONS]
    greedy = SamplingParams(greedy=True)
    shared, _ = rollout(tiny_lm, smol_tokenizer, True, greedy, group=3)
    plain, _ = rollout(tiny_lm, smol_tokenizer, False, greedy, group=3)
    for x, y in zip(shared, plain, strict=True):
        assert x.ids == y.ids and x.loss_mask == y.loss_mask
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-4)
    backend = HFGenerator(tiny_lm, smol_tokenizer)
    contexts = [p for p in prompts for _ in range(3)]
    backend.generate(list(range(9)), contexts, [1] * 9, [], greedy, seed=0)
    common = next(i for i in range(len(prompts[0])) if len({p[i] for p in prompts}) > 1)
    assert 50 < common < len(prompts[0])  # the protocol's instruction
    assert backend.tokens_fed == common + sum(len(p) - common for p in prompts)  # not 9 x the prompt


def test_seeded_sampling_is_reproducible(tiny_lm, smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    params = SamplingParams(temperature=1.0)
    a, _ = rollout(tiny_lm, smol_tokenizer, True, params, seed=3)
    b, _ = rollout(tiny_lm, smol_tokenizer, True, params, seed=3)
    c, _ = rollout(tiny_lm, smol_tokenizer, True, params, seed=4)
    assert [t.ids for t in a] == [t.ids for t in b]
    assert [t.ids for t in a] != [t.ids for t in c]


def test_sampled_logprobs_match_model(tiny_lm, smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    (traj, *_), _ = rollout(tiny_lm, smol_tokenizer, True, SamplingParams(temperature=1.0), seed=1)
    ids = torch.tensor([traj.ids])
    with torch.no_grad():
        logp = torch.log_softmax(tiny_lm(ids).logits[0, :-1].float(), -1)
    ref = logp.gather(-1, ids[0, 1:, None])[:, 0]
    mask = torch.tensor(traj.loss_mask[1:], dtype=torch.bool)
    got = torch.tensor(traj.logprobs[1:])
    assert torch.allclose(got[mask], ref[mask], atol=1e-4)


def test_pick_tokens_top_k_and_top_p() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).repeat(400, 1)
    gen = torch.Generator().manual_seed(0)
    ids, _ = pick_tokens(logits, SamplingParams(top_k=2), gen)
    assert set(ids.tolist()) == {2, 3}
    ids, _ = pick_tokens(logits, SamplingParams(top_p=0.5), gen)
    assert set(ids.tolist()) == {3}  # p(3) = 0.64 already covers top_p
    ids, lps = pick_tokens(logits, SamplingParams(greedy=True), gen)
    assert set(ids.tolist()) == {3} and torch.allclose(lps, torch.log_softmax(logits, -1)[:, 3])
    with pytest.raises(ValueError):
        SamplingParams(temperature=0.0)

"""The KL reference is the policy a run starts from (its checkpoint 0), not the adapter-free base model:
a warm-started LoRA run logs KL 0 at its first update, more after, and a resumed run keeps its start."""

from __future__ import annotations

from pathlib import Path

import torch

from helpers.training import make_trainer
from searchrl.trainer.logprobs import token_logprobs

EXTRA = ("train.lora_r=4", "train.log_kl=true", "train.epochs=1", "train.mini_batch=16", "train.checkpoint_every=1")


def _warm_start(trainer) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Stand-in for an SFT warm start: a nonzero adapter, saved as checkpoint 0."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in trainer.policy.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    trainer.save()
    return {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if p.requires_grad}


def test_kl_reference_is_checkpoint_zero_and_survives_resume(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    trainer = make_trainer(smol_tokenizer, "grpo", tmp_path, steps=2, extra=EXTRA)
    start = _warm_start(trainer)
    ids = torch.randint(3, 1000, (2, 12), generator=torch.Generator().manual_seed(1))
    attn, mask = torch.ones_like(ids), torch.ones((2, 11))
    with torch.no_grad(), trainer.policy.disable_adapter():
        base_lp, _ = token_logprobs(trainer.policy, ids, attn, mask)
    with torch.no_grad():
        start_lp, _ = token_logprobs(trainer.policy, ids, attn, mask)
    assert float((start_lp - base_lp).abs().max()) > 1e-3  # the adapter-free model is not the warm start

    first = trainer.step()
    assert abs(first["actor/kl"]) < 1e-6  # one mini-batch: the update sees the starting policy
    params = dict(trainer.policy.named_parameters())
    assert any(not torch.equal(params[n], w) for n, w in start.items())  # the update moved the policy
    moved = {n: params[n].detach().clone() for n in start}
    with torch.no_grad(), trainer.reference.model() as ref:
        assert all(torch.equal(params[n], w) for n, w in start.items())
        ref_lp, _ = token_logprobs(ref, ids, attn, mask)
    assert torch.equal(ref_lp, start_lp)
    assert all(torch.equal(params[n], moved[n]) for n in start)  # swapped back after the reference pass
    trainer.save()
    second = trainer.step()
    assert second["actor/kl"] > 1e-6  # measured against the start, which the policy has left

    resumed = make_trainer(smol_tokenizer, "grpo", tmp_path, steps=2, extra=EXTRA)
    assert resumed.resume() and resumed.state.step == 1
    assert all(torch.equal(resumed.reference.start[n], w) for n, w in start.items())

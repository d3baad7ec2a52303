"""The SFT warm start: gold trajectories carry the rollout's mask, the update ignores micro-batching,
and a tiny model learns the gold policy tokens."""

from __future__ import annotations

import pytest
import torch

from searchrl.data.protocols import PROTOCOLS
from searchrl.data.world import default_world
from searchrl.models import tiny_model
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.trainer.sft import GoldTrajectory, gold_to_trajectory, sft
from searchrl.types import Trajectory
from tolerances import assert_same_gradients


def _golds(smol_tokenizer) -> list[Trajectory]:  # type: ignore[no-untyped-def]
    world = default_world()
    retriever = BM25Retriever.build(world.passages)
    chosen = [e for e in world.questions["train"] if e.metadata.get("type") == "2hop"][:5]
    golds = [GoldTrajectory(e.id, e.question, world.gold[e.id].queries, world.gold[e.id].answer) for e in chosen]
    return [gold_to_trajectory(g, smol_tokenizer, PROTOCOLS["search_r1"], retriever, 3) for g in golds]


def test_gold_trajectory_masks_exactly_the_retrieved_blocks(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    for traj in _golds(smol_tokenizer):
        assert len(traj.ids) == len(traj.loss_mask)
        assert not any(traj.loss_mask[: traj.prompt_len])
        after = list(zip(traj.ids, traj.loss_mask, strict=True))[traj.prompt_len :]
        text_in = smol_tokenizer.decode([t for t, m in after if m == 0])
        text_out = smol_tokenizer.decode([t for t, m in after if m == 1])
        assert text_in.startswith("\n\n<information>") or text_in.lstrip().startswith("<information>")
        assert text_in.count("<information>") == len([t for t in traj.turns if t.action == "search"]) == 2
        assert "<information>" not in text_out and "Doc 1" not in text_out
        assert text_out.count("<search>") == 2 and f"<answer>{traj.answer}</answer>" in text_out


def test_micro_batching_leaves_the_update_unchanged(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """The loss and the accumulated gradient of one step do not depend on the micro-batch size.

    lr = 0 makes AdamW's step a no-op, so the (clipped) gradient the step would apply stays on the
    parameters; comparing it, not the weights after a step, keeps Adam from amplifying reordering noise."""
    trajs = _golds(smol_tokenizer)
    results = []
    for micro in (None, 2, 1):
        model = tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0)
        losses = sft(model, trajs, int(smol_tokenizer.pad_token_id), batch_size=5, micro_batch=micro, lr=0.0)
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((losses, grads))
    (ref_losses, ref_grads) = results[0]
    assert len(ref_losses) == 1 and ref_grads
    for losses, grads in results[1:]:
        # the loss is a sum of ~500 token terms of size ~10: fp32 reordering moves it by ~1e-6 relative
        assert losses[0] == pytest.approx(ref_losses[0], rel=1e-5)
        assert_same_gradients(ref_grads, grads)


def test_micro_batching_would_catch_a_mis_weighted_micro_batch(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """The tolerance above is not vacuous: dropping one of five trajectories changes the gradient far beyond it."""
    trajs = _golds(smol_tokenizer)
    grads = []
    for subset in (trajs, trajs[:4]):
        model = tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0)
        sft(model, subset, int(smol_tokenizer.pad_token_id), batch_size=5, lr=0.0)
        grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})
    with pytest.raises(AssertionError, match="max"):
        assert_same_gradients(grads[0], grads[1])


def test_a_tiny_model_learns_the_gold_tokens(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    trajs = _golds(smol_tokenizer)
    torch.manual_seed(0)
    model = tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0)
    losses = sft(model, trajs, int(smol_tokenizer.pad_token_id), epochs=30, batch_size=5, micro_batch=2, lr=1e-2)
    assert len(losses) == 30
    assert losses[-1] < 0.5 * losses[0], losses

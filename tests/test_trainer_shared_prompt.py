"""shared_prompt: one prompt pass per group gives the log-probs, entropies and gradients of the unshared
pass (LoRA and full fine-tuning; micro-batches that hold a whole group, part of one, or parts of two),
and a training step with it equals one without."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from searchrl.trainer.batch import collate
from searchrl.trainer.logprobs import token_logprobs, trimmed_width
from searchrl.trainer.lora import add_lora
from searchrl.trainer.prefix import group_order, shared_prompt_logprobs
from searchrl.types import Trajectory, Turn
from tolerances import assert_same_gradients


def _group(prompt: list[int], responses: list[tuple[int, int, int]], seed: int) -> list[Trajectory]:
    """Trajectories that share ``prompt``: each response is (policy, injected, more) tokens."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, (pol, inj, more) in enumerate(responses):
        resp = torch.randint(3, 1000, (pol + inj + more,), generator=g).tolist()
        mask = [0] * len(prompt) + [1] * pol + [0] * inj + [1] * more
        n = len(prompt) + len(resp)
        out.append(
            Trajectory(f"q{seed}", i, prompt + resp, mask, [0.0] * n, len(prompt), [Turn("search", pol, inj)], "a", "a")
        )
    return out


def _batch():  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    p0, p1 = torch.randint(3, 1000, (9,), generator=g).tolist(), torch.randint(3, 1000, (6,), generator=g).tolist()
    trajs = _group(p0, [(4, 5, 3), (2, 0, 0), (6, 3, 1), (3, 0, 0)], 1) + _group(p1, [(5, 2, 2), (1, 0, 0)], 2)
    return collate(trajs, [1.0, 0.0, 1.0, 0.0, 1.0, 0.0], [0, 0, 0, 0, 1, 1], pad_id=2)


@pytest.mark.parametrize("rows", [[0, 1, 2, 3, 4, 5], [0, 1, 2, 3], [1, 2], [3, 4], [5]])
def test_shared_prompt_logprobs_and_entropy_equal_the_unshared_pass(tiny_lm, rows: list[int]) -> None:  # type: ignore[no-untyped-def]
    b = _batch().select(torch.tensor(rows))
    want, want_ent = token_logprobs(tiny_lm, b.input_ids, b.attention_mask, b.loss_mask, with_entropy=True)
    fed: list[int] = []
    hook = tiny_lm.model.register_forward_pre_hook(
        lambda _m, _a, kw: fed.append(kw["input_ids"].numel()), with_kwargs=True
    )
    got, got_ent = shared_prompt_logprobs(
        tiny_lm, b.input_ids, b.attention_mask, b.loss_mask, b.group, b.prompt_len, with_entropy=True
    )
    hook.remove()
    # each group's prompt (minus its last token) ran once, not once per row, and only up to the longest
    # row of the call: trailing columns that are padding in every row are not run
    width = trimmed_width(b.attention_mask, b.loss_mask)
    expected = sum(
        (p - 1) + n * (width - p + 1)
        for g in torch.unique(b.group)
        for n, p in [(int((b.group == g).sum()), int(b.prompt_len[b.group == g][0]))]
    )
    assert sum(fed) == expected
    if rows in ([1, 2], [5]):  # shorter than the batch's longest row: the trimmed width is what ran
        assert width < b.input_ids.shape[1]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_ent, want_ent, rtol=0, atol=1e-5)
    assert bool((got[b.loss_mask == 0] == 0).all()) and bool((got[b.loss_mask == 1] < 0).all())


def _grads(model, b, shared: bool, micro: list[list[int]]) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Gradients of a policy-gradient-like loss summed over micro-batches ``micro`` (rows of ``b``)."""
    model.zero_grad(set_to_none=True)
    adv = torch.linspace(-1.0, 1.0, b.size)[:, None] * b.loss_mask
    for rows in micro:
        s = b.select(torch.tensor(rows))
        if shared:
            lp, _ = shared_prompt_logprobs(model, s.input_ids, s.attention_mask, s.loss_mask, s.group, s.prompt_len)
        else:
            lp, _ = token_logprobs(model, s.input_ids, s.attention_mask, s.loss_mask)
        (-(lp * adv[rows]).sum() / b.loss_mask.sum()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
@pytest.mark.parametrize(
    "micro",
    [[[0, 1, 2, 3], [4, 5]], [[0, 1], [2, 3, 4], [5]], [[0, 1, 2, 3, 4, 5]]],
    ids=["whole_groups", "split_groups", "one_micro_batch"],
)
def test_shared_prompt_gradients_equal_the_unshared_ones(smol_tokenizer, lora: bool, micro) -> None:  # type: ignore[no-untyped-def]
    from searchrl.models import tiny_model

    model = tiny_model(smol_tokenizer, layers=2, hidden=32, heads=2, seed=0)
    if lora:
        model = add_lora(model, 4, 8, seed=0)
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():  # B != 0, so the adapters' A matrices get gradients too
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    b = _batch()
    plain = _grads(model, b, False, [[0, 1, 2, 3, 4, 5]])
    shared = _grads(copy.deepcopy(model), b, True, micro)
    assert_same_gradients(plain, shared, "shared prompt")


def test_group_order_keeps_groups_together_and_is_a_permutation() -> None:
    group = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    order = group_order(group, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(9))
    runs = [int(group[i]) for i in order.tolist()]
    assert all(runs[i] == runs[i - i % 3] for i in range(9))  # rows of one group are contiguous


def test_a_training_step_with_shared_prompts_equals_one_without(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One mini-batch per step (so the group-wise shuffle cannot change its rows), micro-batches of 3 rows
    that split the groups of 8; the gradient before the optimizer step is compared."""
    from helpers.training import make_trainer

    extra = ("train.mini_batch=16", "train.micro_batch=3", "train.epochs=1", "train.log_entropy=true")
    grads = {}
    for shared in (False, True):
        trainer = make_trainer(
            smol_tokenizer, "grpo", tmp_path / str(shared), extra=(*extra, f"train.shared_prompt={shared}")
        )
        captured: dict[str, torch.Tensor] = {}

        def capture(finite: bool, trainer=trainer, captured=captured):  # type: ignore[no-untyped-def]
            captured.update({n: p.grad.clone() for n, p in trainer.policy.named_parameters() if p.grad is not None})
            return (0.0, False)  # do not step: the gradient is what is compared

        trainer.update._step = capture  # type: ignore[method-assign]
        metrics = trainer.step()
        assert metrics["actor/entropy"] > 0
        grads[shared] = captured
    assert_same_gradients(grads[False], grads[True], "training step", require_nonzero=True)

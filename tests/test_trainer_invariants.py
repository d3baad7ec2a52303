"""Trainer invariants: masked positions get exactly zero gradient (and not with the ablation switch);
micro-batch size x accumulation steps leaves the update unchanged; a resumed run matches."""

from __future__ import annotations

from pathlib import Path

import torch

from searchrl.algorithms.losses import clipped_policy_loss
from searchrl.trainer.batch import collate
from searchrl.trainer.logprobs import token_logprobs
from searchrl.types import Trajectory, Turn
from tolerances import assert_same_gradient, assert_same_gradients


def _traj(prompt: int, policy: int, injected: int, more: int, seed: int) -> Trajectory:
    g = torch.Generator().manual_seed(seed)
    n = prompt + policy + injected + more
    ids = torch.randint(3, 1000, (n,), generator=g).tolist()
    mask = [0] * prompt + [1] * policy + [0] * injected + [1] * more
    return Trajectory(f"e{seed}", 0, ids, mask, [0.0] * n, prompt, [Turn("search", policy, injected)], "a", "answer")


def test_zero_gradient_at_masked_positions(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    trajs = [_traj(5, 4, 6, 3, 0), _traj(3, 6, 0, 0, 1)]
    for mask_retrieved in (True, False):
        batch = collate(trajs, [1.0, 0.0], [0, 0], pad_id=2, mask_retrieved=mask_retrieved)
        emb = tiny_lm.get_input_embeddings()
        logits_holder = {}

        def hook(_m, _i, out, logits_holder=logits_holder):  # type: ignore[no-untyped-def]
            out.retain_grad()
            logits_holder["x"] = out
            return out

        handle = tiny_lm.lm_head.register_forward_hook(hook)
        out = tiny_lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        handle.remove()
        logits = logits_holder["x"]
        lp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
        adv = torch.ones_like(lp)
        loss = clipped_policy_loss(lp, lp.detach(), adv, batch.loss_mask).loss
        loss.backward()
        grad = logits.grad[:, :-1].abs().sum(-1)  # [B, T-1]
        injected = torch.zeros_like(grad, dtype=torch.bool)
        injected[0, 5 + 4 - 1 : 5 + 4 + 6 - 1] = True  # targets that are injected tokens (row 0)
        if mask_retrieved:
            assert torch.all(grad[batch.loss_mask == 0] == 0)
            assert torch.all(grad[injected] == 0)
        else:
            assert torch.all(grad[injected] > 0)  # the ablation trains on retrieved tokens
        assert torch.all(grad[batch.loss_mask == 1] > 0)
        tiny_lm.zero_grad(set_to_none=True)
        del out, emb


def test_chunked_logprobs_equal_full(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    batch = collate([_traj(5, 4, 6, 3, 2), _traj(3, 6, 0, 0, 3)], [1.0, 0.0], [0, 1], pad_id=2)
    got, _ = token_logprobs(tiny_lm, batch.input_ids, batch.attention_mask, batch.loss_mask, chunk=3)
    full = tiny_lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
    ref = torch.log_softmax(full, -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0] * batch.loss_mask
    assert torch.allclose(got, ref, atol=1e-5)


def test_logprobs_skip_columns_that_are_padding_in_every_row(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    """A micro-batch of short rows padded to a longer step's width runs at its own width: the body sees
    only the used columns, and log-probs and gradients equal those of the unpadded batch."""
    batch = collate([_traj(5, 4, 6, 3, 2), _traj(3, 6, 0, 0, 3)], [1.0, 0.0], [0, 1], pad_id=2)
    pad = 7  # the step's longest row is 7 tokens longer than this micro-batch's
    ids = torch.nn.functional.pad(batch.input_ids, (0, pad), value=2)
    attn = torch.nn.functional.pad(batch.attention_mask, (0, pad))
    mask = torch.nn.functional.pad(batch.loss_mask, (0, pad))
    widths: list[int] = []
    hook = tiny_lm.get_input_embeddings().register_forward_hook(lambda m, i, o: widths.append(i[0].shape[1]))
    try:
        got, _ = token_logprobs(tiny_lm, ids, attn, mask, chunk=3)
        got.sum().backward()
        g_padded = {n: p.grad.clone() for n, p in tiny_lm.named_parameters() if p.grad is not None}
        tiny_lm.zero_grad(set_to_none=True)
        ref, _ = token_logprobs(tiny_lm, batch.input_ids, batch.attention_mask, batch.loss_mask, chunk=3)
        ref.sum().backward()
    finally:
        hook.remove()
    assert widths == [batch.input_ids.shape[1]] * 2  # the padded call ran at the unpadded width
    assert got.shape == mask.shape and torch.count_nonzero(got[:, -pad:]) == 0
    assert torch.allclose(got[:, :-pad], ref, atol=1e-6)
    assert g_padded
    for n, p in tiny_lm.named_parameters():
        if p.grad is not None:
            assert torch.allclose(g_padded[n], p.grad, atol=1e-6), n
    tiny_lm.zero_grad(set_to_none=True)


def test_monitored_entropy_equals_the_full_entropy_and_carries_no_gradient(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    batch = collate([_traj(5, 4, 6, 3, 4), _traj(3, 6, 0, 0, 5)], [1.0, 0.0], [0, 1], pad_id=2)
    args = (tiny_lm, batch.input_ids, batch.attention_mask, batch.loss_mask)
    lp_mon, ent_mon = token_logprobs(*args, chunk=3, with_entropy=True, entropy_grad=False)
    lp_grad, ent_grad = token_logprobs(*args, chunk=3, with_entropy=True)
    with torch.no_grad():
        full = tiny_lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
    ref = -(torch.softmax(full, -1) * torch.log_softmax(full, -1)).sum(-1) * batch.loss_mask
    assert ent_mon is not None and ent_grad is not None
    assert torch.allclose(ent_mon, ref, atol=1e-5) and torch.allclose(ent_grad, ref, atol=1e-5)
    assert not ent_mon.requires_grad and ent_grad.requires_grad
    assert torch.allclose(lp_mon, lp_grad, atol=1e-6) and lp_mon.requires_grad
    assert float(ref[batch.loss_mask == 1].min()) > 0  # a real entropy, not zeros


def test_policy_mask_keeps_the_policy_tokens_in_the_ablation() -> None:
    from searchrl.algorithms.masked import masked_mean

    trajs = [_traj(5, 4, 6, 3, 6), _traj(3, 6, 0, 0, 7)]
    masked = collate(trajs, [1.0, 0.0], [0, 1], pad_id=2)
    ablation = collate(trajs, [1.0, 0.0], [0, 1], pad_id=2, mask_retrieved=False)
    assert torch.equal(masked.policy_mask, masked.loss_mask) and torch.equal(ablation.policy_mask, masked.loss_mask)
    assert float(ablation.loss_mask.sum()) == float(masked.loss_mask.sum()) + 6  # the 6 injected targets
    # a per-token statistic (entropy) averaged over policy_mask is the same in both runs; over loss_mask it is not
    ent = torch.zeros_like(masked.loss_mask)
    ent[0, 8:14] = 5.0  # high "entropy" exactly on row 0's injected targets
    ent[masked.loss_mask == 1] = 1.0
    assert float(masked_mean(ent, masked.policy_mask)) == float(masked_mean(ent, ablation.policy_mask)) == 1.0
    assert float(masked_mean(ent, ablation.loss_mask)) > 1.5


def test_logged_entropy_is_the_exact_mean_over_policy_tokens(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """In the ablation, with micro-batches of one row and with a zero-advantage row skipped."""
    from searchrl.config import load_config
    from searchrl.models import tiny_model
    from searchrl.trainer.batch import Scored
    from searchrl.trainer.update import PolicyUpdate

    model = tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0)
    with torch.no_grad():  # peaked next-token distributions, so entropies differ from token to token
        model.get_output_embeddings().weight.mul_(30.0)
    trajs = [_traj(5, 4, 6, 3, 8), _traj(3, 6, 0, 0, 9)]
    batch = collate(trajs, [1.0, 0.0], [0, 0], pad_id=2, mask_retrieved=False)
    cfg = load_config(None, ["train.log_entropy=true", "train.micro_batch=1", "train.mini_batch=2"])
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
    ent = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)
    own, trained = batch.policy_mask, batch.loss_mask
    for rows, expected in (
        ((0, 1), float((ent * own).sum() / own.sum())),
        ((0,), float((ent[0] * own[0]).sum() / own[0].sum())),  # row 1's advantages are 0: not run
    ):
        adv = torch.zeros_like(trained)
        adv[list(rows)] = 1.0
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        update = PolicyUpdate(cfg.train, model, opt, None, None, kl_in_loss=False, norm_len=cfg.rollout.max_context)
        stats = update.minibatch(Scored(batch, None, None, None, adv, adv), torch.arange(2))
        assert abs(stats["actor/entropy"] - expected) < 2e-3  # logits of std ~3: float32 paths differ by ~3e-4
        assert abs(expected - float((ent[list(rows)] * trained[list(rows)]).sum() / trained[list(rows)].sum())) > 0.01


def test_micro_batch_invariance(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from helpers.training import make_trainer

    grads = []
    for micro in (16, 4, 1):
        torch.manual_seed(0)
        trainer = make_trainer(
            smol_tokenizer,
            "grpo",
            tmp_path / f"m{micro}",
            steps=1,
            extra=(f"train.micro_batch={micro}", "train.epochs=1"),
        )
        seen: dict[str, torch.Tensor] = {}

        def capture(trainer=trainer, seen=seen) -> None:  # type: ignore[no-untyped-def]
            for n, p in trainer.policy.named_parameters():
                if p.grad is not None:
                    seen[n] = p.grad.detach().clone()

        trainer.optimizer.step = capture  # type: ignore[method-assign]
        trainer.fit()
        grads.append(seen)
    assert grads[0]
    for other in grads[1:]:
        assert_same_gradients(grads[0], other)


def test_non_finite_batch_is_skipped_not_applied(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from helpers.training import make_trainer

    # the update's own guard, without the watchdog (which would roll the step back: test_trainer_watchdog)
    extra = ("train.epochs=1", "train.watchdog.enabled=false")
    trainer = make_trainer(smol_tokenizer, "reinforce_pp", tmp_path, steps=1, extra=extra)
    trainer.reward_fn = lambda traj, golds: float("nan")
    before = {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}
    (metrics,) = trainer.fit()
    assert metrics["actor/skipped_steps"] == 1.0
    for n, p in trainer.policy.named_parameters():
        assert torch.equal(p, before[n]), n


def _const_or_low_half(vocab: int, const_calls: range | None = None):  # type: ignore[no-untyped-def]
    """Low-half reward, except golds ("const",) (and every call in ``const_calls``) earn a flat 1.0."""
    from helpers.training import low_half_reward

    low = low_half_reward(vocab)
    calls = iter(range(10**6))

    def reward(traj, golds):  # type: ignore[no-untyped-def]
        n = next(calls)
        if golds == ("const",) or (const_calls is not None and n in const_calls):
            return 1.0
        return low(traj, golds)

    return reward


def _fast_vs_slow(  # type: ignore[no-untyped-def]
    smol_tokenizer, tmp_path: Path, reward_of, steps: int, const_golds: bool = True, lr: float = 0.0, extra=()
):
    """Run both paths ``steps`` steps; per step the gradient handed to AdamW, its state after, and the weights.

    With lr = 0 the weights never move, so every step of both paths samples the same rollout from the
    same weights and the per-step gradients must agree; with lr > 0 the paths drift apart by Adam-amplified
    rounding noise, so only quantities that are linear in the gradient are compared."""
    from helpers.training import make_trainer
    from searchrl.types import QAExample

    # two prompts per step over two examples: with const_golds every step mixes a skipped and a trained group
    examples = [
        QAExample(f"toy/{i}", f"Question {i}?", ("const",) if const_golds and i % 2 == 0 else ("x",), "toy")
        for i in range(2)
    ]
    runs = {}
    for fast in (True, False):
        torch.manual_seed(0)
        trainer = make_trainer(
            smol_tokenizer,
            "grpo",
            tmp_path / str(fast),
            steps=steps,
            extra=("train.epochs=1", f"train.fast_paths={fast}", *extra),
            examples=examples,
        )
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        trainer.reward_fn = reward_of(len(smol_tokenizer))
        passes: list[int] = []  # rows of every no-grad log-prob pass (the old log-probs; no reference here)
        forward_chunks = trainer._forward_chunks
        trainer._forward_chunks = lambda model, batch, at, f=forward_chunks, n=passes: (
            n.append(batch.size) or f(model, batch, at)
        )  # type: ignore[method-assign]
        grads: list[dict[str, torch.Tensor]] = []
        step_fn = trainer.optimizer.step

        def capture(*args, trainer=trainer, grads=grads, step_fn=step_fn, **kwargs):  # type: ignore[no-untyped-def]
            named = trainer.policy.named_parameters()
            grads.append({n: p.grad.detach().clone() for n, p in named if p.grad is not None})
            return step_fn(*args, **kwargs)

        trainer.optimizer.step = capture  # type: ignore[method-assign]
        snapshots, metrics, states = [], [], []
        for _ in range(steps):
            metrics.append(trainer.step())
            snapshots.append({n: p.detach().clone() for n, p in trainer.policy.named_parameters()})
            named = dict(trainer.policy.named_parameters())
            states.append({n: {k: v.clone() for k, v in trainer.optimizer.state[p].items()} for n, p in named.items()})
        runs[fast] = {
            "grads": grads,
            "weights": snapshots,
            "metrics": metrics,
            "adam": states,
            "passes": len(passes),
            "rows": sum(passes),
        }
    return runs


def test_fast_paths_give_the_same_update(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """No old-log-prob pass and no zero-advantage rows: the gradient of each of 3 steps is unchanged."""
    runs = _fast_vs_slow(smol_tokenizer, tmp_path, _const_or_low_half, steps=3)
    fast, slow = runs[True], runs[False]
    assert (fast["passes"], slow["passes"]) == (0, 3)  # the on-policy step never runs the old-log-prob pass
    assert all("actor/rows_skipped" not in m for m in slow["metrics"])
    assert len(fast["grads"]) == len(slow["grads"]) == 3
    for step, (g_fast, g_slow) in enumerate(zip(fast["grads"], slow["grads"], strict=True)):
        assert_same_gradients(g_slow, g_fast, f"step {step + 1}", require_nonzero=False)
    nonzero = [any(torch.count_nonzero(g) for g in step.values()) for step in slow["grads"]]
    assert all(nonzero), nonzero
    assert all(0 < m["actor/rows_skipped"] < 1 for m in fast["metrics"])  # each step skips one group, trains one


def test_fast_paths_score_old_logprobs_of_trained_rows_only(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two mini-batches: old log-probs are needed only for rows the update runs after its first optimizer
    step. The pass skips the zero-advantage group and the first mini-batch (on-policy when it runs), and
    every step's gradients are unchanged."""
    runs = _fast_vs_slow(smol_tokenizer, tmp_path, _const_or_low_half, steps=2, extra=("train.mini_batch=8",))
    fast, slow = runs[True], runs[False]
    assert slow["passes"] == 2 and slow["rows"] == 32  # every row of both steps
    # of 16 rows per step, 8 are trained, and those of them in the first mini-batch (of a random 8) are not scored
    assert fast["passes"] <= 2 and 0 < fast["rows"] < 16, (fast["passes"], fast["rows"])
    assert len(fast["grads"]) == len(slow["grads"]) == 4  # two optimizer steps per RL step
    for step, (g_fast, g_slow) in enumerate(zip(fast["grads"], slow["grads"], strict=True)):
        assert_same_gradients(g_slow, g_fast, f"optimizer step {step + 1}", require_nonzero=False)
    assert any(any(torch.count_nonzero(g) for g in step.values()) for step in slow["grads"])


def test_all_zero_advantage_step_still_applies_momentum(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A step where every row is skipped still steps AdamW with a zero gradient, as the slow path does."""
    runs = _fast_vs_slow(
        smol_tokenizer,
        tmp_path,
        lambda vocab: _const_or_low_half(vocab, const_calls=range(16, 32)),
        steps=2,
        const_golds=False,
        lr=0.01,
    )
    fast, slow = runs[True], runs[False]
    assert fast["metrics"][0]["actor/rows_skipped"] == 0.0
    assert fast["metrics"][1]["actor/rows_skipped"] == 1.0
    moved = [n for n, p in fast["weights"][1].items() if not torch.equal(p, fast["weights"][0][n])]
    assert moved  # momentum from step 1 moved the weights in step 2
    for n, g in fast["grads"][1].items():
        assert torch.count_nonzero(g) == 0 and torch.count_nonzero(slow["grads"][1][n]) == 0, n
    # Adam's moments are linear in the gradients (no amplification): both paths stepped twice
    for n, state in slow["adam"][1].items():
        assert float(state["step"]) == float(fast["adam"][1][n]["step"]) == 2.0, n
        for key in ("exp_avg", "exp_avg_sq"):
            assert_same_gradient(f"{n} {key}", state[key], fast["adam"][1][n][key])


def test_injected_mask_marks_exactly_the_environment_tokens_of_the_response() -> None:
    trajs = [_traj(5, 4, 6, 3, 10), _traj(3, 6, 0, 0, 11)]
    for mask_retrieved in (True, False):
        batch = collate(trajs, [1.0, 0.0], [0, 1], pad_id=2, mask_retrieved=mask_retrieved)
        expected = torch.zeros_like(batch.loss_mask)
        expected[0, 5 + 4 - 1 : 5 + 4 + 6 - 1] = 1.0  # row 0's 6 injected targets; row 1 has none, nor the prompts
        assert torch.equal(batch.injected_mask, expected)


def test_logged_injected_logprob_is_the_exact_mean_over_injected_tokens(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from helpers.training import make_trainer

    trajs = [_traj(5, 4, 6, 3, 12), _traj(4, 3, 9, 2, 13)]
    off = make_trainer(smol_tokenizer, "grpo", tmp_path / "off")
    batch = collate(trajs, [1.0, 0.0], [0, 0], pad_id=2, mask_retrieved=False)
    assert off.stage_injected(batch) == {}  # not asked for: no forward pass
    trainer = make_trainer(smol_tokenizer, "grpo", tmp_path / "on", extra=("train.log_injected=true",))
    got = trainer.stage_injected(batch)["actor/injected_logprob"]
    with torch.no_grad():
        logits = trainer.policy(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    expected = float((lp * batch.injected_mask).sum() / batch.injected_mask.sum())
    assert abs(got - expected) < 1e-4 * abs(expected) and expected < 0
    # a step that runs the old log-prob pass scores the injected tokens in that pass: same metric, same old
    old_off, _, _ = off.stage_logprobs(batch)
    old_on, _, _ = trainer.stage_logprobs(batch)
    assert trainer._injected_sums is not None and old_on is not None and old_off is not None
    torch.testing.assert_close(old_on, old_off, rtol=0, atol=1e-5)
    assert abs(trainer.stage_injected(batch)["actor/injected_logprob"] - expected) < 1e-4 * abs(expected)
    assert "perf/time_injected" in trainer.step()  # a real step runs the stage (the tiny policy never searches)

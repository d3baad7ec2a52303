"""The update stage: Dr. GRPO's normaliser is a constant of the run, for the policy and the value loss alike;
``train.policy_loss`` and ``train.clip_ratio_c`` pick the loss the update applies."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from searchrl.algorithms.losses import clipped_policy_loss, policy_gradient_loss
from searchrl.config import load_config
from searchrl.trainer.batch import Scored, collate
from searchrl.trainer.logprobs import token_logprobs
from searchrl.trainer.update import PolicyUpdate
from searchrl.types import Trajectory, Turn

MAX_CONTEXT = 512


def _traj(prompt: int, policy: int, injected: int, seed: int) -> Trajectory:
    g = torch.Generator().manual_seed(seed)
    n = prompt + policy + injected
    ids = torch.randint(3, 1000, (n,), generator=g).tolist()
    mask = [0] * prompt + [1] * policy + [0] * injected
    return Trajectory(f"e{seed}", 0, ids, mask, [0.0] * n, prompt, [Turn("search", policy, injected)], "a", "answer")


def _config(*extra: str):  # type: ignore[no-untyped-def]
    overrides = ["train.loss_agg=seq-mean-token-sum-norm", "train.mini_batch=2", "train.micro_batch=2"]
    return load_config(None, [*overrides, f"rollout.max_context={MAX_CONTEXT}", "train.kl_coef=0", *extra])


@pytest.mark.parametrize("algorithm", ["dr_grpo", "ppo"])
def test_seq_mean_token_sum_norm_divides_by_max_context_not_the_padded_width(smol_tokenizer, algorithm: str) -> None:  # type: ignore[no-untyped-def]
    """The same two rows give the same loss whether or not a longer row widens the step's padding."""
    from searchrl.models import tiny_model
    from searchrl.trainer.critic import build_critic

    cfg = _config(f"train.algorithm={algorithm}")
    model = tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0)
    rows = [_traj(3, 5, 4, 0), _traj(4, 3, 0, 1)]
    for trajs in (rows, [*rows, _traj(3, 40, 0, 2)]):  # the third row (not updated) widens the padding
        batch = collate(trajs, [1.0] * len(trajs), list(range(len(trajs))), pad_id=2)
        adv = 0.5 * batch.loss_mask
        returns = 2.0 * batch.loss_mask
        critic = critic_opt = old_values = None
        if algorithm == "ppo":  # a fresh critic's head is zero: values 0, value loss 0.5 * returns^2 per token
            critic = build_critic(model, 0, 1, seed=0)
            critic_opt = torch.optim.SGD(critic.parameters(), lr=0.0)
            old_values = torch.zeros_like(batch.loss_mask)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        update = PolicyUpdate(
            cfg.train, model, opt, critic, critic_opt, kl_in_loss=False, norm_len=cfg.rollout.max_context
        )
        stats = update.minibatch(Scored(batch, None, None, old_values, adv, returns), torch.arange(2))
        tokens = float(batch.loss_mask[:2].sum())
        # on-policy ratio 1: the per-token policy loss is -A; Dr. GRPO divides the sum by rows x max_context
        assert stats["actor/pg_loss"] == pytest.approx(-0.5 * tokens / (2 * MAX_CONTEXT), rel=1e-6)
        if algorithm == "ppo":
            assert stats["critic/value_loss"] == pytest.approx(0.5 * 4.0 * tokens / (2 * MAX_CONTEXT), rel=1e-6)


def test_trainer_normalises_by_the_constant_the_trl_path_uses_and_times_its_stages(
    smol_tokenizer, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from helpers.training import make_trainer
    from searchrl.engines.trl import grpo_args

    trainer = make_trainer(smol_tokenizer, "dr_grpo", tmp_path, extra=("train.loss_agg=seq-mean-token-sum-norm",))
    assert trainer.update.norm_len == trainer.cfg.rollout.max_context
    assert grpo_args(trainer.cfg)["max_completion_length"] == trainer.update.norm_len
    metrics = trainer.step()  # the advantage stage has its own timer
    assert {"perf/time_logprobs", "perf/time_advantages", "perf/time_update"} <= set(metrics)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ((), lambda *a: clipped_policy_loss(*a, clip_low=0.2, clip_high=0.2)),  # the default: today's loss
        (("train.clip_ratio_c=1.5",), lambda *a: clipped_policy_loss(*a, clip_low=0.2, clip_high=0.2, dual_clip=1.5)),
        (("train.policy_loss=pg",), policy_gradient_loss),
    ],
)
def test_config_picks_the_policy_loss(smol_tokenizer, extra, expected) -> None:  # type: ignore[no-untyped-def]
    from searchrl.models import tiny_model

    cfg = load_config(None, ["train.mini_batch=2", "train.micro_batch=2", "train.kl_coef=0", *extra])
    model = tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0)
    batch = collate([_traj(3, 6, 4, 3), _traj(4, 5, 0, 4)], [1.0, 0.0], [0, 0], pad_id=2)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        new, _ = token_logprobs(model, batch.input_ids, batch.attention_mask, batch.loss_mask)
    old = (new + 0.5 * torch.randn(new.shape, generator=g)) * batch.loss_mask  # ratios far from 1: clips bind
    adv = torch.where(torch.rand(new.shape, generator=g) < 0.5, -1.0, 1.0) * batch.loss_mask
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    update = PolicyUpdate(cfg.train, model, opt, None, None, kl_in_loss=False, norm_len=cfg.rollout.max_context)
    stats = update.minibatch(Scored(batch, old, None, None, adv, adv), torch.arange(2))
    want = expected(new, old, adv, batch.loss_mask)
    assert stats["actor/pg_loss"] == pytest.approx(float(want.loss), rel=1e-5)
    assert ("actor/dual_clip_frac" in stats) == (cfg.train.clip_ratio_c is not None)
    if cfg.train.clip_ratio_c is not None:
        assert stats["actor/dual_clip_frac"] == pytest.approx(float(want.dual_clip_frac)) and want.dual_clip_frac > 0


def test_a_step_logs_its_own_search_deduplication_and_cache_hits(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from helpers.training import make_trainer
    from searchrl.retrieval.query_cache import SearchStats

    trainer = make_trainer(smol_tokenizer, "grpo", tmp_path)
    trainer.search_stats = SearchStats(queries=100, unique=90, hits=10, misses=80)  # earlier steps' counts
    sample = trainer.stage_sample

    def searching(clock):  # type: ignore[no-untyped-def]
        stats = trainer.search_stats
        stats.queries, stats.unique, stats.hits, stats.misses = (
            stats.queries + 8,
            stats.unique + 4,
            stats.hits + 1,
            stats.misses + 3,
        )
        return sample(clock)

    trainer.stage_sample = searching  # type: ignore[method-assign]
    metrics = trainer.step()
    assert metrics["retrieval/unique_fraction"] == 0.5 and metrics["retrieval/cache_hit_rate"] == 0.25

"""Advantage estimators: hand-computed cases, a plain-loop GAE reference, invariants."""

from __future__ import annotations

import pytest
import torch

from searchrl.algorithms.advantages import (
    discounted_returns,
    gae,
    gae_unwhitened,
    group_mean_std,
    grpo,
    reinforce_pp,
    reinforce_pp_baseline,
    rloo,
    token_rewards,
)
from searchrl.algorithms.masked import masked_whiten


def loop_gae(
    rewards: list[float], values: list[float], mask: list[int], gamma: float, lam: float
) -> tuple[list[float], list[float]]:
    """Reference: textbook GAE on the policy tokens alone (observation tokens deleted), scattered back."""
    idx = [t for t, m in enumerate(mask) if m]
    r = [rewards[t] for t in idx]
    v = [values[t] for t in idx]
    adv_c = [0.0] * len(idx)
    last = 0.0
    for k in reversed(range(len(idx))):
        v_next = v[k + 1] if k + 1 < len(idx) else 0.0
        delta = r[k] + gamma * v_next - v[k]
        last = delta + gamma * lam * last
        adv_c[k] = last
    adv = [0.0] * len(mask)
    ret = [0.0] * len(mask)
    for k, t in enumerate(idx):
        adv[t] = adv_c[k]
        ret[t] = adv_c[k] + v[k]
    return adv, ret


def test_gae_hand_computed_skips_observation_tokens() -> None:
    # positions: policy, policy, OBS, OBS, policy ; outcome 1 on the last policy token
    mask = torch.tensor([[1, 1, 0, 0, 1]])
    values = torch.tensor([[0.5, 0.6, 99.0, -99.0, 0.8]])  # the obs values must not matter
    r = token_rewards(torch.tensor([1.0]), mask)
    assert r.tolist() == [[0.0, 0.0, 0.0, 0.0, 1.0]]
    adv, ret = gae_unwhitened(r, values, mask, gamma=1.0, lam=1.0)
    # gamma = lam = 1: A_t = R - V_t on policy tokens
    torch.testing.assert_close(adv, torch.tensor([[0.5, 0.4, 0.0, 0.0, 0.2]]))
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0]]))
    # gamma = 0.5, lam = 0.5 by hand: delta_4 = 1 - .8 = .2; delta_1 = .5*.8 - .6 = -.2; delta_0 = .5*.6 - .5 = -.2
    adv, _ = gae_unwhitened(r, values, mask, gamma=0.5, lam=0.5)
    a4 = 0.2
    a1 = -0.2 + 0.25 * a4
    a0 = -0.2 + 0.25 * a1
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, 0.0, 0.0, a4]]))


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 1.0), (0.9, 0.95), (1.0, 0.8), (0.7, 1.0)])
def test_gae_matches_plain_loop(gamma: float, lam: float) -> None:
    g = torch.Generator().manual_seed(1)
    b, t = 6, 23
    mask = torch.zeros(b, t, dtype=torch.long)
    for i in range(b):
        start = 2 + i  # prompt of varying length
        end = t - i  # right padding of varying length
        mask[i, start:end] = 1
        mask[i, start + 3 : start + 7] = 0  # an injected <information> block in the middle
    mask[5] = 0  # a row with no policy token at all
    values = torch.randn(b, t, generator=g) * 10  # large junk at non-policy positions
    kl = torch.rand(b, t, generator=g)
    outcome = torch.randn(b, generator=g)
    r = token_rewards(outcome, mask, kl, kl_coef=0.1)
    adv, ret = gae_unwhitened(r, values, mask, gamma, lam)
    for i in range(b):
        exp_adv, exp_ret = loop_gae(r[i].tolist(), values[i].tolist(), mask[i].tolist(), gamma, lam)
        torch.testing.assert_close(adv[i], torch.tensor(exp_adv), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ret[i], torch.tensor(exp_ret), atol=1e-5, rtol=1e-5)
    assert (adv[mask == 0] == 0).all() and (ret[mask == 0] == 0).all()


def test_gae_observation_values_do_not_enter_td_chain() -> None:
    mask = torch.tensor([[0, 1, 1, 0, 0, 0, 1, 1, 0]])
    r = token_rewards(torch.tensor([2.0]), mask)
    v1 = torch.tensor([[3.0, 0.1, 0.2, 0.0, 0.0, 0.0, 0.3, 0.4, 7.0]])
    v2 = v1.clone()
    v2[0, [0, 3, 4, 5, 8]] = torch.tensor([-40.0, 1e3, -1e3, 5.0, 1e4])
    for gamma, lam in [(1.0, 1.0), (0.9, 0.9)]:
        a1, r1 = gae_unwhitened(r, v1, mask, gamma, lam)
        a2, r2 = gae_unwhitened(r, v2, mask, gamma, lam)
        torch.testing.assert_close(a1, a2)
        torch.testing.assert_close(r1, r2)


def test_gae_mask_equals_deleting_tokens() -> None:
    """An injected block in the middle gives the same advantages as the sequence without it."""
    g = torch.Generator().manual_seed(3)
    vals = torch.randn(1, 6, generator=g)
    mask_full = torch.tensor([[1, 1, 1, 1, 1, 1]])
    r = token_rewards(torch.tensor([1.5]), mask_full)
    a_short, _ = gae_unwhitened(r, vals, mask_full, 0.9, 0.8)
    # insert 3 observation tokens after position 2
    vals_long = torch.cat([vals[:, :3], torch.randn(1, 3, generator=g), vals[:, 3:]], dim=1)
    mask_long = torch.tensor([[1, 1, 1, 0, 0, 0, 1, 1, 1]])
    a_long, _ = gae_unwhitened(token_rewards(torch.tensor([1.5]), mask_long), vals_long, mask_long, 0.9, 0.8)
    torch.testing.assert_close(a_long[:, [0, 1, 2, 6, 7, 8]], a_short)


def test_token_rewards_places_outcome_on_last_policy_token_and_kl_on_policy_tokens() -> None:
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 0, 1, 1, 0]])
    kl = torch.full((3, 5), 2.0)
    r = token_rewards(torch.tensor([1.0, 5.0, -1.0]), mask, kl, kl_coef=0.5)
    expected = torch.tensor(
        [[0.0, -1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], [-1.0, 0.0, -1.0, -2.0, 0.0]],
    )
    expected[0, 2] = -1.0 + 1.0
    torch.testing.assert_close(r, expected)


def test_discounted_returns_fast_path_matches_loop_path() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 17, generator=g)
    mask = (torch.rand(4, 17, generator=g) > 0.4).long()
    fast = discounted_returns(x, mask, 1.0)
    slow = discounted_returns(x, mask, 1.0 - 1e-12)  # takes the loop path
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    # by hand: x = [1, *, 2, 3] with a hole, discount 0.5 -> [1 + .5 * (2 + .5 * 3), 0, 2 + 1.5, 3]
    out = discounted_returns(torch.tensor([[1.0, 50.0, 2.0, 3.0]]), torch.tensor([[1, 0, 1, 1]]), 0.5)
    torch.testing.assert_close(out, torch.tensor([[2.75, 0.0, 3.5, 3.0]]))


def test_group_mean_std_with_arbitrary_ids() -> None:
    rewards = torch.tensor([1.0, 0.0, 3.0, 5.0, 7.0])
    group = torch.tensor([900, 12, 900, 12, 4])
    mean, std, count = group_mean_std(rewards, group)
    torch.testing.assert_close(mean, torch.tensor([2.0, 2.5, 2.0, 2.5, 7.0]))
    torch.testing.assert_close(std, torch.tensor([2**0.5, 12.5**0.5, 2**0.5, 12.5**0.5, 0.0]))
    assert count.tolist() == [2, 2, 2, 2, 1]


def test_grpo_hand_computed_and_broadcast() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    group = torch.tensor([0, 0, 0, 0])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1]])
    adv, ret = grpo(rewards, group, mask)
    std = torch.tensor([1.0, 0.0, 0.0, 0.0]).std().item()  # unbiased: 0.5
    a_pos, a_neg = 0.75 / (std + 1e-6), -0.25 / (std + 1e-6)
    expected = torch.tensor([[a_pos, a_pos, 0], [a_neg, 0, 0], [0, a_neg, a_neg], [a_neg, a_neg, a_neg]])
    torch.testing.assert_close(adv, expected)
    assert ret is adv or torch.equal(ret, adv)
    dr, _ = grpo(rewards, group, mask, scale_by_std=False)
    torch.testing.assert_close(dr[0, 0], torch.tensor(0.75))


def test_grpo_invariant_to_reward_shift_and_degenerate_groups() -> None:
    g = torch.Generator().manual_seed(4)
    rewards = torch.rand(12, generator=g)
    group = torch.arange(12) // 4
    mask = torch.ones(12, 5)
    for scale in (True, False):
        a, _ = grpo(rewards, group, mask, scale_by_std=scale)
        b, _ = grpo(rewards + 3.7, group, mask, scale_by_std=scale)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # equal rewards in a group, and a singleton group: zero advantage, no NaN
    a, _ = grpo(torch.tensor([1.0, 1.0, 1.0, 0.3]), torch.tensor([0, 0, 0, 1]), torch.ones(4, 2))
    assert torch.equal(a, torch.zeros(4, 2))
    # scale invariance of the std-normalized form (up to eps)
    a, _ = grpo(rewards, group, mask)
    b, _ = grpo(rewards * 10, group, mask)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_rloo_hand_computed() -> None:
    rewards = torch.tensor([1.0, 0.0, 2.0, 4.0])
    group = torch.tensor([7, 7, 7, 3])
    adv, _ = rloo(rewards, group, torch.ones(4, 1))
    # sample 0: 1 - (0 + 2)/2 = 0; sample 1: 0 - 1.5 = -1.5; sample 2: 2 - .5 = 1.5; singleton: 0
    torch.testing.assert_close(adv[:, 0], torch.tensor([0.0, -1.5, 1.5, 0.0]))


def test_reinforce_pp_returns_and_global_whitening() -> None:
    mask = torch.tensor([[0, 1, 1, 0, 1], [0, 1, 1, 1, 0]])
    kl = torch.full((2, 5), 1.0)
    adv, ret = reinforce_pp(torch.tensor([1.0, 0.0]), mask, kl, kl_coef=0.1, gamma=1.0)
    # row 0 rewards on policy tokens: -.1, -.1, 1 - .1 -> returns .7, .8, .9
    # row 1: -.1 each -> returns -.3, -.2, -.1
    expected_ret = torch.tensor([[0, 0.7, 0.8, 0, 0.9], [0, -0.3, -0.2, -0.1, 0]])
    torch.testing.assert_close(ret, expected_ret)
    torch.testing.assert_close(adv, masked_whiten(expected_ret, mask))
    # no KL: every policy token carries the outcome
    _, ret = reinforce_pp(torch.tensor([1.0, 0.0]), mask)
    torch.testing.assert_close(ret, mask.float() * torch.tensor([[1.0], [0.0]]))


def test_reinforce_pp_baseline_subtracts_group_mean_before_whitening() -> None:
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0])
    group = torch.tensor([0, 0, 1, 1])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 1]])
    adv, ret = reinforce_pp_baseline(rewards, group, mask)
    centered = torch.tensor([0.5, -0.5, 0.0, 0.0])
    torch.testing.assert_close(ret, mask.float() * centered[:, None])
    torch.testing.assert_close(adv, masked_whiten(ret, mask))
    # shifting all rewards by a constant changes nothing
    adv2, _ = reinforce_pp_baseline(rewards - 2.0, group, mask)
    torch.testing.assert_close(adv, adv2)


def test_estimators_do_not_track_gradients() -> None:
    rewards = torch.tensor([1.0, 0.0], requires_grad=True)
    values = torch.zeros(2, 3, requires_grad=True)
    mask = torch.ones(2, 3)
    group = torch.tensor([0, 0])
    outs = [
        gae(rewards, values, mask)[0],
        grpo(rewards, group, mask)[0],
        rloo(rewards, group, mask)[0],
        reinforce_pp(rewards, mask)[0],
        reinforce_pp_baseline(rewards, group, mask)[0],
    ]
    assert not any(o.requires_grad for o in outs)

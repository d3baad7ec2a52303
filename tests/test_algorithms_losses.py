"""Losses: hand-computed clipping, dual clip, value clipping, KL estimators, aggregation invariants."""

from __future__ import annotations

import math

import pytest
import torch

from searchrl.algorithms.losses import (
    aggregate_loss,
    clipped_policy_loss,
    kl_k1,
    kl_k2,
    kl_k3,
    policy_gradient_loss,
    value_loss,
)
from searchrl.algorithms.names import AGG_MODES


def _lp(ratios: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    old = torch.zeros(1, len(ratios))
    new = torch.log(torch.tensor([ratios])).requires_grad_(True)
    return new, old


def test_clipped_policy_loss_hand_computed() -> None:
    new, old = _lp([1.5, 0.5, 1.1, 0.7])
    adv = torch.tensor([[1.0, -1.0, 2.0, -2.0]])
    mask = torch.ones(1, 4)
    out = clipped_policy_loss(new, old, adv, mask, clip_low=0.2, clip_high=0.2)
    # per token: max(-A r, -A clip(r)):
    # 1.5, A=1: max(-1.5, -1.2) = -1.2 (clipped); 0.5, A=-1: max(.5, .8) = .8 (clipped)
    # 1.1, A=2: max(-2.2, -2.2) = -2.2;            0.7, A=-2: max(1.4, 1.6) = 1.6 (clipped)
    assert out.loss.item() == pytest.approx((-1.2 + 0.8 - 2.2 + 1.6) / 4)
    assert out.clip_frac.item() == pytest.approx(0.75)
    out.loss.backward()
    assert new.grad is not None
    # clipped tokens get no gradient; token 2: d(-A r)/d log r = -A r / 4
    torch.testing.assert_close(new.grad, torch.tensor([[0.0, 0.0, -2.2 / 4, 0.0]]))


def test_asymmetric_clip_and_dual_clip() -> None:
    new, old = _lp([1.25, 5.0, 5.0])
    adv = torch.tensor([[1.0, -1.0, 1.0]])
    mask = torch.ones(1, 3)
    out = clipped_policy_loss(new, old, adv, mask, clip_low=0.2, clip_high=0.28)
    # 1.25 < 1.28: not clipped -> -1.25; 5.0 with A=-1 -> max(5, 1.28) = 5; 5.0 with A=1 -> -1.28
    assert out.loss.item() == pytest.approx((-1.25 + 5.0 - 1.28) / 3)
    dual = clipped_policy_loss(new, old, adv, mask, clip_low=0.2, clip_high=0.28, dual_clip=3.0)
    # the negative-advantage token is capped at -A * 3 = 3
    assert dual.loss.item() == pytest.approx((-1.25 + 3.0 - 1.28) / 3)
    assert dual.dual_clip_frac.item() == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        clipped_policy_loss(new, old, adv, mask, dual_clip=1.0)


def test_on_policy_clipped_loss_equals_pg_loss() -> None:
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(3, 7, generator=g)
    adv = torch.randn(3, 7, generator=g)
    mask = (torch.rand(3, 7, generator=g) > 0.3).float()
    a = clipped_policy_loss(lp, lp.clone(), adv, mask)
    b = policy_gradient_loss(lp, lp.clone(), adv, mask)
    torch.testing.assert_close(a.loss, b.loss)
    assert a.clip_frac.item() == 0.0 and a.approx_kl.item() == pytest.approx(0.0, abs=1e-7)


def test_masked_positions_never_leak_into_policy_loss() -> None:
    new, old = _lp([1.0, 1.0])
    new_bad = new.detach().clone()
    new_bad[0, 1] = float("nan")
    adv = torch.tensor([[1.0, float("inf")]])
    mask = torch.tensor([[1.0, 0.0]])
    out = clipped_policy_loss(new_bad.requires_grad_(True), old, adv, mask)
    assert out.loss.item() == pytest.approx(-1.0)
    out.loss.backward()
    assert torch.isfinite(new_bad.grad).all()  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", AGG_MODES)
def test_masking_a_token_equals_deleting_it(mode: str) -> None:
    g = torch.Generator().manual_seed(5)
    loss = torch.randn(3, 6, generator=g)
    mask = torch.ones(3, 6)
    mask[1, 4] = 0
    mask[2, 0] = 0
    # deleting: compact each row and pad at the end (padding is masked too)
    rows = [loss[i][mask[i].bool()] for i in range(3)]
    width = 6
    compact = torch.zeros(3, width)
    cmask = torch.zeros(3, width)
    for i, r in enumerate(rows):
        compact[i, : len(r)] = r
        cmask[i, : len(r)] = 1
    a = aggregate_loss(loss, mask, mode, norm_len=6)  # type: ignore[arg-type]
    b = aggregate_loss(compact, cmask, mode, norm_len=6)  # type: ignore[arg-type]
    torch.testing.assert_close(a, b)


def test_aggregation_modes_hand_computed() -> None:
    loss = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert aggregate_loss(loss, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate_loss(loss, mask, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2)
    assert aggregate_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate_loss(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx(10 / (3 * 4))
    assert aggregate_loss(loss, mask, "seq-mean-token-sum-norm", norm_len=10).item() == pytest.approx(10 / 30)
    for mode in AGG_MODES:
        assert aggregate_loss(loss, torch.zeros_like(mask), mode).item() == 0.0
    with pytest.raises(ValueError, match="token-mean"):
        aggregate_loss(loss, mask, "sum")  # type: ignore[arg-type]


def test_value_loss_clipping() -> None:
    values = torch.tensor([[1.0, 0.0, 3.0]], requires_grad=True)
    old = torch.tensor([[0.0, 0.0, 0.0]])
    returns = torch.tensor([[2.0, 1.0, 0.5]])
    mask = torch.tensor([[1, 1, 1]])
    out = value_loss(values, old, returns, mask, clip_range=0.5)
    # token 0: v=1 -> clipped .5; errors (1-2)^2=1, (.5-2)^2=2.25 -> 2.25
    # token 1: v=0 -> errors 1, 1 -> 1;  token 2: v=3 -> clipped .5; errors 6.25, 0 -> 6.25
    assert out.loss.item() == pytest.approx(0.5 * (2.25 + 1 + 6.25) / 3)
    assert out.clip_frac.item() == pytest.approx(1 / 3)
    plain = value_loss(values, old, returns, mask, clip_range=None)
    assert plain.loss.item() == pytest.approx(0.5 * (1 + 1 + 6.25) / 3)


def test_kl_estimators_hand_computed_and_unbiased() -> None:
    lp = torch.tensor([math.log(0.5)])
    ref = torch.tensor([math.log(0.25)])
    assert kl_k1(lp, ref).item() == pytest.approx(math.log(2))
    assert kl_k2(lp, ref).item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert kl_k3(lp, ref).item() == pytest.approx(0.5 + math.log(2) - 1)
    # Monte Carlo over samples from p: k1 and k3 average to KL(p || ref); k3 is never negative
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.5, 0.3])
    true_kl = (p * (p / q).log()).sum().item()
    x = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    lp_s, ref_s = p.log()[x], q.log()[x]
    assert kl_k1(lp_s, ref_s).mean().item() == pytest.approx(true_kl, abs=0.01)
    assert kl_k3(lp_s, ref_s).mean().item() == pytest.approx(true_kl, abs=0.01)
    assert (kl_k3(lp_s, ref_s) >= 0).all() and (kl_k2(lp_s, ref_s) >= 0).all()
    # k3 stays bounded for extreme log-ratios
    assert kl_k3(torch.tensor([-100.0]), torch.tensor([0.0])).item() == 10.0

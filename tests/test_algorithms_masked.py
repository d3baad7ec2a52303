"""Masked reductions: hand-computed values, NaN isolation, empty-mask conventions."""

from __future__ import annotations

import math

import pytest
import torch

from searchrl.algorithms.masked import masked_mean, masked_sum, masked_var, masked_whiten


def test_hand_computed_sum_mean_var() -> None:
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, -50.0, 5.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 1]])
    assert masked_sum(x, m).item() == 11.0
    assert masked_mean(x, m).item() == pytest.approx(11 / 4)
    assert masked_mean(x, m, dim=-1).tolist() == [1.5, 4.0]
    assert masked_sum(x, m, dim=0).tolist() == [4.0, 2.0, 5.0]
    # values 1, 2, 3, 5: mean 2.75, squared deviations sum 8.75
    assert masked_var(x, m).item() == pytest.approx(8.75 / 3)
    assert masked_var(x, m, unbiased=False).item() == pytest.approx(8.75 / 4)


def test_excluded_nan_and_inf_never_leak() -> None:
    x = torch.tensor([[1.0, float("nan"), float("inf")], [2.0, 3.0, float("-inf")]])
    m = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    assert masked_mean(x, m).item() == pytest.approx(2.0)
    w = masked_whiten(x, m)
    assert torch.isfinite(w).all()
    assert w[0, 1] == 0 and w[0, 2] == 0 and w[1, 2] == 0


def test_whiten_standardizes_selected_elements() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 9, generator=g) * 3 + 7
    m = (torch.rand(4, 9, generator=g) > 0.3).float()
    w = masked_whiten(x, m)
    sel = w[m.bool()]
    assert sel.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert sel.std().item() == pytest.approx(1.0, abs=1e-4)
    assert (w[~m.bool()] == 0).all()
    # shift_mean=False keeps the mean, rescales only
    w2 = masked_whiten(x, m, shift_mean=False)
    assert w2[m.bool()].mean().item() == pytest.approx(x[m.bool()].mean().item(), abs=1e-4)


def test_whiten_equals_deleting_masked_elements() -> None:
    x = torch.tensor([[1.0, 9.0, 3.0, 4.0]])
    m = torch.tensor([[1, 0, 1, 1]])
    kept = torch.tensor([1.0, 3.0, 4.0])
    expected = (kept - kept.mean()) / torch.sqrt(kept.var() + 1e-8)
    got = masked_whiten(x, m)[0, [0, 2, 3]]
    torch.testing.assert_close(got, expected)


def test_empty_mask_gives_zeros_not_nan() -> None:
    """Decided convention: an empty selection is no signal, so means, variances and whitening are 0."""
    x = torch.randn(3, 5)
    m = torch.zeros(3, 5)
    assert masked_mean(x, m).item() == 0.0
    assert masked_var(x, m).item() == 0.0
    assert (masked_whiten(x, m) == 0).all()
    assert masked_mean(x, m, dim=-1).tolist() == [0.0, 0.0, 0.0]


def test_single_element_whitens_to_zero() -> None:
    x = torch.tensor([[5.0, 2.0]])
    m = torch.tensor([[0, 1]])
    assert masked_var(x, m).item() == 0.0
    assert masked_whiten(x, m).tolist() == [[0.0, 0.0]]
    assert not math.isnan(masked_var(x, m, unbiased=False).item())


def test_mean_is_differentiable_only_through_selected() -> None:
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    masked_mean(x, torch.tensor([1, 0, 1])).backward()
    assert x.grad is not None
    assert x.grad.tolist() == [0.5, 0.0, 0.5]

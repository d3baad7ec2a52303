"""Log-probs and entropy from logits, and the fused chunked head, equal the full log_softmax versions, values
and gradients."""

from __future__ import annotations

import pytest
import torch

from searchrl.algorithms.logprobs import entropy_from_logits, head_logprobs, logprobs_from_logits


def _reference(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logp = torch.log_softmax(logits.float(), dim=-1)
    lp = logp.gather(-1, targets[..., None])[..., 0]
    ent = -(logp.exp() * logp).sum(-1)
    return lp, ent


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_values_match_log_softmax_gather(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 11, 97, generator=g) * 4).to(dtype)
    targets = torch.randint(0, 97, (3, 11), generator=g)
    lp = logprobs_from_logits(logits, targets)
    ent = entropy_from_logits(logits)
    ref_lp, ref_ent = _reference(logits, targets)
    assert lp.dtype == torch.float32 and lp.shape == (3, 11)
    assert ent.dtype == torch.float32 and ent.shape == (3, 11)
    torch.testing.assert_close(lp, ref_lp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, ref_ent, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradients_match_autograd_reference(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.randn(2, 5, 33, generator=g) * 3
    targets = torch.randint(0, 33, (2, 5), generator=g)
    w_lp = torch.randn(2, 5, generator=g)
    w_ent = torch.randn(2, 5, generator=g)

    ours = base.clone().to(dtype).requires_grad_(True)
    loss = (logprobs_from_logits(ours, targets) * w_lp).sum()
    loss = loss + (entropy_from_logits(ours) * w_ent).sum()
    loss.backward()

    ref = base.clone().to(dtype).requires_grad_(True)
    ref_lp, ref_ent = _reference(ref, targets)
    ((ref_lp * w_lp).sum() + (ref_ent * w_ent).sum()).backward()

    assert ours.grad is not None and ref.grad is not None
    assert ours.grad.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(ours.grad.float(), ref.grad.float(), atol=tol, rtol=tol)


def test_gradcheck_in_double() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 6, dtype=torch.float64, generator=g, requires_grad=True)
    targets = torch.randint(0, 6, (4,), generator=g)
    # outputs are float32 by contract; check the chain rule against finite differences loosely
    assert torch.autograd.gradcheck(
        lambda z: logprobs_from_logits(z, targets).double(), (logits,), eps=1e-3, atol=1e-3, rtol=1e-3
    )
    assert torch.autograd.gradcheck(
        lambda z: entropy_from_logits(z).double(), (logits,), eps=1e-3, atol=1e-3, rtol=1e-3
    )


def test_non_contiguous_logits_and_shape_errors() -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(11, 3, 50, generator=g).transpose(0, 1)  # [3, 11, 50], not contiguous
    targets = torch.randint(0, 50, (3, 11), generator=g)
    ref_lp, _ = _reference(logits, targets)
    torch.testing.assert_close(logprobs_from_logits(logits, targets), ref_lp)
    with pytest.raises(ValueError):
        logprobs_from_logits(logits, targets[:, :-1])
    with pytest.raises(ValueError):  # the chunked path: hidden = the logits' rows, weight = identity
        head_logprobs(logits.reshape(-1, 50), torch.eye(50), targets.reshape(-1), chunk=0)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_head_logprobs_match_full_head_values_and_gradients(chunk: int) -> None:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(7, 5, generator=g, requires_grad=True)
    weight = torch.randn(11, 5, generator=g, requires_grad=True)
    targets = torch.randint(0, 11, (7,), generator=g)
    upstream = torch.randn(7, generator=g)

    got = head_logprobs(hidden, weight, targets, chunk)
    (got * upstream).sum().backward()
    gh, gw = hidden.grad.clone(), weight.grad.clone()  # type: ignore[union-attr]
    hidden.grad, weight.grad = None, None

    ref = torch.log_softmax(hidden @ weight.T, -1).gather(-1, targets[:, None])[:, 0]
    (ref * upstream).sum().backward()
    assert torch.allclose(got, ref, atol=1e-5)
    assert torch.allclose(gh, hidden.grad, atol=1e-5)  # type: ignore[arg-type]
    assert torch.allclose(gw, weight.grad, atol=1e-5)  # type: ignore[arg-type]


def test_head_logprobs_frozen_head_and_empty() -> None:
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(4, 3, generator=g, requires_grad=True)
    frozen = torch.randn(6, 3, generator=g)
    targets = torch.tensor([0, 5, 2, 2])
    head_logprobs(hidden, frozen, targets, 2).sum().backward()  # a frozen head (LoRA): no weight gradient
    assert frozen.grad is None and hidden.grad is not None
    empty = torch.zeros(0, 3, requires_grad=True)
    assert head_logprobs(empty, frozen, torch.zeros(0, dtype=torch.long)).shape == (0,)
    with pytest.raises(ValueError, match="hidden must be"):
        head_logprobs(hidden, frozen, targets[:2])

"""Masked reductions: sum, mean, variance and whitening over the tokens a mask selects.

Mask semantics (the same for every function here): ``mask`` has the shape of ``x`` (or broadcasts to
it), any dtype; a nonzero entry selects the element, zero excludes it. Masks are binary, not weights.
An excluded element never influences a result, even when it holds NaN or inf (a ratio at a padded
position, say): it is replaced by zero with ``torch.where`` before any arithmetic.

Empty selections are not errors: a mean, variance or whitening over zero selected elements is 0 (a
mini-batch whose rows were all truncated carries no learning signal, and a NaN would poison the step).
A variance over a single element is 0 as well (Bessel's correction needs two).
"""

from __future__ import annotations

import torch

__all__ = ["masked_mean", "masked_sum", "masked_var", "masked_whiten"]


def _select(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x with excluded elements set to 0, boolean mask broadcast to x's shape)."""
    keep = torch.broadcast_to(mask != 0, x.shape)
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device)), keep


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of the selected elements of ``x``; over all elements (scalar) or along ``dim``.

    x: [...]; mask: same shape (or broadcastable). Returns a scalar, or x's shape without ``dim``.
    """
    xs, _ = _select(x, mask)
    return xs.sum() if dim is None else xs.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of the selected elements of ``x``; 0 where nothing is selected.

    x: [...]; mask: same shape. Returns a scalar (``dim=None``) or x's shape without ``dim``.
    """
    xs, keep = _select(x, mask)
    if dim is None:
        return xs.sum() / keep.sum().clamp_min(1).to(xs.dtype)
    return xs.sum(dim) / keep.sum(dim).clamp_min(1).to(xs.dtype)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance (scalar) of all selected elements of ``x``; 0 for fewer than two (one, if biased).

    x: [...]; mask: same shape. ``unbiased`` applies Bessel's correction (divide by n - 1).
    """
    xs, keep = _select(x, mask)
    n = keep.sum().to(xs.dtype)
    mean = xs.sum() / n.clamp_min(1)
    centered, _ = _select(x - mean, keep)
    denom = n - 1 if unbiased else n
    return (centered**2).sum() / denom.clamp_min(1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Standardize ``x`` with the mean and (unbiased) variance of its selected elements.

    x: [...] (typically [B, T] advantages); mask: same shape. Returns x's shape:
    ``(x - mean) / sqrt(var + eps)`` at selected elements (the mean is added back when ``shift_mean`` is
    False), exactly 0 at excluded ones. An all-zero mask returns zeros (see the module docstring).
    """
    _, keep = _select(x, mask)
    mean = masked_mean(x, keep)
    var = masked_var(x, keep, unbiased=True)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(keep, out, torch.zeros((), dtype=out.dtype, device=out.device))

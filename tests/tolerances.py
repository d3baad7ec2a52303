"""fp32 tolerances for invariance tests that must hold on any x86-64 CPU.

Two computations that are equal in exact arithmetic (one batch vs micro-batches, a fast path vs the
slow path) differ in fp32 by rounding only: each gradient entry is a sum over many token terms, and
another batch shape or another CPU (AVX2 vs AVX-512 kernels) sums them in another order. A sum of n
terms carries an error up to about n * eps * sum(|terms|), where eps = 6e-8 for fp32. That error is set
by the size of the terms, not of the result: an entry whose terms cancel to nearly zero has a large
*relative* error while being exact to the precision of its neighbours. So a gradient tensor is compared
against its own largest entry (and elementwise rtol alone is never used on gradients).

A check after an Adam step amplifies exactly that noise (Adam divides by sqrt(v), so an entry whose
gradient is noise moves by about lr either way); invariance is therefore checked on the gradient and
the loss before the optimizer step.
"""

from __future__ import annotations

import torch

# 1e-5 of the tensor's largest entry is ~170 fp32 ulps: well above reordering noise for the sums of
# a few thousand terms in these tests (measured: 1e-7 to 1e-6 here), and far below any real
# difference (a dropped micro-batch or a mis-weighted token changes entries by 1e-2 of the max or more).
GRAD_REL_TO_MAX = 1e-5


def assert_same_gradients(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str = "", require_nonzero: bool = True
) -> None:
    """Every named gradient of ``a`` and ``b`` agrees (same names); unless told otherwise, at least one
    is non-zero, or nothing was compared."""
    assert a.keys() == b.keys(), f"{what}: different parameters carry gradients"
    if require_nonzero:
        assert any(torch.count_nonzero(g) for g in a.values()), f"{what}: all gradients are zero; proves nothing"
    for n, g in a.items():
        assert_same_gradient(f"{what} {n}".strip(), g, b[n])


def assert_same_gradient(name: str, a: torch.Tensor, b: torch.Tensor, rel_to_max: float = GRAD_REL_TO_MAX) -> None:
    """``a`` and ``b`` equal up to fp32 reordering noise, measured against the largest entry of ``a``."""
    scale = float(a.abs().max())
    diff = float((a - b).abs().max())
    if scale == 0:  # e.g. a row-skipped step or a frozen path: then both must be exactly zero
        assert diff == 0, f"{name}: the reference is all zero, the other is not (max |diff| {diff:.3g})"
        return
    assert diff <= rel_to_max * scale, f"{name}: max |diff| {diff:.3g} > {rel_to_max:g} x max |grad| {scale:.3g}"


# After an Adam step, an entry whose gradient is rounding noise moves by up to about lr either way, so two
# runs that differ only in summation order (one process vs two, another CPU) can differ there by up to
# steps * lr * 2; measured: 1 entry of 2048 by 1.07e-6 after 3 steps, every other entry within 1e-6. A real
# difference (a dropped or doubled sample, a wrong normaliser) moves most entries of a tensor, so the check
# bounds the share of entries off by more than ``atol``: at most 1 % of the tensor (at least 2 entries).
ADAM_NOISY_SHARE = 0.01


def assert_same_after_adam(
    name: str, a: torch.Tensor, b: torch.Tensor, lr: float, steps: int, atol: float = 1e-6
) -> None:
    """Weights after ``steps`` Adam steps of ``lr`` equal up to summation-order noise (see above)."""
    diff = (a - b).abs()
    worst = float(diff.max())
    assert worst <= 2 * lr * steps, (
        f"{name}: max |diff| {worst:.3g} is more than {steps} Adam steps of lr {lr:g} can move"
    )
    off = int((diff > atol).sum())
    allowed = max(2, int(ADAM_NOISY_SHARE * diff.numel()))
    assert off <= allowed, (
        f"{name}: {off} of {diff.numel()} entries differ by more than {atol:g} (noise allows {allowed})"
    )

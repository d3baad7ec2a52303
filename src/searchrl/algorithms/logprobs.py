"""Log-probs of chosen tokens and entropy, without a full-vocabulary fp32 log_softmax.

Shapes: N rows (positions), H hidden size, V vocabulary. :func:`logprobs_from_logits` and
:func:`entropy_from_logits` reduce one chunk of logits ``[N, V]`` (upcast to fp32) with plain autograd:
``log p(target) = logit[target] - logsumexp(logits)`` and ``H = logsumexp(logits) - sum(softmax * logits)``.
The caller (``searchrl.trainer.logprobs.token_logprobs``) applies the output head a chunk of rows at a
time, so no ``[N, V]`` fp32 tensor of all rows exists. :func:`head_logprobs` goes further for a bias-free
linear head: a custom autograd function whose backward recomputes each chunk's logits, so the logits
are never stored at all.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["entropy_from_logits", "head_logprobs", "logprobs_from_logits"]

DEFAULT_CHUNK = 1024


def logprobs_from_logits(logits: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor | None = None) -> torch.Tensor:
    """Log-probability of ``targets`` under ``softmax(logits)``, differentiable.

    logits: [..., V] (any float dtype; upcast to fp32); targets: [...] long; lse: [...] the logits'
    logsumexp when the caller has it. Returns [...] float32, ``log_softmax(logits.float(), -1)`` at targets.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)}")
    z = logits.float()
    lse = torch.logsumexp(z, dim=-1) if lse is None else lse
    return z.gather(-1, targets.long()[..., None])[..., 0] - lse


def entropy_from_logits(logits: torch.Tensor, lse: torch.Tensor | None = None) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)`` per position, differentiable: ``logsumexp - E_p[logit]``.

    logits: [..., V] (upcast to fp32); lse: [...] or None. Returns [...] float32.
    """
    z = logits.float()
    lse = torch.logsumexp(z, dim=-1) if lse is None else lse
    return lse - (torch.softmax(z, dim=-1) * z).sum(-1)


class _HeadLogprob(torch.autograd.Function):
    """log p(target) of ``hidden @ weight.T`` with the logits never stored: the forward keeps only the
    logsumexp per row; the backward recomputes each chunk's logits, turns them into
    ``d logp / d logits = onehot(target) - softmax`` in place, and folds them into the gradients of
    ``hidden`` and ``weight``. Peak extra memory is one chunk of fp32 logits."""

    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        n = hidden.shape[0]
        out = torch.empty(n, dtype=torch.float32, device=hidden.device)
        lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
        for s in range(0, n, chunk):
            logits = (hidden[s : s + chunk] @ weight.T).float()
            lse[s : s + chunk] = torch.logsumexp(logits, dim=-1)
            out[s : s + chunk] = logits.gather(-1, targets[s : s + chunk, None])[:, 0] - lse[s : s + chunk]
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        hidden, weight, targets, lse = ctx.saved_tensors
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if want_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        for s in range(0, hidden.shape[0], ctx.chunk):
            h, g = hidden[s : s + ctx.chunk], grad_out[s : s + ctx.chunk].float()
            d = (h @ weight.T).float().sub_(lse[s : s + ctx.chunk, None]).exp_().mul_(-g[:, None])  # -g * softmax
            d[torch.arange(h.shape[0], device=d.device), targets[s : s + ctx.chunk]] += g
            if grad_h is not None:
                grad_h[s : s + ctx.chunk] = (d.to(weight.dtype) @ weight).to(hidden.dtype)
            if grad_w is not None:
                grad_w.addmm_(d.T, h.float())
        return grad_h, grad_w.to(weight.dtype) if grad_w is not None else None, None, None


def head_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = DEFAULT_CHUNK
) -> torch.Tensor:
    """Log-probability of ``targets`` [N] under ``softmax(hidden [N, H] @ weight.T [H, V])``, float32 [N],
    differentiable in ``hidden`` and ``weight``, without ever holding more than ``chunk`` rows of logits
    (an unbiased linear head, as causal LMs' output embeddings are)."""
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1]:
        raise ValueError(f"hidden must be [N, H] and targets [N]; got {tuple(hidden.shape)}, {tuple(targets.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if hidden.shape[0] == 0:
        return hidden.new_zeros(0, dtype=torch.float32) + 0.0 * hidden.sum()
    out: torch.Tensor = _HeadLogprob.apply(hidden, weight, targets, chunk)
    return out

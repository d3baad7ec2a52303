"""Log-probs of chosen tokens and entropy from logits, without a full-vocabulary fp32 log_softmax.

Shapes: logits [..., V] (typically [B, T, V], any float dtype), targets [...] long; results [...]
float32. Rows (all leading positions flattened, N of them) are processed ``chunk`` at a time: each
chunk is upcast to fp32, reduced, and dropped, so the extra memory is ``chunk * V`` floats rather
than ``N * V``. ``log p(target) = logit[target] - logsumexp(logits)`` and
``H = logsumexp(logits) - sum(softmax * logits)``.

Both functions are differentiable through custom autograd functions whose backward pass is chunked
too: autograd through a plain chunked loop would keep every chunk's fp32 copy alive for the backward
pass, i.e. the very [N, V] fp32 tensor we avoid. Gradients are returned in the logits' dtype.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["entropy_from_logits", "head_logprobs", "logprobs_from_logits"]

DEFAULT_CHUNK = 1024


def _rows(logits: torch.Tensor) -> torch.Tensor:
    return logits.reshape(-1, logits.shape[-1])


class _TokenLogprob(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        rows, tgt = _rows(logits), targets.reshape(-1)
        out = torch.empty(rows.shape[0], dtype=torch.float32, device=logits.device)
        for s in range(0, rows.shape[0], chunk):
            z = rows[s : s + chunk].float()
            out[s : s + chunk] = z.gather(-1, tgt[s : s + chunk, None])[:, 0] - torch.logsumexp(z, dim=-1)
        ctx.save_for_backward(logits, targets)
        ctx.chunk = chunk
        return out.reshape(targets.shape)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        logits, targets = ctx.saved_tensors
        rows, tgt, g = _rows(logits), targets.reshape(-1), grad_out.reshape(-1).float()
        grad = torch.empty_like(rows)
        for s in range(0, rows.shape[0], ctx.chunk):
            # d log p_y / d z = onehot(y) - softmax(z)
            gz = -torch.softmax(rows[s : s + ctx.chunk].float(), dim=-1)
            gz.scatter_add_(-1, tgt[s : s + ctx.chunk, None], torch.ones_like(gz[:, :1]))
            grad[s : s + ctx.chunk] = (gz * g[s : s + ctx.chunk, None]).to(grad.dtype)
        return grad.reshape(logits.shape), None, None


class _Entropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, chunk: int) -> torch.Tensor:
        rows = _rows(logits)
        out = torch.empty(rows.shape[0], dtype=torch.float32, device=logits.device)
        for s in range(0, rows.shape[0], chunk):
            z = rows[s : s + chunk].float()
            out[s : s + chunk] = torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(-1)
        ctx.save_for_backward(logits)
        ctx.chunk = chunk
        return out.reshape(logits.shape[:-1])

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        (logits,) = ctx.saved_tensors
        rows, g = _rows(logits), grad_out.reshape(-1).float()
        grad = torch.empty_like(rows)
        for s in range(0, rows.shape[0], ctx.chunk):
            z = rows[s : s + ctx.chunk].float()
            p = torch.softmax(z, dim=-1)
            # dH / dz = -p * (z - E_p[z])
            gz = -p * (z - (p * z).sum(-1, keepdim=True))
            grad[s : s + ctx.chunk] = (gz * g[s : s + ctx.chunk, None]).to(grad.dtype)
        return grad.reshape(logits.shape), None


def logprobs_from_logits(logits: torch.Tensor, targets: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Log-probability of ``targets`` under ``softmax(logits)``, differentiable.

    logits: [..., V] (e.g. [B, T, V]; fp32, bf16 or fp16); targets: [...] long (e.g. [B, T]).
    Returns [...] float32, equal to ``log_softmax(logits.float(), -1).gather(-1, targets)``.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    out: torch.Tensor = _TokenLogprob.apply(logits, targets.long(), chunk)
    return out


def entropy_from_logits(logits: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)`` per position, differentiable.

    logits: [..., V] (e.g. [B, T, V]). Returns [...] float32 (e.g. [B, T]).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    out: torch.Tensor = _Entropy.apply(logits, chunk)
    return out


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
    if hidden.shape[0] == 0:
        return hidden.new_zeros(0, dtype=torch.float32) + 0.0 * hidden.sum()
    out: torch.Tensor = _HeadLogprob.apply(hidden, weight, targets, chunk)
    return out

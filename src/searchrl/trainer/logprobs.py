"""Log-probs of chosen tokens (and entropy) from a causal LM, computed only where the mask needs them.

The 49k-token vocabulary head dominates a small model's cost and memory. Instead of running the full
head over every position and taking a full-vocabulary fp32 ``log_softmax``, we run the transformer body
once, gather the hidden states of the positions whose target is in ``positions`` (usually the
``loss_mask``), and apply the head in chunks of ``chunk`` rows: log p = logit[target] - logsumexp(logits)
(the per-chunk math is :mod:`searchrl.algorithms.logprobs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from searchrl.algorithms.logprobs import entropy_from_logits, head_logprobs, logprobs_from_logits


def body_and_head(model: Any) -> tuple[Any, torch.nn.Module]:
    """The transformer body and the output head of a causal LM (peft-wrapped or not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    body = getattr(base, base.base_model_prefix, None)
    if body is None or head is None:
        raise TypeError(f"cannot split {type(base).__name__} into body and head")
    return body, head


LOGPROB_CHUNK = 256  # rows of vocabulary logits alive at once (256 x 49,152 fp32 = 50 MB for SmolLM2)


def token_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    positions: torch.Tensor,
    *,
    chunk: int = LOGPROB_CHUNK,
    with_entropy: bool = False,
    entropy_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of the target tokens, differentiable.

    input_ids, attention_mask: [B, T]. positions: [B, T-1], nonzero where target t+1 is needed.
    Returns (logprobs [B, T-1] float32, zero where not computed; entropy [B, T-1] or None).
    ``entropy_grad=False`` computes the entropy as a detached statistic and keeps the log-probs on the fused
    path (logits never stored). Trailing columns that are padding in every row (a micro-batch of rows shorter
    than the step's longest) are not run: a causal model's earlier positions never attend to them.
    """
    trimmed = at_trimmed_width(
        lambda i, a, p: token_logprobs(
            model, i, a, p, chunk=chunk, with_entropy=with_entropy, entropy_grad=entropy_grad
        ),
        input_ids,
        attention_mask,
        positions,
    )
    if trimmed is not None:
        return trimmed
    body, head = body_and_head(model)
    hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, :-1]  # [B, T-1, H]
    return head_logprobs_at(
        head, hidden, input_ids, positions, chunk=chunk, with_entropy=with_entropy, entropy_grad=entropy_grad
    )


LogProbs = tuple[torch.Tensor, torch.Tensor | None]


def at_trimmed_width(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], LogProbs],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    positions: torch.Tensor,
) -> LogProbs | None:
    """``fn(input_ids, attention_mask, positions)`` on the :func:`trimmed_width` columns, its (log-probs,
    entropy) padded back to [B, T-1] with zeros; None when nothing can be trimmed (the caller runs in full).
    A causal model's earlier positions never attend to the trailing columns, so the values are the same."""
    width = trimmed_width(attention_mask, positions)
    if width >= input_ids.shape[1]:
        return None
    lp, ent = fn(input_ids[:, :width], attention_mask[:, :width], positions[:, : width - 1])
    grow = (0, input_ids.shape[1] - width)
    return torch.nn.functional.pad(lp, grow), None if ent is None else torch.nn.functional.pad(ent, grow)


def trimmed_width(attention_mask: torch.Tensor, positions: torch.Tensor) -> int:
    """Columns [0, width) hold every attended token (and every target ``positions`` asks for); at least 2."""
    used = attention_mask.any(0).nonzero()
    width = int(used[-1]) + 1 if len(used) else 1
    asked = positions.any(0).nonzero()
    if len(asked):
        width = max(width, int(asked[-1]) + 2)
    return max(width, 2)


def head_logprobs_at(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    positions: torch.Tensor,
    *,
    chunk: int = LOGPROB_CHUNK,
    with_entropy: bool = False,
    entropy_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output head applied at ``positions`` of ``hidden`` [B, T-1, H] (the body's states, shifted):
    (logprobs of ``input_ids[:, 1:]``, entropy or None), both [B, T-1] and zero elsewhere."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    where = positions.bool()
    h = hidden[where]  # [N, H]
    targets = input_ids[:, 1:][where]  # [N]
    fused_ok = not with_entropy or not entropy_grad
    if fused_ok and isinstance(head, torch.nn.Linear) and head.bias is None:
        flat = head_logprobs(h, head.weight, targets, chunk)  # logits recomputed in backward, never stored
        out = hidden.new_zeros(where.shape, dtype=torch.float32).masked_scatter(where, flat)
        if not with_entropy:
            return out, None
        with torch.no_grad():
            parts = [entropy_from_logits(head(h[s : s + chunk])) for s in range(0, h.shape[0], chunk)]
            e = torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)
        return out, hidden.new_zeros(where.shape, dtype=torch.float32).masked_scatter(where, e)
    lp_parts, ent_parts = [], []
    for s in range(0, h.shape[0], chunk):
        logits = head(h[s : s + chunk]).float()  # [n, V], one chunk at a time
        lse = torch.logsumexp(logits, dim=-1)
        lp_parts.append(logprobs_from_logits(logits, targets[s : s + chunk], lse))
        if with_entropy:
            ent_parts.append(entropy_from_logits(logits, lse))
    out = hidden.new_zeros(where.shape, dtype=torch.float32)
    flat = torch.cat(lp_parts) if lp_parts else hidden.new_zeros(0, dtype=torch.float32)
    out = out.masked_scatter(where, flat)
    ent = None
    if with_entropy:
        e = torch.cat(ent_parts) if ent_parts else hidden.new_zeros(0, dtype=torch.float32)
        ent = hidden.new_zeros(where.shape, dtype=torch.float32).masked_scatter(where, e)
    return out, ent

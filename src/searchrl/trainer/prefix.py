"""Shared-prompt forward passes: a GRPO group's prompt runs through the model once, not once per sample.

Every sample of a group starts with the same prompt (about 130 of a sample's ~280 tokens with the
``search_r1`` protocol). :func:`shared_prompt_logprobs` gives exactly what
:func:`searchrl.trainer.logprobs.token_logprobs` gives, with each group's prompt computed once per call:

1. the group's first ``prompt_len - 1`` tokens run once, as one row, into a KV cache;
2. the cache is repeated for the group's rows, and the rest of every row (the prompt's last token, then
   the response) runs on top of it;
3. the prompt's hidden states feed only the cache: no target of the loss lies in the prompt (the prompt
   is masked), so only the suffix's hidden states reach the output head.

Autograd sees the repeat: the gradient that reaches the prompt's activations is the sum over the group's
rows, as in the unshared pass. Rows of one group need not share a micro-batch: whatever part of a group
a call holds shares one prompt pass. A group whose rows do not start with identical tokens (a caller's
mistake, or a prompt of one token) runs unshared.
"""

from __future__ import annotations

from typing import Any

import torch

from searchrl.models import cache_kwarg
from searchrl.trainer.batch import RolloutBatch
from searchrl.trainer.logprobs import LOGPROB_CHUNK, at_trimmed_width, body_and_head, head_logprobs_at, token_logprobs


def _group_hidden(body: Any, ids: torch.Tensor, attention: torch.Tensor, shared: int, kwarg: str) -> torch.Tensor:
    """The body's last hidden states [n, T, H] of rows that share their first ``shared`` tokens, with the
    states of those tokens left at 0 (they feed the cache only)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    body(input_ids=ids[:1, :shared], use_cache=True, **{kwarg: cache})
    if ids.shape[0] > 1:
        cache.batch_repeat_interleave(ids.shape[0])
    out = body(input_ids=ids[:, shared:], attention_mask=attention, use_cache=True, **{kwarg: cache})
    h = out.last_hidden_state  # [n, T - shared, H]
    return torch.cat([h.new_zeros(h.shape[0], shared, h.shape[2]), h], dim=1)


def shared_prompt_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    positions: torch.Tensor,
    group: torch.Tensor,
    prompt_len: torch.Tensor,
    *,
    chunk: int = LOGPROB_CHUNK,
    with_entropy: bool = False,
    entropy_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`~searchrl.trainer.logprobs.token_logprobs` with one prompt pass per group.

    group, prompt_len: [B] (the rows of one group share their prompt). Right-padded rows, as collated.
    Trailing columns that are padding in every row are not run (as in ``token_logprobs``).
    """
    options: dict[str, Any] = {"chunk": chunk, "with_entropy": with_entropy, "entropy_grad": entropy_grad}
    trimmed = at_trimmed_width(
        lambda i, a, p: shared_prompt_logprobs(model, i, a, p, group, prompt_len, **options),
        input_ids,
        attention_mask,
        positions,
    )
    if trimmed is not None:
        return trimmed
    body, head = body_and_head(model)
    kwarg = cache_kwarg(body)
    b, t = input_ids.shape
    hidden: list[torch.Tensor | None] = [None] * b
    for g in torch.unique(group).tolist():
        rows = (group == g).nonzero()[:, 0]
        ids = input_ids[rows]
        shared = int(prompt_len[rows].min()) - 1  # the prompt's last token runs with the response
        same = shared >= 1 and bool((ids[:, :shared] == ids[:1, :shared]).all())
        no_targets = same and not bool(positions[rows, :shared].any())
        if no_targets:
            full = torch.ones(len(rows), shared, dtype=attention_mask.dtype, device=attention_mask.device)
            attn = torch.cat([full, attention_mask[rows, shared:]], dim=1)
            h = _group_hidden(body, ids, attn, shared, kwarg)
        else:
            h = body(input_ids=ids, attention_mask=attention_mask[rows]).last_hidden_state
        for j, r in enumerate(rows.tolist()):
            hidden[r] = h[j, : t - 1]
    states = torch.stack([x for x in hidden if x is not None])  # every row was set: the groups cover [0, B)
    return head_logprobs_at(
        head, states, input_ids, positions, chunk=chunk, with_entropy=with_entropy, entropy_grad=entropy_grad
    )


def batch_logprobs(
    model: Any, batch: RolloutBatch, positions: torch.Tensor, *, shared: bool, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropy) of ``batch`` at ``positions``, with one prompt pass per group if ``shared``."""
    if shared:
        return shared_prompt_logprobs(
            model, batch.input_ids, batch.attention_mask, positions, batch.group, batch.prompt_len, **kwargs
        )
    return token_logprobs(model, batch.input_ids, batch.attention_mask, positions, **kwargs)


def group_order(group: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A permutation of the rows that shuffles whole groups and keeps each group's rows together."""
    groups = torch.unique(group)
    order = groups[torch.randperm(len(groups), generator=gen)]
    return torch.cat([(group == g).nonzero()[:, 0] for g in order])


def by_length(attention_mask: torch.Tensor) -> torch.Tensor:
    """The rows, shortest first (ties in row order): micro-batches of similar lengths, each of which
    :func:`~searchrl.trainer.logprobs.token_logprobs` runs at its own width rather than the step's longest."""
    return torch.argsort(attention_mask.sum(-1), stable=True)

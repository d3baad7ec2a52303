"""Hugging Face transformers backend: batched sampling with a KV cache kept across turns.

Between two calls of one rollout, each row's context only grows (the engine appends the sampled
tokens and the injected ``<information>`` block). The backend remembers which tokens of each row are
already in its batched KV cache and feeds only the new suffix, so the prompt and earlier turns are
never recomputed. Rows whose key is absent from a call are dropped from the cache (finished samples
leave the batch). Rows of different lengths share the cache through the attention mask: padding may sit
in the middle of a row, and position ids count real tokens only.

A fresh batch (``share_prefill``, the default) is prefilled without repeats: the part every context
begins with (the protocol's instruction) runs once, each distinct context's rest runs once (a GRPO
group's G samples share one prompt), and the cache rows are then copied out to the batch's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from searchrl.models import cache_kwarg
from searchrl.rollout.backend import Completion, FinishReason, SamplingParams

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class _CacheState:
    keys: list[int] = field(default_factory=list)
    seqs: list[list[int]] = field(default_factory=list)  # per row: tokens whose K/V are cached
    attn: torch.Tensor | None = None  # [B, L] 1 = real token in the cache, 0 = padding
    cache: Any = None  # transformers DynamicCache


def pick_tokens(
    logits: torch.Tensor, params: SamplingParams, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row.

    logits: [B, V] (any float dtype). Returns (ids [B], logprobs [B]) where logprobs are under the
    temperature-scaled distribution (temperature 1 for greedy), before top-p/top-k truncation.
    """
    logits = logits.float()
    if params.greedy:
        ids = logits.argmax(-1)
        return ids, torch.log_softmax(logits, -1).gather(-1, ids[:, None])[:, 0]
    scaled = logits / params.temperature
    logp = torch.log_softmax(scaled, -1)
    filtered = scaled
    if params.top_k > 0:
        kth = torch.topk(filtered, min(params.top_k, filtered.shape[-1]), dim=-1).values[:, -1:]
        filtered = filtered.masked_fill(filtered < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(filtered, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, -1).cumsum(-1)
        drop_sorted = cum - torch.softmax(sorted_logits, -1) >= params.top_p  # keep the token that crosses top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        filtered = filtered.masked_fill(drop, float("-inf"))
    probs = torch.softmax(filtered, -1)
    ids = torch.multinomial(probs, 1, generator=gen)[:, 0]
    return ids, logp.gather(-1, ids[:, None])[:, 0]


class HFGenerator:
    """Token-in/token-out sampling with a causal LM from transformers (CPU or GPU)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        reuse_cache: bool = True,
        share_prefill: bool = True,
        stop_window: int = 12,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.reuse_cache = reuse_cache
        self.share_prefill = share_prefill
        self.stop_window = stop_window  # tokens decoded from the tail when checking stop strings
        eos = model.generation_config.eos_token_id if model.generation_config is not None else None
        ids = {tokenizer.eos_token_id} | (set(eos) if isinstance(eos, list) else {eos})
        self.eos_ids = {int(i) for i in ids if i is not None}
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids))
        self.state = _CacheState()
        self.tokens_fed = 0  # prefill + decode tokens run through the model (for benchmarks)
        # transformers 5 renamed `past_key_values` to `cache`; accept either generation of the API
        base: Any = getattr(model, "get_base_model", lambda: model)()  # peft's wrapper hides the signature
        self._cache_kwarg = cache_kwarg(base)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def reset(self) -> None:
        self.state = _CacheState()

    def generate(
        self,
        keys: Sequence[int],
        contexts: Sequence[Sequence[int]],
        max_new_tokens: Sequence[int],
        stop: Sequence[str],
        params: SamplingParams,
        seed: int,
    ) -> list[Completion]:
        if not (len(keys) == len(contexts) == len(max_new_tokens)):
            raise ValueError("keys, contexts and max_new_tokens must have equal lengths")
        if not keys:
            return []
        gen = torch.Generator(device="cpu").manual_seed(seed)
        with torch.no_grad():
            logits = self._extend(list(keys), [list(c) for c in contexts])
            return self._decode(logits, list(max_new_tokens), list(stop), params, gen)

    # -- cache management -------------------------------------------------------------------------
    def _extend(self, keys: list[int], contexts: list[list[int]]) -> torch.Tensor:
        """Bring the cache to exactly ``contexts`` and return next-token logits [B, V]."""
        st = self.state
        reusable = self.reuse_cache and st.cache is not None and set(keys) <= set(st.keys)
        if reusable:
            rows = [st.keys.index(k) for k in keys]
            reusable = all(
                len(ctx) > len(st.seqs[r]) and ctx[: len(st.seqs[r])] == st.seqs[r]
                for ctx, r in zip(contexts, rows, strict=True)
            )
        if not reusable and self.share_prefill and len(contexts) > 1:
            return self._prefill_shared(keys, contexts)
        if not reusable:
            self.state = st = _CacheState(keys=keys, seqs=[[] for _ in keys])
            suffixes = contexts
        else:
            idx = torch.tensor(rows, device=self.device)
            if rows != list(range(len(st.keys))):
                st.cache.batch_select_indices(idx)
                assert st.attn is not None
                st.attn = st.attn.index_select(0, idx)
            st.keys, st.seqs = keys, [st.seqs[r] for r in rows]
            suffixes = [ctx[len(seq) :] for ctx, seq in zip(contexts, st.seqs, strict=True)]
        return self._feed(suffixes)

    def _prefill_shared(self, keys: list[int], contexts: list[list[int]]) -> torch.Tensor:
        """A fresh cache for ``contexts`` in which shared tokens are computed once: the prefix common to all
        contexts, then each distinct context's rest; returns next-token logits [B, V]."""
        index: dict[tuple[int, ...], int] = {}
        for ctx in contexts:
            index.setdefault(tuple(ctx), len(index))
        distinct = [list(c) for c in index]
        common = 0  # the longest common prefix, leaving every distinct context at least one token to feed
        limit = min(len(c) for c in distinct) - 1
        while common < limit and all(c[common] == distinct[0][common] for c in distinct):
            common += 1
        if len(distinct) > 1 and common > 0:
            self.state = _CacheState(keys=[0], seqs=[[]])
            self._feed([distinct[0][:common]])  # one row, then copied to every distinct row
            self._select(torch.zeros(len(distinct), dtype=torch.long))
            logits = self._feed([c[common:] for c in distinct])
        else:
            self.state = _CacheState(keys=list(range(len(distinct))), seqs=[[] for _ in distinct])
            logits = self._feed(distinct)
        st = self.state
        rows = torch.tensor([index[tuple(c)] for c in contexts])
        if len(distinct) < len(contexts):
            self._select(rows)
        st.keys = list(keys)
        return logits.index_select(0, rows.to(logits.device))

    def _select(self, rows: torch.Tensor) -> None:
        """Cache row i becomes old row ``rows[i]`` (repeats allowed)."""
        st = self.state
        st.cache.batch_select_indices(rows.to(self.device))
        assert st.attn is not None
        st.attn = st.attn.index_select(0, rows)
        st.seqs = [list(st.seqs[r]) for r in rows.tolist()]

    def _feed(self, suffixes: list[list[int]]) -> torch.Tensor:
        """Run right-aligned suffixes (left-padded block) through the model; returns last logits [B, V]."""
        from transformers import DynamicCache

        st = self.state
        width = max(len(s) for s in suffixes)
        ids = torch.full((len(suffixes), width), self.pad_id, dtype=torch.long)
        block = torch.zeros((len(suffixes), width), dtype=torch.long)
        for b, s in enumerate(suffixes):
            if s:
                ids[b, width - len(s) :] = torch.tensor(s)
                block[b, width - len(s) :] = 1
        prev = st.attn if st.attn is not None else torch.zeros((len(suffixes), 0), dtype=torch.long)
        attn = torch.cat([prev, block], dim=1)
        positions = (attn.cumsum(-1) - 1).clamp(min=0)[:, -width:]
        if st.cache is None:
            st.cache = DynamicCache()
        dev = self.device
        out = self.model(
            input_ids=ids.to(dev),
            attention_mask=attn.to(dev),
            position_ids=positions.to(dev),
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_kwarg: st.cache},
        )
        st.attn = attn
        for seq, s in zip(st.seqs, suffixes, strict=True):
            seq.extend(s)
        self.tokens_fed += int(block.sum())
        return out.logits[:, -1, :]

    # -- sampling loop ----------------------------------------------------------------------------
    def _decode(
        self,
        logits: torch.Tensor,
        budgets: list[int],
        stop: list[str],
        params: SamplingParams,
        gen: torch.Generator,
    ) -> list[Completion]:
        n = len(budgets)
        out_ids: list[list[int]] = [[] for _ in range(n)]
        out_lp: list[list[float]] = [[] for _ in range(n)]
        finish: list[FinishReason | None] = [None if b > 0 else "length" for b in budgets]
        while True:
            ids, lps = pick_tokens(logits, params, gen)
            feed: list[list[int]] = []
            for b in range(n):
                if finish[b] is not None:
                    feed.append([])
                    continue
                tok = int(ids[b])
                out_ids[b].append(tok)
                out_lp[b].append(float(lps[b]))
                finish[b] = self._finished(out_ids[b], budgets[b], stop)
                # the last sampled token is not fed: the next call feeds it with whatever follows
                feed.append([] if finish[b] is not None else [tok])
            if all(f is not None for f in finish):
                break
            logits = self._feed(feed)
        return [Completion(i, lp, f or "length") for i, lp, f in zip(out_ids, out_lp, finish, strict=True)]

    def _finished(self, ids: list[int], budget: int, stop: list[str]) -> FinishReason | None:
        if ids[-1] in self.eos_ids:
            return "eos"
        if stop:
            tail = self.tokenizer.decode(ids[-self.stop_window :], skip_special_tokens=False)
            if any(s in tail for s in stop):
                return "stop"
        if len(ids) >= budget:
            return "length"
        return None

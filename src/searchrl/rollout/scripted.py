"""A scripted generator backend: replays fixed texts turn by turn (tests, demos of the protocol).

Each row's script is a list of turn texts; a call returns the next one, tokenized once, cut at the
first stop string (kept, as a real backend keeps it), at an end-of-sequence token, or at the token budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from searchrl.rollout.backend import Completion, FinishReason, SamplingParams

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class ScriptedBackend:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, scripts: Sequence[Sequence[str]]) -> None:
        self.tokenizer = tokenizer
        self.scripts = [list(s) for s in scripts]
        self.calls: list[list[int]] = []  # keys per call, for assertions
        self.sampled: dict[int, list[int]] = {}  # every token id handed out, per key
        self._pos = [0] * len(self.scripts)
        eos = tokenizer.eos_token_id
        self.eos_id = int(eos) if eos is not None else -1

    def reset(self) -> None:
        self._pos = [0] * len(self.scripts)

    def generate(
        self,
        keys: Sequence[int],
        contexts: Sequence[Sequence[int]],
        max_new_tokens: Sequence[int],
        stop: Sequence[str],
        params: SamplingParams,
        seed: int,
    ) -> list[Completion]:
        self.calls.append(list(keys))
        out = []
        for key, budget in zip(keys, max_new_tokens, strict=True):
            script = self.scripts[key]
            text = script[self._pos[key]] if self._pos[key] < len(script) else self.tokenizer.eos_token or ""
            self._pos[key] += 1
            completion = self._complete(text, budget, stop)
            self.sampled.setdefault(key, []).extend(completion.token_ids)
            out.append(completion)
        return out

    def _complete(self, text: str, budget: int, stop: Sequence[str]) -> Completion:
        finish: FinishReason = "length"
        cut = min((text.find(s) + len(s) for s in stop if s in text), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if self.eos_id in ids:
            ids, finish = ids[: ids.index(self.eos_id) + 1], "eos"
        if len(ids) > budget:
            ids, finish = ids[:budget], "length"
        return Completion(ids, [-1.0] * len(ids), finish)


class ScriptedAsyncBackend(ScriptedBackend):
    """The scripted backend with a latency of ``seconds_per_token`` per sampled token, in both modes.

    A synchronous call returns when its longest row is done (a batched decode ends with its longest
    sample); ``generate_one`` returns after its own row's tokens (continuous batching). ``events``
    records ("start" | "end", key, turn) in the order they happen, to show the absence of a barrier.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, scripts: Sequence[Sequence[str]], seconds_per_token: float):
        super().__init__(tokenizer, scripts)
        self.seconds_per_token = seconds_per_token
        self.events: list[tuple[str, int, int]] = []

    def generate(
        self,
        keys: Sequence[int],
        contexts: Sequence[Sequence[int]],
        max_new_tokens: Sequence[int],
        stop: Sequence[str],
        params: SamplingParams,
        seed: int,
    ) -> list[Completion]:
        turns = [self._pos[k] for k in keys]
        self.events += [("start", k, t) for k, t in zip(keys, turns, strict=True)]
        out = super().generate(keys, contexts, max_new_tokens, stop, params, seed)
        time.sleep(self.seconds_per_token * max(len(c.token_ids) for c in out))
        self.events += [("end", k, t) for k, t in zip(keys, turns, strict=True)]
        return out

    async def generate_one(
        self,
        key: int,
        context: Sequence[int],
        max_new_tokens: int,
        stop: Sequence[str],
        params: SamplingParams,
        seed: int,
    ) -> Completion:
        turn = self._pos[key]
        self.events.append(("start", key, turn))
        [out] = super().generate([key], [context], [max_new_tokens], stop, params, seed)
        await asyncio.sleep(self.seconds_per_token * len(out.token_ids))
        self.events.append(("end", key, turn))
        return out

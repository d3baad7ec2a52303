"""The generator-backend protocol: token ids in, sampled token ids (and their log-probs) out.

The rollout engine owns every id it appends; a backend only continues given contexts. Backends are
free to reuse work across calls: the Hugging Face backend keeps each row's KV cache and feeds only the
tokens a context gained since the previous call; vLLM relies on its prefix cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

FinishReason = Literal["stop", "eos", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the next token. ``greedy=True`` ignores temperature/top-p/top-k (evaluation)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    greedy: bool = False

    def __post_init__(self) -> None:
        if not self.greedy and self.temperature <= 0:
            raise ValueError("temperature must be > 0 when sampling; use greedy=True for argmax decoding")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


@dataclass(frozen=True)
class Completion:
    """What a backend sampled for one context.

    ``token_ids`` and ``logprobs`` have equal length; ``logprobs[i]`` is the log-probability of
    ``token_ids[i]`` under the sampling distribution (after temperature; 0.0 under greedy decoding is
    not implied — it is the model's log-prob of the argmax at temperature 1). ``finish`` says why it
    stopped: a stop string was completed, an end-of-sequence id was sampled (it is included), or the
    token limit was reached.
    """

    token_ids: list[int]
    logprobs: list[float]
    finish: FinishReason


class GeneratorBackend(Protocol):
    def generate(
        self,
        keys: Sequence[int],
        contexts: Sequence[Sequence[int]],
        max_new_tokens: Sequence[int],
        stop: Sequence[str],
        params: SamplingParams,
        seed: int,
    ) -> list[Completion]:
        """Continue each context. ``keys`` name the rows (a rollout's sample indices) so a backend can
        recognise a context that extends one it saw before. ``max_new_tokens`` is per row."""
        ...

    def reset(self) -> None:
        """Forget any state kept between calls (a new rollout begins)."""
        ...

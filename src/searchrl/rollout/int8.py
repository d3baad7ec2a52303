"""Sampling training rollouts from an int8 copy of the policy (``rollout.quantize: int8``, CPU only).

On a CPU, sampling is the largest cost of an RL step, and it is bound by the linear layers' weights. The
sampler here keeps an int8 copy of the policy: LoRA adapters merged, then every ``nn.Linear`` quantized
per tensor with activations quantized on the fly (torch's dynamic quantization; on this project's 2-core
machine it sampled SmolLM2-135M 1.9x faster than float32, docs/benchmarks.md). The copy is rebuilt
whenever the policy's weights changed (an optimizer step, a loaded checkpoint, a watchdog rollback); the
trained policy itself is never touched, and held-out evaluation samples from it, not from the copy.

The copy's tokens come from slightly other weights than the ones the update trains. The sampler
therefore records each token's log-probability under its own distribution at temperature 1, and the
update weights each policy token by the capped ratio of the two (truncated importance sampling,
``train.tis_cap``; :mod:`searchrl.trainer.update`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from searchrl.rollout.backend import Completion, SamplingParams
from searchrl.rollout.hf import HFGenerator

__all__ = ["Int8Generator", "int8_copy", "weights_version"]


def weights_version(model: torch.nn.Module) -> int:
    """A number that changes whenever a parameter is modified in place (torch's per-tensor version
    counter: optimizer steps, ``load_state_dict``, ``copy_``)."""
    return sum(p._version for p in model.parameters())


def int8_copy(policy: Any) -> torch.nn.Module:
    """An inference copy of ``policy`` with its adapters merged and every linear layer in int8."""
    quantize = getattr(getattr(torch, "ao", None), "quantization", None)
    if quantize is None or not hasattr(quantize, "quantize_dynamic"):
        raise RuntimeError("rollout.quantize=int8 needs torch.ao.quantization.quantize_dynamic, absent from this torch")
    if next(policy.parameters()).device.type != "cpu":
        raise RuntimeError("rollout.quantize=int8 is a CPU sampler; on a GPU, sample with the vLLM backend instead")
    model = copy.deepcopy(policy)
    if hasattr(model, "merge_and_unload"):  # peft: W + scale * B @ A, the adapters removed
        model = model.merge_and_unload()
    model.eval().requires_grad_(False)
    with warnings.catch_warnings():  # torch marks eager-mode quantization deprecated; it ships in the locked torch
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        return quantize.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


class Int8Generator(HFGenerator):
    """:class:`HFGenerator` over an int8 copy of ``policy``, rebuilt when the policy's weights change;
    its completions carry temperature-1 log-probs (``raw_logprobs``) for the update's importance weights."""

    def __init__(self, policy: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(policy, tokenizer, raw_logprobs=True, **kwargs)
        self.policy = policy
        self.version: int | None = None
        self.rebuilds = 0

    def refresh(self) -> None:
        """Quantize the policy again if its weights changed since the last copy."""
        version = weights_version(self.policy)
        if version != self.version:
            self.model = int8_copy(self.policy)  # type: ignore[assignment]  # the same class, its linears int8
            self.version = weights_version(self.policy)
            self.rebuilds += 1
            self.reset()  # a cache built by the old copy is not this copy's

    def generate(
        self,
        keys: Sequence[int],
        contexts: Sequence[Sequence[int]],
        max_new_tokens: Sequence[int],
        stop: Sequence[str],
        params: SamplingParams,
        seed: int,
    ) -> list[Completion]:
        self.refresh()  # a no-op within a rollout: the weights change only between steps
        return super().generate(keys, contexts, max_new_tokens, stop, params, seed)

"""vLLM backend (GPU only; vllm is imported when this backend is built, never at package import).

Token ids go in as ``TokensPrompt`` and come back as ids, so nothing the policy sampled is re-encoded.
Reuse across turns relies on vLLM's automatic prefix caching (enabled here). Not yet exercised on a GPU
in this repository's CI; the CPU suite covers the protocol through the Hugging Face backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from searchrl.rollout.backend import Completion, FinishReason, SamplingParams


class VLLMGenerator:
    def __init__(self, model_path: str, *, gpu_memory_utilization: float = 0.5, dtype: str = "bfloat16") -> None:
        try:
            from vllm import LLM
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise RuntimeError("the vllm backend needs a CUDA machine and: pip install 'searchrl[vllm]'") from exc
        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=True,
        )
        self.eos_ids = {self.llm.get_tokenizer().eos_token_id}

    @classmethod
    def wrap(cls, llm: Any) -> VLLMGenerator:
        """A backend over an existing ``vllm.LLM`` (e.g. the engine TRL colocates and keeps in sync)."""
        self = cls.__new__(cls)
        self.llm = llm
        self.eos_ids = {llm.get_tokenizer().eos_token_id}
        return self

    def reset(self) -> None:
        """Nothing to forget: the prefix cache is content-addressed."""

    def generate(
        self,
        keys: Sequence[int],
        contexts: Sequence[Sequence[int]],
        max_new_tokens: Sequence[int],
        stop: Sequence[str],
        params: SamplingParams,
        seed: int,
    ) -> list[Completion]:
        from vllm import SamplingParams as VParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(c)) for c in contexts]
        sampling = [
            VParams(
                max_tokens=n,
                temperature=0.0 if params.greedy else params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else -1,
                stop=list(stop),
                include_stop_str_in_output=True,
                logprobs=0,
                seed=seed * 1_000_003 + key,
            )
            for key, n in zip(keys, max_new_tokens, strict=True)
        ]
        outs = self.llm.generate(prompts, sampling, use_tqdm=False)
        return [self._completion(o.outputs[0]) for o in outs]

    def _completion(self, out: Any) -> Completion:
        ids = list(out.token_ids)
        lps = [float(d[t].logprob) if d and t in d else 0.0 for t, d in zip(ids, out.logprobs or [], strict=False)]
        lps += [0.0] * (len(ids) - len(lps))
        finish: FinishReason
        if ids and ids[-1] in self.eos_ids:
            finish = "eos"
        elif out.finish_reason == "stop":
            finish = "stop"
        else:
            finish = "length"
        return Completion(ids, lps, finish)


class AsyncVLLMGenerator:
    """vLLM's asynchronous engine as an :class:`~searchrl.rollout.async_engine.AsyncGeneratorBackend`.

    Each ``generate_one`` is one request; vLLM batches all in-flight requests continuously, so samples
    of one rollout share the GPU while advancing independently. Same seeds and sampling settings as
    :class:`VLLMGenerator`, so both loops sample the same tokens. Not yet exercised on a GPU here:
    ``scripts/gpu_check.sh`` is the check to run when one is available.
    """

    def __init__(self, model_path: str, *, gpu_memory_utilization: float = 0.5, dtype: str = "bfloat16") -> None:
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise RuntimeError("the vllm backend needs a CUDA machine and: pip install 'searchrl[vllm]'") from exc
        args = AsyncEngineArgs(
            model=model_path, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=True
        )
        self.engine = AsyncLLMEngine.from_engine_args(args)
        self._sync = VLLMGenerator.__new__(VLLMGenerator)  # reuses its completion parsing
        self._requests = 0
        self._eos: set[int] | None = None

    def reset(self) -> None:
        """Nothing to forget: the prefix cache is content-addressed."""

    async def generate_one(
        self,
        key: int,
        context: Sequence[int],
        max_new_tokens: int,
        stop: Sequence[str],
        params: SamplingParams,
        seed: int,
    ) -> Completion:
        from vllm import SamplingParams as VParams
        from vllm.inputs import TokensPrompt

        if self._eos is None:
            tokenizer = await self.engine.get_tokenizer()
            self._eos = {tokenizer.eos_token_id}
            self._sync.eos_ids = self._eos
        sampling = VParams(
            max_tokens=max_new_tokens,
            temperature=0.0 if params.greedy else params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1,
            stop=list(stop),
            include_stop_str_in_output=True,
            logprobs=0,
            seed=seed * 1_000_003 + key,
        )
        self._requests += 1
        final = None
        async for out in self.engine.generate(
            TokensPrompt(prompt_token_ids=list(context)), sampling, f"r{self._requests}"
        ):
            final = out
        assert final is not None
        return self._sync._completion(final.outputs[0])

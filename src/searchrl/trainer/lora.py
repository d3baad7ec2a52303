"""LoRA adapters (peft) on every linear layer of the transformer blocks, or of the top N blocks only
(``train.lora_layers``): the policy's and the critic's.

With adapters on the top N blocks only, nothing below the first adapted block requires a gradient, so
autograd neither keeps those blocks' activations nor runs backward through them; the gradients of the
adapters that exist are the same as with adapters everywhere (the lower adapters start at B = 0)."""

from __future__ import annotations

import warnings
from typing import Any

import torch

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_config(model_config: Any, r: int, alpha: int, layers: int = 0) -> Any:
    """peft's LoraConfig for searchrl's adapters: every block (``layers=0``) or the top ``layers`` blocks."""
    from peft import LoraConfig

    top = None
    if layers:
        n = int(model_config.num_hidden_layers)
        if layers > n:
            raise ValueError(f"train.lora_layers={layers}, but the model has {n} blocks")
        top = list(range(n - layers, n))
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=LORA_TARGETS, layers_to_transform=top)


def add_lora(model: Any, r: int, alpha: int, seed: int, layers: int = 0) -> Any:
    """Wrap ``model`` with LoRA adapters (peft) initialised from ``seed``: on every linear layer of every
    block, or of the top ``layers`` blocks."""
    from peft import get_peft_model

    config = lora_config(model.config, r, alpha, layers)

    with torch.random.fork_rng(), warnings.catch_warnings():
        torch.manual_seed(seed)
        # peft reads transformers' deprecated `is_gradient_checkpointing` alias (FutureWarning on every
        # wrap); the value it reads is the same as `is_activation_checkpointing`, so only this call is quieted
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, config)

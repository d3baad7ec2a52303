"""LoRA adapters (peft) on every linear layer of the transformer blocks: the policy's and the critic's."""

from __future__ import annotations

import warnings
from typing import Any

import torch

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def add_lora(model: Any, r: int, alpha: int, seed: int) -> Any:
    """Wrap ``model`` with a LoRA adapter on every linear layer of the blocks (peft), initialised from ``seed``."""
    from peft import LoraConfig, get_peft_model

    with torch.random.fork_rng(), warnings.catch_warnings():
        torch.manual_seed(seed)
        # peft reads transformers' deprecated `is_gradient_checkpointing` alias (FutureWarning on every
        # wrap); the value it reads is the same as `is_activation_checkpointing`, so only this call is quieted
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=LORA_TARGETS))

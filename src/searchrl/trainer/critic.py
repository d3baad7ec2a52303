"""The PPO critic: a causal-LM body plus a linear value head, initialised from the policy's weights."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from searchrl.trainer.lora import add_lora


class ValueModel(nn.Module):
    """A critic: a causal-LM body plus a linear value head; values are read at target positions."""

    def __init__(self, body: nn.Module, hidden: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: [B, T] -> values [B, T-1] (value of the state before token t+1)."""
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, :-1]
        return self.head(hidden.float())[..., 0]


def build_critic(policy_base: Any, lora_r: int, lora_alpha: int, seed: int, lora_layers: int = 0) -> ValueModel:
    """A critic initialised from the (pre-LoRA) policy weights, trained with its own LoRA and head."""
    base = copy.deepcopy(policy_base)
    body = getattr(base, base.base_model_prefix)
    if lora_r > 0:
        body = add_lora(body, lora_r, lora_alpha, seed + 1, lora_layers)
    return ValueModel(body, base.config.hidden_size)

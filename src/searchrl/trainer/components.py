"""Building the trainable pieces: the policy (LoRA or full), its reference, and the PPO critic.

With LoRA the reference policy is the same module with the adapter disabled, so no second copy of
the weights exists. A full fine-tune keeps a frozen copy when a KL term needs one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def add_lora(model: Any, r: int, alpha: int, seed: int) -> Any:
    """Wrap ``model`` with a LoRA adapter on every linear layer of the blocks (peft)."""
    from peft import LoraConfig, get_peft_model

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=LORA_TARGETS))


class Reference:
    """Log-probs under the frozen starting policy: the adapter switched off, or a frozen copy."""

    def __init__(self, policy: Any, lora: bool) -> None:
        self.policy = policy
        self.copy: Any = None
        if not lora:
            self.copy = copy.deepcopy(policy).eval()
            for p in self.copy.parameters():
                p.requires_grad_(False)

    @contextmanager
    def model(self) -> Iterator[Any]:
        if self.copy is not None:
            yield self.copy
            return
        ctx = self.policy.disable_adapter() if hasattr(self.policy, "disable_adapter") else nullcontext()
        with ctx:
            yield self.policy


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


def build_critic(policy_base: Any, lora_r: int, lora_alpha: int, seed: int) -> ValueModel:
    """A critic initialised from the (pre-LoRA) policy weights, trained with its own LoRA and head."""
    base = copy.deepcopy(policy_base)
    body = getattr(base, base.base_model_prefix)
    if lora_r > 0:
        from peft import LoraConfig, get_peft_model

        with torch.random.fork_rng():
            torch.manual_seed(seed + 1)
            body = get_peft_model(
                body, LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules=LORA_TARGETS)
            )
    return ValueModel(body, base.config.hidden_size)

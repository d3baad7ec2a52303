"""Building the trainable pieces: the policy (LoRA or full), its reference, and the PPO critic.

The reference policy of a KL term is the policy the run starts from, its checkpoint 0 (the base model,
a warm start, or R1-Searcher's stage 1): with LoRA only the start's adapter tensors are kept (a few MB)
and swapped in for the reference pass, so no second copy of the model exists; a full fine-tune keeps
a frozen copy.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def add_lora(model: Any, r: int, alpha: int, seed: int) -> Any:
    """Wrap ``model`` with a LoRA adapter on every linear layer of the blocks (peft)."""
    from peft import LoraConfig, get_peft_model

    with torch.random.fork_rng(), warnings.catch_warnings():
        torch.manual_seed(seed)
        # peft reads transformers' deprecated `is_gradient_checkpointing` alias (FutureWarning on every
        # wrap); the value it reads is the same as `is_activation_checkpointing`, so only this call is quieted
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=LORA_TARGETS))


class Reference:
    """Log-probs under the frozen starting policy: the start's trainable tensors swapped in, or a frozen copy.

    :meth:`capture` takes the policy as it is now (the trainer calls it before its first RL step);
    :meth:`load` reads it back from checkpoint 0 when a run resumes. A run folder without checkpoint 0
    (a CLI run that never wrote one) started from the policy as constructed, which is what it keeps.
    """

    def __init__(self, policy: Any, lora: bool) -> None:
        self.policy, self.lora = policy, lora
        self.start: dict[str, torch.Tensor] = {}
        self.copy: Any = None
        self.capture()

    def capture(self) -> None:
        if self.lora:
            self.start = {n: p.detach().clone() for n, p in self.policy.named_parameters() if p.requires_grad}
        elif self.copy is not None:
            self.copy.load_state_dict(self.policy.state_dict())
        else:
            self.copy = copy.deepcopy(self.policy).eval()
            for p in self.copy.parameters():
                p.requires_grad_(False)

    def load(self, checkpoint: str | Path) -> None:
        """The reference from a checkpoint's policy weights (``checkpoint/policy.safetensors``)."""
        from safetensors.torch import load_file

        from searchrl.trainer.checkpoint import load_weights

        if self.copy is not None:
            load_weights(checkpoint, "policy", self.copy)
            return
        weights = load_file(str(Path(checkpoint) / "policy.safetensors"))
        missing = set(self.start) - set(weights)
        if missing:
            raise ValueError(f"checkpoint {checkpoint} lacks trainable weights of the policy: {sorted(missing)[:3]}")
        self.start = {n: weights[n].to(self.start[n].device, self.start[n].dtype) for n in self.start}

    @contextmanager
    def model(self) -> Iterator[Any]:
        if self.copy is not None:
            yield self.copy
            return
        params = dict(self.policy.named_parameters())
        current = {n: params[n].detach().clone() for n in self.start}
        try:
            with torch.no_grad():
                for n, w in self.start.items():
                    params[n].copy_(w)
            yield self.policy
        finally:
            with torch.no_grad():
                for n, w in current.items():
                    params[n].copy_(w)


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

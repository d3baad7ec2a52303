"""The KL reference: log-probs under the policy the run starts from, its checkpoint 0.

That start is the base model, a warm start, or R1-Searcher's stage 1: with LoRA only the start's adapter
tensors are kept (a few MB) and swapped in for the reference pass, so no second copy of the model exists;
a full fine-tune keeps a frozen copy.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch


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

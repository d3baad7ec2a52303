"""Collating trajectories into padded tensors (the boundary where ids and ``loss_mask`` meet torch), and
the scored batch the update consumes.

Targets are shifted by one: position t of every ``[B, T-1]`` tensor refers to token t+1 of the
sequence (the token predicted from positions 0..t). ``loss_mask`` comes from the trajectories as the
rollout loop built it; with ``mask_retrieved=False`` (the ablation of the papers) every response token
counts, injected passages included, but the prompt and padding never do. ``policy_mask`` keeps the
rollout's own mask in both cases, so statistics of the policy's tokens (entropy) stay comparable
between the masked run and the ablation. ``injected_mask`` marks the response tokens the environment
wrote (passages, tags): the text whose likelihood the unmasked ablation trains up (``train.log_injected``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch

from searchrl.types import Trajectory


@dataclass(frozen=True)
class RolloutBatch:
    input_ids: torch.Tensor  # [B, T] long, right-padded with the pad id
    attention_mask: torch.Tensor  # [B, T] long, 1 = real token
    loss_mask: torch.Tensor  # [B, T-1] float, 1 = target token sampled by the policy (see module doc)
    rewards: torch.Tensor  # [B] float, one outcome reward per trajectory
    group: torch.Tensor  # [B] long, index of the prompt the sample answers (GRPO / RLOO groups)
    policy_mask: torch.Tensor  # [B, T-1] float, the rollout's loss_mask as built (= loss_mask unless the ablation)
    injected_mask: torch.Tensor  # [B, T-1] float, 1 = response token the environment injected (passages, tags)
    prompt_len: torch.Tensor  # [B] long, tokens of the row's prompt (a group's rows share it: train.shared_prompt)

    def __post_init__(self) -> None:
        b, t = self.input_ids.shape
        assert self.attention_mask.shape == (b, t), "attention_mask must match input_ids"
        for name in ("loss_mask", "policy_mask", "injected_mask"):
            assert getattr(self, name).shape == (b, t - 1), f"{name} must be [B, T-1]"
        assert self.rewards.shape == (b,) and self.group.shape == (b,) and self.prompt_len.shape == (b,)

    def select(self, index: torch.Tensor) -> RolloutBatch:
        """Rows ``index`` of every field (mini-batches)."""
        return replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device: torch.device | str) -> RolloutBatch:
        """Every field on ``device`` (the policy's)."""
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])


def collate(
    trajectories: Sequence[Trajectory],
    rewards: Sequence[float],
    groups: Sequence[int],
    pad_id: int,
    *,
    mask_retrieved: bool = True,
) -> RolloutBatch:
    """Pad trajectories on the right into a :class:`RolloutBatch`."""
    if not (len(trajectories) == len(rewards) == len(groups)) or not trajectories:
        raise ValueError("collate needs one reward and one group per trajectory, and at least one trajectory")
    rows = []
    for traj in trajectories:
        traj.check()
        n = len(traj.ids)
        mask = traj.loss_mask
        response = [0] * min(traj.prompt_len, n) + [1] * max(0, n - traj.prompt_len)
        if not mask_retrieved:
            mask = response
        env = [r * (1 - o) for r, o in zip(response, traj.loss_mask, strict=True)]
        rows.append((traj.ids, mask, traj.loss_mask, env))
    width = max(len(r[0]) for r in rows)
    b = len(rows)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    attn = torch.zeros((b, width), dtype=torch.long)
    mask_t = torch.zeros((b, width), dtype=torch.float32)
    own = torch.zeros((b, width), dtype=torch.float32)
    injected = torch.zeros((b, width), dtype=torch.float32)
    for i, (r_ids, r_mask, r_own, r_injected) in enumerate(rows):
        n = len(r_ids)
        ids[i, :n] = torch.tensor(r_ids, dtype=torch.long)
        attn[i, :n] = 1
        mask_t[i, :n] = torch.tensor(r_mask, dtype=torch.float32)
        own[i, :n] = torch.tensor(r_own, dtype=torch.float32)
        injected[i, :n] = torch.tensor(r_injected, dtype=torch.float32)
    return RolloutBatch(
        input_ids=ids,
        attention_mask=attn,
        loss_mask=mask_t[:, 1:],
        rewards=torch.tensor(list(rewards), dtype=torch.float32),
        group=torch.tensor(list(groups), dtype=torch.long),
        policy_mask=own[:, 1:],
        injected_mask=injected[:, 1:],
        prompt_len=torch.tensor([t.prompt_len for t in trajectories], dtype=torch.long),
    )


@dataclass(frozen=True)
class Scored:
    """A rollout batch with everything the update needs (all [B, T-1], 0 off the mask)."""

    batch: RolloutBatch
    old_logprobs: torch.Tensor | None  # None: every row on-policy (see fresh), the detached new log-probs
    ref_logprobs: torch.Tensor | None  # None: no KL reference
    old_values: torch.Tensor | None  # None: no critic
    advantages: torch.Tensor
    returns: torch.Tensor  # the critic's targets
    fresh: torch.Tensor | None = None  # [B] bool: rows whose old log-probs are the update's own, detached

"""Data-parallel training: ranks, the share of a step each rank rolls out, and every global statistic.

Launch with ``torchrun --nproc_per_node N`` (or accelerate): ``WORLD_SIZE``/``RANK`` come from the
environment; gloo on CPU, NCCL on GPU. One process needs no launcher and no process group.

How a step stays exactly what one process computes with the same global batch:

* Every rank picks the same global prompts; rank r rolls out the r-th contiguous share (whole GRPO
  groups, so a group never spans ranks), scores it, and all ranks gather the trajectories and
  rewards. Every rank then holds the same global batch (a few thousand ids per sample).
* Log-probs, reference log-probs and values are computed for the rank's own rows and gathered, so
  advantages (GRPO's group mean and std, REINFORCE++'s whitening over the batch's policy tokens) are
  computed over the global batch, identically on every rank.
* The update draws the same mini-batch permutation on every rank; each rank runs its rows of the
  mini-batch, weighting each micro-batch by its tokens over the *global* mini-batch's tokens
  (token-mean), and gradients are summed across ranks before clipping: the same gradient as one
  process, up to the order of float additions.
* Only rank 0 logs and writes checkpoints; a checkpoint holds global state only (step, data position,
  full weights and optimizer), so ``--resume`` works from any world size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job. ``Distributed()`` is the single-process default."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"  # where this rank's model and batches live

    @classmethod
    def from_env(cls) -> Distributed:
        """Join the process group named by torchrun's environment (``WORLD_SIZE`` > 1), else one process.
        On a CUDA machine each rank takes the GPU ``LOCAL_RANK``."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        device = "cpu"
        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(device)
        if world <= 1:
            return cls(device=device)
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device != "cpu" else "gloo")
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), device=device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int, what: str = "prompts_per_step") -> range:
        """The contiguous slice of ``n`` global items this rank owns; ``n`` must divide evenly."""
        if n % self.world:
            raise ValueError(f"train.{what}={n} must be a multiple of the world size {self.world}")
        per = n // self.world
        return range(self.rank * per, (self.rank + 1) * per)

    def gather_list(self, items: Sequence[T]) -> list[T]:
        """Every rank's list, concatenated in rank order (picklable items)."""
        if self.world == 1:
            return list(items)
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, list(items))
        return [x for part in parts for x in part]

    def gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate equal-shaped tensors of all ranks along dim 0, in rank order."""
        if self.world == 1:
            return x
        import torch.distributed as dist

        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    def sum_grads(self, params: Iterable[torch.Tensor]) -> None:
        """Sum ``p.grad`` over ranks in place (one flat all-reduce); every param must hold a gradient."""
        if self.world == 1:
            return
        import torch.distributed as dist

        grads = [p.grad for p in params]
        if any(g is None for g in grads):
            raise RuntimeError("sum_grads needs a gradient on every parameter (zero them, do not set None)")
        flat = torch.cat([g.reshape(-1) for g in grads if g is not None])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for g in grads:
            assert g is not None
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def sum_stats(self, stats: dict[str, float]) -> dict[str, float]:
        """Per-key sums over ranks of partial statistics (a key absent on a rank counts as 0)."""
        if self.world == 1:
            return stats
        total: dict[str, float] = {}
        for part in self.gather_list([stats]):
            for k, v in part.items():
                total[k] = total.get(k, 0.0) + v
        return total

    def all_true(self, flag: bool) -> bool:
        if self.world == 1:
            return flag
        return all(self.gather_list([flag]))

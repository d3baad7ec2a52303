"""What one RL step drew: every group generated (for the step's rollout metrics) and the groups it trains on.

Without dynamic sampling a step draws ``prompts_per_step`` prompts once and trains on all of them. With
it (DAPO's *dynamic sampling*; verl's ``algorithm.filter_groups``), the step keeps drawing until it holds
``prompts_per_step`` groups whose samples scored unequally, since a group of equal rewards has zero
group-relative advantage and carries no policy gradient. At the cap it trains on the informative groups
it has (trimmed to a multiple of the world size), or, with none, on its last draw as a plain step would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from searchrl.types import QAExample, Trajectory

__all__ = ["Drawn", "prompt_order"]


def prompt_order(examples: list[QAExample], seed: int, balance_types: bool = False) -> list[int]:
    """The order a run draws its training prompts in (indices into ``examples``; the trainer cycles it).

    One shuffle by ``seed``; with ``balance_types``, that shuffle split by ``metadata['type']`` and dealt
    round-robin over the types (sorted by name), a type that runs out starting over, so that every step
    holds each type about equally however the pool is made up (the medium world's RL pool is 64 % 1-hop;
    drawn as they come, F1's steps of 8 prompts held 0 to 7 2-hop questions)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    if not balance_types or not order:
        return order
    by_type: dict[str, list[int]] = {}
    for i in order:
        by_type.setdefault(str(examples[i].metadata.get("type", "")), []).append(i)
    queues = [by_type[name] for name in sorted(by_type)]
    rounds = max(len(q) for q in queues)
    return [q[r % len(q)] for r in range(rounds) for q in queues]


@dataclass
class Drawn:
    dynamic: bool
    want: int  # prompts_per_step
    group_size: int
    examples: list[QAExample] = field(default_factory=list)  # every group generated, in draw order
    trajs: list[Trajectory] = field(default_factory=list)  # group_size per example, grouped
    rewards: list[float] = field(default_factory=list)
    em: list[float] = field(default_factory=list)
    informative_groups: list[int] = field(default_factory=list)  # indices into examples
    draws: int = 0
    trained: int = 0  # informative groups in the batch train_groups returned

    def add(self, examples: list[QAExample], trajs: list[Trajectory], rewards: list[float], em: list[float]) -> None:
        """One draw, gathered from every rank (so every rank sees the same rewards and decides the same)."""
        g, base = self.group_size, len(self.examples)
        self.examples += examples
        self.trajs += trajs
        self.rewards += rewards
        self.em += em
        for i in range(len(examples)):
            scores = rewards[i * g : (i + 1) * g]
            if max(scores) > min(scores):
                self.informative_groups.append(base + i)
        self.draws += 1

    @property
    def informative(self) -> int:
        return len(self.informative_groups)

    def train_groups(self, world: int = 1) -> tuple[list[QAExample], list[Trajectory], list[float]]:
        """(examples, trajectories, rewards) the update trains on."""
        if not self.dynamic:
            self.trained = self.informative
            return self.examples, self.trajs, self.rewards
        keep = self.informative_groups[: self.want]
        keep = keep[: len(keep) - len(keep) % world]
        self.trained = len(keep)
        if not keep:  # nothing informative within the cap: the last draw, as a plain step
            keep = list(range(len(self.examples) - self.want, len(self.examples)))
        g = self.group_size
        rows = [i * g + j for i in keep for j in range(g)]
        return [self.examples[i] for i in keep], [self.trajs[r] for r in rows], [self.rewards[r] for r in rows]

    def metrics(self) -> dict[str, float]:
        """``rollout/groups_generated``, ``rollout/groups_kept`` (informative groups trained on) and
        ``rollout/informative_fraction`` (informative / generated)."""
        n = len(self.examples)
        return {
            "rollout/groups_generated": float(n),
            "rollout/groups_kept": float(self.trained),
            "rollout/informative_fraction": self.informative / n if n else 0.0,
        }

"""SFT warm start on gold search trajectories, with the same token-level ``loss_mask`` as RL.

A gold trajectory is a question, the queries a good agent would issue, and the answer. It is turned
into the exact token sequence the rollout engine would produce: the policy's turns (``<search>q</search>``,
``<answer>a</answer>`` and the end-of-turn token; mask 1) and, after each search, the ``<information>``
block that the live retriever returns for that query (mask 0). So imitation and RL train on the same
kind of sequence, and the retrieved text is never a target.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from searchrl.data.protocols import TagProtocol
from searchrl.retrieval.base import Retriever
from searchrl.rollout.prompts import prompt_ids
from searchrl.trainer.batch import collate
from searchrl.trainer.logprobs import token_logprobs
from searchrl.types import Trajectory, Turn

if TYPE_CHECKING:
    from searchrl.trainer.loop import Trainer


@dataclass(frozen=True)
class GoldTrajectory:
    example_id: str
    question: str
    queries: tuple[str, ...]
    answer: str


def gold_to_trajectory(
    gold: GoldTrajectory, tokenizer: Any, protocol: TagProtocol, retriever: Retriever, k: int
) -> Trajectory:
    """Token ids and loss_mask of the rollout a perfect policy would produce for ``gold``."""

    def enc(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    ids = prompt_ids(tokenizer, protocol, gold.question)
    prompt_len = len(ids)
    mask = [0] * prompt_len
    turns: list[Turn] = []
    results = retriever.search(list(gold.queries), k) if gold.queries else []
    for query, passages in zip(gold.queries, results, strict=True):
        said = enc(protocol.format_search(query))
        shown = enc(protocol.wrap_information(protocol.format_passages(passages)))
        ids += said + shown
        mask += [1] * len(said) + [0] * len(shown)
        turns.append(Turn("search", len(said), len(shown), query, tuple(p.id for p in passages)))
    final = [*enc(protocol.format_answer(gold.answer)), int(tokenizer.eos_token_id)]
    ids += final
    mask += [1] * len(final)
    turns.append(Turn("answer", len(final)))
    return Trajectory(gold.example_id, 0, ids, mask, [0.0] * len(ids), prompt_len, turns, gold.answer, "answer")


def sft(
    policy: Any,
    trajectories: Sequence[Trajectory],
    pad_id: int,
    *,
    epochs: int = 1,
    batch_size: int = 8,
    micro_batch: int | None = None,
    lr: float = 3e-4,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Masked next-token cross-entropy on policy tokens only; returns the loss of every step.

    Each optimizer step covers ``batch_size`` trajectories, run ``micro_batch`` at a time with gradients
    accumulated and weighted by token share, so the update does not depend on ``micro_batch`` while the
    activation memory shrinks with it (8 rows of ~470 tokens through SmolLM2 peak near 9.5 GB)."""
    micro = micro_batch or batch_size
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    order = list(range(len(trajectories)))
    losses: list[float] = []
    policy.train()
    for _ in range(epochs):
        rng.shuffle(order)
        for s in range(0, len(order), batch_size):
            chunk = [trajectories[i] for i in order[s : s + batch_size]]
            total = max(1, sum(sum(t.loss_mask[1:]) for t in chunk))  # collate shifts the mask by one
            opt.zero_grad(set_to_none=True)
            step_loss = 0.0
            for m in range(0, len(chunk), micro):
                part = chunk[m : m + micro]
                batch = collate(part, [0.0] * len(part), list(range(len(part))), pad_id)
                lp, _ = token_logprobs(policy, batch.input_ids, batch.attention_mask, batch.loss_mask)
                loss = -(lp * batch.loss_mask).sum() / total
                loss.backward()
                step_loss += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(step_loss)
            if on_step is not None:
                on_step(len(losses), losses[-1])
    policy.eval()
    return losses


def warm_start(
    trainer: Trainer,
    golds: Sequence[GoldTrajectory],
    retriever: Retriever,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[list[float], int]:
    """SFT the trainer's policy on ``golds`` with its config's SFT settings and save it as checkpoint 0.

    Returns the loss of every step and the number of gold trajectories (the demo and experiments share it)."""
    cfg = trainer.cfg
    trajs = [gold_to_trajectory(g, trainer.tokenizer, trainer.protocol, retriever, cfg.retrieval.topk) for g in golds]
    losses = sft(
        trainer.policy,
        trajs,
        int(trainer.tokenizer.pad_token_id),
        epochs=cfg.train.sft_epochs,
        micro_batch=cfg.train.micro_batch,
        lr=cfg.train.sft_lr,
        seed=cfg.seed,
        on_step=on_step,
    )
    trainer.save()  # checkpoint 0: the warm-started adapter
    return losses, len(trajs)

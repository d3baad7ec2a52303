"""One training run for the data-parallel tests, in this process or as a rank under torchrun.

``python tests/dist_worker.py ENGINE OUT_DIR [overrides...]`` (ENGINE: ours | trl) trains a tiny model
with scripted rollouts that depend only on (question, sample index), never on how rows are split
across ranks, so 1 process and N processes see the same global batch. Rank 0 writes
``OUT_DIR/result.pt``: per-step metrics and the final trainable weights.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from helpers.rollout import CORPUS, KeywordRetriever
from searchrl.config import load_config
from searchrl.models import load_tokenizer, tiny_model
from searchrl.rollout.backend import Completion, SamplingParams
from searchrl.rollout.scripted import ScriptedBackend
from searchrl.types import QAExample

EXAMPLES = [
    QAExample("toy/0", "Who founded the Quillon Company?", ("Ilse Marrow",), "toy"),
    QAExample("toy/1", "Where was Ilse Marrow born?", ("Varnholt",), "toy"),
    QAExample("toy/2", "What does the Quillon Company make?", ("brass instruments",), "toy"),
    QAExample("toy/3", "When was Varnholt founded?", ("1712",), "toy"),
]
ANSWERS = ["Ilse Marrow", "Varnholt", "brass instruments", "1712"]


def scripts_for(q: int, g: int) -> list[str]:
    """Sample g of question q: right or wrong, with zero, one or two searches (rewards vary in a group)."""
    right = (q + g) % 3 != 0
    answer = ANSWERS[q] if right else ANSWERS[(q + 1) % 4]
    searches = [f"<search> {EXAMPLES[q].question} </search>"] * ((q + g) % 3)
    return [f"<think> sample {g} </think>", *searches, f"<answer> {answer} </answer>"][-3:]


class PromptScripted(ScriptedBackend):
    """Picks each row's script by the question in its prompt and its sample index (key % group)."""

    def __init__(self, tokenizer: Any, group: int) -> None:
        super().__init__(tokenizer, [])
        self.group = group

    def reset(self) -> None:
        self.scripts = []
        super().reset()

    def generate(
        self,
        keys: Sequence[int],
        contexts: Sequence[Sequence[int]],
        max_new_tokens: Sequence[int],
        stop: Sequence[str],
        params: SamplingParams,
        seed: int,
    ) -> list[Completion]:
        if not self.scripts:  # the first turn of a rollout has every row
            texts = [self.tokenizer.decode(list(c)) for c in contexts]
            qs = [next(i for i, ex in enumerate(EXAMPLES) if ex.question in t) for t in texts]
            self.scripts = [scripts_for(q, k % self.group) for q, k in zip(qs, keys, strict=True)]
            self._pos = [0] * len(self.scripts)
        return super().generate(keys, contexts, max_new_tokens, stop, params, seed)


def main(engine: str, out: Path, overrides: list[str]) -> None:
    cfg = load_config(None, [f"output_dir={out}", *overrides])
    tok = load_tokenizer("smollm2-135m-instruct")
    model = tiny_model(tok, layers=1, hidden=32, heads=2, seed=0)
    backend = PromptScripted(tok, cfg.rollout.group_size)
    retriever = KeywordRetriever(CORPUS)
    if engine == "trl":
        from searchrl.engines.trl import build_grpo_trainer, train_with_trl

        trainer = build_grpo_trainer(cfg, model, tok, retriever, EXAMPLES, backend=lambda t: backend)
        history = [h for h in train_with_trl(trainer, out) if "loss" in h]
        policy, is_main = trainer.accelerator.unwrap_model(trainer.model), trainer.accelerator.is_main_process
    else:
        from searchrl.trainer.distributed import Distributed
        from searchrl.trainer.loop import Trainer

        dist = Distributed.from_env()
        ours = Trainer(cfg, model, tok, retriever, EXAMPLES, out, backend=backend, dist=dist)
        history = ours.fit()
        policy, is_main = ours.policy, dist.is_main
    if is_main:
        weights = {n: p.detach().cpu().clone() for n, p in policy.named_parameters() if p.requires_grad}
        torch.save({"history": history, "weights": weights}, out / "result.pt")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])

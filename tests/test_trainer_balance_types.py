"""train.balance_types: the prompt order is dealt round-robin over question types, so each step of a mixed
pool holds every type about equally; without it the order is exactly the one shuffle earlier runs used."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from helpers.training import make_trainer
from searchrl.data.world import generate_world
from searchrl.trainer.sampling import prompt_order
from searchrl.types import QAExample


def pool() -> list[QAExample]:
    """The medium world's 1-hop and 2-hop training questions (about 64 % 1-hop), as the F1 runs draw."""
    train = generate_world(1, "medium").questions["train"]
    return [e for e in train if e.metadata["type"] in ("1hop", "2hop")]


def test_without_balance_types_the_order_is_the_one_shuffle_of_earlier_runs() -> None:
    examples = pool()
    expected = list(range(len(examples)))
    random.Random(3).shuffle(expected)
    assert prompt_order(examples, 3) == expected


def test_balance_types_gives_every_step_both_types_and_keeps_every_question() -> None:
    examples = pool()
    kinds = Counter(e.metadata["type"] for e in examples)
    assert kinds["1hop"] > 1.5 * kinds["2hop"]  # the imbalance it corrects
    order = prompt_order(examples, 0, balance_types=True)
    assert order == prompt_order(examples, 0, balance_types=True) != prompt_order(examples, 1, balance_types=True)
    assert set(order) == set(range(len(examples)))  # each question drawn; the shorter type starts over
    assert len(order) == 2 * kinds["1hop"]
    for start in range(0, len(order) - 7, 8):  # every full step of 8 prompts: 4 of each type
        step = Counter(examples[i].metadata["type"] for i in order[start : start + 8])
        assert step == {"1hop": 4, "2hop": 4}
    plain = prompt_order(examples, 0)
    drawn = [Counter(examples[i].metadata["type"] for i in plain[s : s + 8])["2hop"] for s in range(0, 96, 8)]
    assert min(drawn) < 4  # as they come, some of F1's 12 steps are mostly 1-hop


def test_trainer_draws_in_the_balanced_order(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    examples = [
        QAExample(f"toy/{i}", f"Question {i}?", ("a",), "toy", metadata={"type": "2hop" if i % 5 == 0 else "1hop"})
        for i in range(20)
    ]
    trainer = make_trainer(
        smol_tokenizer, "grpo", tmp_path / "run", extra=["train.balance_types=true"], examples=examples
    )
    assert trainer.order == prompt_order(examples, trainer.cfg.seed, balance_types=True)
    picked = trainer.next_examples() + trainer.next_examples()  # prompts_per_step=2
    assert [e.metadata["type"] for e in picked] == ["1hop", "2hop", "1hop", "2hop"]

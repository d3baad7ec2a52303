"""dynamic_sampling: a step keeps only groups whose rewards differ, respects its cap on generated groups,
logs global counts, and a resumed run continues at the same data position."""

from __future__ import annotations

from pathlib import Path

from helpers.training import low_half_reward, make_trainer
from searchrl.trainer.sampling import Drawn
from searchrl.types import QAExample, Trajectory

FLAT, MIXED = ("flat",), ("mixed",)
# 4 questions whose groups always tie (reward 0) and 2 whose samples score unequally
EXAMPLES = [QAExample(f"toy/{i}", f"Question {i}?", MIXED if i in (2, 5) else FLAT, "toy") for i in range(6)]


def reward_of(vocab: int):  # type: ignore[no-untyped-def]
    varied = low_half_reward(vocab)

    def reward(traj: Trajectory, golds: tuple[str, ...]) -> float:
        return varied(traj, golds) if golds == MIXED else 0.0

    return reward


def trainer_for(smol_tokenizer, run_dir: Path, extra=(), examples=EXAMPLES):  # type: ignore[no-untyped-def]
    overrides = ["train.dynamic_sampling=true", "train.epochs=1", "train.checkpoint_every=1", *extra]
    trainer = make_trainer(smol_tokenizer, "grpo", run_dir, steps=3, extra=overrides, examples=examples)
    trainer.reward_fn = reward_of(len(smol_tokenizer))
    return trainer


def test_dynamic_sampling_keeps_only_mixed_groups(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer = trainer_for(smol_tokenizer, tmp_path / "run")
    order = [EXAMPLES[i] for i in trainer.order]
    trained: list[str] = []
    collate = trainer.stage_collate

    def recording(examples, trajs, rewards):  # type: ignore[no-untyped-def]
        trained.extend(e.id for e in examples)
        return collate(examples, trajs, rewards)

    trainer.stage_collate = recording
    (m,) = trainer.fit(1)
    # prompts_per_step=2: draws of 2 until both MIXED questions were seen (the cap 4 x 2 = 8 > 6 questions)
    last = max(order.index(e) for e in EXAMPLES if e.answers == MIXED)
    assert m["rollout/groups_generated"] == 2 * (last // 2 + 1) == trainer.state.data_position
    assert m["rollout/groups_kept"] == 2 and m["rollout/informative_fraction"] == 2 / m["rollout/groups_generated"]
    assert sorted(trained) == ["toy/2", "toy/5"]


def test_dynamic_sampling_respects_its_cap(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    flat = [QAExample(f"toy/{i}", f"Question {i}?", FLAT, "toy") for i in range(10)]
    trainer = trainer_for(smol_tokenizer, tmp_path / "run", ["train.dynamic_sampling_max_groups=6"], flat)
    (m,) = trainer.fit(1)
    assert m["rollout/groups_generated"] == 6 and m["rollout/groups_kept"] == 0  # trained on its last draw
    assert m["rollout/informative_fraction"] == 0.0 and m["actor/rows_skipped"] == 1.0  # no gradient in it


def test_dynamic_sampling_resumes_at_the_same_position(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    whole = trainer_for(smol_tokenizer, tmp_path / "whole").fit(2)
    first = trainer_for(smol_tokenizer, tmp_path / "cut")
    first.fit(1)
    again = trainer_for(smol_tokenizer, tmp_path / "cut")
    assert again.resume() and again.state.step == 1
    rest = again.fit(2)
    keys = ("rollout/groups_generated", "rollout/groups_kept", "reward/mean")
    assert [[h[k] for k in keys] for h in rest] == [[h[k] for k in keys] for h in whole[1:]]


def test_drawn_without_dynamic_sampling_trains_on_everything() -> None:
    ex = [QAExample(f"d/{i}", "q", ("a",), "d") for i in range(2)]
    trajs = [Trajectory.__new__(Trajectory) for _ in range(4)]
    drawn = Drawn(False, 2, 2)
    drawn.add(ex, trajs, [1.0, 1.0, 0.0, 1.0], [0.0] * 4)
    assert drawn.train_groups() == (ex, trajs, [1.0, 1.0, 0.0, 1.0])
    assert drawn.metrics() == {
        "rollout/groups_generated": 2.0,
        "rollout/groups_kept": 1.0,
        "rollout/informative_fraction": 0.5,
    }
    dynamic = Drawn(True, 2, 2)
    dynamic.add(ex, trajs, [1.0, 1.0, 0.0, 1.0], [0.0] * 4)
    dynamic.add(ex, trajs, [0.0, 1.0, 0.5, 0.5], [0.0] * 4)
    assert dynamic.informative_groups == [1, 2] and dynamic.train_groups(world=2)[2] == [0.0, 1.0, 0.0, 1.0]

"""The curriculum of an experiment: pass rates of the policy RL starts from, deterministic by its seed,
computed once per starting checkpoint and reused from its cache by every arm and seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import searchrl.experiment.runner as runner
from searchrl.experiment.runner import Experiment
from searchrl.experiment.spec import ExperimentSpec
from searchrl.rollout.difficulty import in_band, population
from searchrl.types import QAExample


def spec(model: Path, band: list[int], per_type: dict[str, int] | None = None) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "name": "cur",
            "world": {"seed": 2, "size": "tiny"},
            "held_out": {"split": "test", "per_type": {"1hop": 1}},
            "seeds": [0, 1],
            "config": {
                "model": {"path": str(model)},
                "rollout": {"max_new_tokens": 4, "max_turns": 2, "group_size": 2},
                "train": {"prompts_per_step": 2, "mini_batch": 4, "micro_batch": 2, "lora_r": 4},
            },
            "warm_start": {"per_type": {"1hop": 2}},
            "rl_types": ["1hop", "2hop"],
            "curriculum": {"candidates": 6, "k": 2, "band": band, "seed": 3, "per_type": per_type or {}},
            "arms": [{"name": "cur", "steps": 1, "curriculum": True}, {"name": "plain", "steps": 1}],
        }
    )


def test_in_band_and_population() -> None:
    exs = [QAExample(f"d/{i}", "q", ("a",), "d", metadata={"type": t}) for i, t in enumerate(["1hop", "2hop", "1hop"])]
    rates = {"d/0": 0.0, "d/1": 0.5, "d/2": 1.0}
    assert [e.id for e in in_band(exs, rates, 2, (1, 1))] == ["d/1"]
    assert [e.id for e in in_band(exs, rates, 2, (0, 2))] == ["d/0", "d/1", "d/2"]
    assert population(exs, rates, 2) == {
        "1hop": {0: 1, 1: 0, 2: 1},
        "2hop": {0: 0, 1: 1, 2: 0},
        "all": {0: 1, 1: 1, 2: 1},
    }


def test_curriculum_is_deterministic_and_cached_per_start(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = Experiment.prepare(spec(tiny_model_dir, [0, 2]), tmp_path / "a", log=lambda _: None)
    exp.warm_start()
    cur, plain = exp.spec.arms
    kept = exp.train_examples(cur, 0)
    cache = tmp_path / "a" / "curriculum" / "warm_start.json"
    record = json.loads(cache.read_text())
    assert len(kept) == 6 and record["kept"] == [e.id for e in kept]  # band 0..k keeps every candidate
    assert sum(record["population"]["all"].values()) == 6 and set(record["rates"]) == set(record["kept"])
    assert exp.train_examples(plain, 0) == exp.rl_examples()  # an arm without the curriculum trains on all

    def no_rollouts(*args: object, **kw: object) -> None:
        raise AssertionError("the curriculum was recomputed instead of read from its cache")

    monkeypatch.setattr(runner, "pass_rates", no_rollouts)
    assert exp.train_examples(cur, 1) == kept  # another seed, same start: the cache
    monkeypatch.undo()

    again = Experiment.prepare(spec(tiny_model_dir, [0, 2]), tmp_path / "b", log=lambda _: None)
    again.warm_start()
    again.train_examples(again.spec.arms[0], 0)
    assert json.loads((tmp_path / "b" / "curriculum" / "warm_start.json").read_text())["rates"] == record["rates"]

    narrow = Experiment.prepare(spec(tiny_model_dir, [2, 2]), tmp_path / "a", log=lambda _: None)
    solved = [i for i, r in record["rates"].items() if r == 1.0]
    if solved:  # changed settings recompute the band over the same rates
        assert [e.id for e in narrow.train_examples(narrow.spec.arms[0], 0)] == solved
    else:
        with pytest.raises(ValueError, match="kept no question"):
            narrow.train_examples(narrow.spec.arms[0], 0)


def test_curriculum_per_type_candidates(tiny_model_dir: Path, tmp_path: Path) -> None:
    exp = Experiment.prepare(spec(tiny_model_dir, [0, 2], {"1hop": 2, "2hop": 3}), tmp_path, log=lambda _: None)
    exp.warm_start()
    kept = exp.train_examples(exp.spec.arms[0], 0)  # band 0..k keeps every candidate
    assert [e.metadata["type"] for e in kept] == ["1hop"] * 2 + ["2hop"] * 3
    with pytest.raises(ValueError, match="asks for 999"):
        bad = Experiment.prepare(spec(tiny_model_dir, [0, 2], {"2hop": 999}), tmp_path / "b", log=lambda _: None)
        bad.warm_start()
        bad.train_examples(bad.spec.arms[0], 0)

"""Checkpoint folders: atomic round trip, pruning that keeps the starting point, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from searchrl.trainer.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint


def _module_and_opt(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    module = torch.nn.Linear(4, 3)
    return module, torch.optim.AdamW(module.parameters(), lr=0.1)


def _train_once(module: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    module(torch.ones(2, 4)).sum().backward()
    opt.step()
    opt.zero_grad()


def test_round_trip_restores_weights_optimizer_and_position(tmp_path: Path) -> None:
    module, opt = _module_and_opt(0)
    _train_once(module, opt)
    save_checkpoint(tmp_path, TrainState(step=3, data_position=12, extra={"k": 1}), {"m": module}, {"m": opt})
    other, other_opt = _module_and_opt(1)
    state = load_checkpoint(latest_checkpoint(tmp_path), {"m": other}, {"m": other_opt})  # type: ignore[arg-type]
    assert (state.step, state.data_position, state.extra) == (3, 12, {"k": 1})
    for a, b in zip(module.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)
    _train_once(module, opt)
    _train_once(other, other_opt)  # the same Adam moments give the same next step
    for a, b in zip(module.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)


def test_pruning_keeps_the_newest_and_step_zero(tmp_path: Path) -> None:
    module, opt = _module_and_opt(0)
    for step in range(5):
        save_checkpoint(tmp_path, TrainState(step=step), {"m": module}, {"m": opt}, keep=2)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-000000", "ckpt-000003", "ckpt-000004"]
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-000004"


def test_missing_pointer_target_and_missing_weights(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "latest").write_text("ckpt-000009")  # points at a folder that was never completed
    assert latest_checkpoint(tmp_path) is None
    module, opt = _module_and_opt(0)
    path = save_checkpoint(tmp_path, TrainState(step=1), {"m": module}, {"m": opt})
    with pytest.raises(FileNotFoundError, match=r"no critic\.safetensors"):
        load_checkpoint(path, {"critic": module}, {})

"""`searchrl eval` with several `--checkpoint` runs evaluates each arm with that run's own saved config
(protocol, budgets, retrieval), not with the config of the last run loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from searchrl.cli import app
from searchrl.config import config_from_dict, save_config
from searchrl.models import load_policy
from searchrl.trainer.checkpoint import TrainState, save_checkpoint


def make_run(run_dir: Path, model_dir: Path, protocol: str, max_new_tokens: int, topk: int) -> None:
    cfg = config_from_dict(
        {
            "model": {"path": str(model_dir)},
            "output_dir": str(run_dir),
            "train": {"lora_r": 0},
            "rollout": {"protocol": protocol, "max_new_tokens": max_new_tokens, "max_turns": 2},
            "retrieval": {"topk": topk},
        }
    )
    save_config(cfg, run_dir)
    model, _ = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    save_checkpoint(run_dir, TrainState(), {"policy": model}, {"policy": opt})


def test_eval_each_checkpoint_arm_uses_its_own_config(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import searchrl.eval.run as eval_run

    make_run(tmp_path / "a", tiny_model_dir, "search_r1", 5, 2)
    make_run(tmp_path / "b", tiny_model_dir, "r1_searcher", 7, 4)
    seen: list[tuple[str, int, int]] = []
    real = eval_run.evaluate

    def recording(method: Any, examples: Any, engine: Any, **kw: Any) -> Any:
        seen.append((engine.protocol.name, engine.limits.max_new_tokens, engine.limits.topk))
        return real(method, examples, engine, **kw)

    monkeypatch.setattr(eval_run, "evaluate", recording)
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "data.max_examples=2",
            "--dataset",
            "world:default",
            "--checkpoint",
            str(tmp_path / "a"),
            "--checkpoint",
            str(tmp_path / "b"),
            "--out",
            str(tmp_path / "ev"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert seen == [("search_r1", 5, 2), ("r1_searcher", 7, 4)]
    assert (tmp_path / "ev" / "agent@a.jsonl").is_file() and (tmp_path / "ev" / "agent@b.jsonl").is_file()

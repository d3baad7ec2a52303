"""train.watchdog: each signal trips on its metric and not inside its threshold, logged healthy runs and
GRPO-sized reward noise never trip it, a tiny model driven to collapse (a huge learning rate) trips, rolls
back to the last checkpoint that passed and finishes with a finite loss, and repeated trips stop the run
with an error naming the signal."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.training import make_trainer
from searchrl.config import ConfigError, WatchdogConfig, load_config
from searchrl.trainer.checkpoint import TrainState, checkpoint_dir, latest_checkpoint, rewind, save_checkpoint
from searchrl.trainer.watchdog import Baselines, WatchdogError, find_trip

HEALTHY = {
    "reward/mean": 0.4,
    "actor/entropy": 1.0,
    "actor/kl": 0.01,
    "actor/pg_loss": 0.01,
    "actor/grad_norm": 0.2,
    "actor/skipped_steps": 0.0,
    "rollout/response_tokens": 100.0,
    "rollout/truncated": 0.1,
    "rollout/invalid": 0.1,
}

# a logged F1 calibration run (search_r1_f1 GRPO arm, seed 0): 12 healthy steps of 4 prompts x 8 samples
F1_REWARD = [0.312, 0.312, 0.188, 0.281, 0.719, 0.688, 0.031, 0.656, 0.344, 0.438, 0.406, 0.344]
F1_ENTROPY = [0.358, 0.525, 0.339, 0.542, 0.757, 0.393, 0.783, 0.372, 0.328, 0.535, 0.522, 0.34]
F1_LENGTH = [255.75, 152.781, 153.281, 155.156, 161.906, 164.312, 166.062, 185.844, 153.219, 176.344, 171.188, 190.688]


def settled(steps: int = 30, cfg: WatchdogConfig | None = None) -> Baselines:
    """Baselines after ``steps`` passed steps of HEALTHY."""
    base, cfg = Baselines(), cfg or WatchdogConfig()
    for _ in range(steps):
        assert find_trip(HEALTHY, base, cfg) is None
        base.fold(HEALTHY, cfg)
    return base


def test_watchdog_each_signal_trips_on_its_metric_and_not_inside_its_threshold() -> None:
    cfg, base = WatchdogConfig(), settled()
    tripping = [
        ("nonfinite", {"actor/pg_loss": math.nan}),
        ("nonfinite", {"actor/grad_norm": math.inf}),
        ("nonfinite", {"actor/skipped_steps": 0.5}),  # trainer/update.py skipped a non-finite step
        ("entropy_floor", {"actor/entropy": 0.005}),
        ("entropy_jump", {"actor/entropy": 5.5}),
        ("entropy_jump", {"actor/entropy": 0.15}),
        ("kl_ceiling", {"actor/kl": 1.5}),
        ("length_jump", {"rollout/response_tokens": 310.0}),
        ("truncated_jump", {"rollout/truncated": 0.65}),
        ("invalid_jump", {"rollout/invalid": 1.2}),
    ]
    for signal, change in tripping:
        trip = find_trip({**HEALTHY, **change}, base, cfg)
        assert trip is not None and trip.signal == signal, (signal, change)
        assert trip.key in change and trip.key in trip.detail
    inside = [
        {"actor/entropy": 4.9},
        {"actor/entropy": 0.21},
        {"actor/kl": 0.99},
        {"rollout/response_tokens": 290.0},
        {"rollout/response_tokens": 20.0},  # shorter answers: no length trip (a falling reward has its own)
        {"rollout/truncated": 0.55},
        {"rollout/invalid": 1.0},
        {"reward/mean": 0.0},  # one bad GRPO step moves the smoothed reward by 0.02 only
    ]
    for change in inside:
        assert find_trip({**HEALTHY, **change}, base, cfg) is None, change


def test_watchdog_invalid_jump_catches_the_demonstrated_collapse_at_its_second_step() -> None:
    """recipes/demonstrations/watchdog_collapse.yaml, lr 5e-3, its logged metrics: after one update every turn
    was '<<<<...'; every group's rewards were equal from then on, so no row trained and neither entropy nor KL
    was logged again, and the jump checks were in their warmup. Only the protocol breaking down shows."""
    cfg, base = WatchdogConfig(), Baselines()
    step1 = {"reward/mean": 0.312, "rollout/response_tokens": 255.3, "rollout/truncated": 0.0,
             "rollout/invalid": 0.0625, "actor/entropy": 0.299, "actor/kl": 0.0, "actor/grad_norm": 0.205}  # fmt: skip
    step2 = {"reward/mean": 0.0, "rollout/response_tokens": 100.5, "rollout/truncated": 0.0, "rollout/invalid": 1.625,
             "actor/grad_norm": 0.0}  # fmt: skip
    assert find_trip(step1, base, cfg) is None
    base.fold(step1, cfg)
    trip = find_trip(step2, base, cfg)
    assert trip is not None and trip.signal == "invalid_jump" and trip.value == 1.625
    assert find_trip(step2, base, WatchdogConfig(invalid_rise=0)) is None  # switched off: nothing else sees it


def test_watchdog_reward_drop_trips_at_the_hand_computed_step() -> None:
    cfg, base = WatchdogConfig(), settled()
    # best 0.4; zeros from here on: the smoothed reward is 0.4 * 0.95^k, first more than 0.3 below at k = 28
    zeros = 0
    while (trip := find_trip({**HEALTHY, "reward/mean": 0.0}, base, cfg)) is None and zeros < 40:
        base.fold({**HEALTHY, "reward/mean": 0.0}, cfg)
        zeros += 1
    assert trip is not None and trip.signal == "reward_drop" and zeros + 1 == 28


def test_watchdog_no_jump_check_before_warmup_and_no_reward_check_before_one_over_smoothing() -> None:
    cfg = WatchdogConfig()
    base = settled(cfg.warmup - 1)
    assert find_trip({**HEALTHY, "rollout/response_tokens": 1000.0}, base, cfg) is None
    assert base.best_reward is None  # 1/smoothing = 20 steps before the reward has a best
    assert settled(20).best_reward == pytest.approx(0.4)


def test_watchdog_passes_logged_healthy_runs_and_grpo_sized_reward_noise() -> None:
    cfg, base = WatchdogConfig(), Baselines()
    for i in range(60):  # the logged F1 run, five times over
        m = {**HEALTHY, "reward/mean": F1_REWARD[i % 12], "actor/entropy": F1_ENTROPY[i % 12]}
        m["rollout/response_tokens"] = F1_LENGTH[i % 12]
        assert find_trip(m, base, cfg) is None, i
        base.fold(m, cfg)
    rng = np.random.default_rng(0)
    base = Baselines()
    for i, r in enumerate(np.clip(rng.normal(0.4, 0.2, 500), 0, 1)):  # the F1 run's step-to-step sd
        m = {**HEALTHY, "reward/mean": float(r)}
        assert find_trip(m, base, cfg) is None, i
        base.fold(m, cfg)


def test_watchdog_reward_baseline_restarts_with_a_new_reward_stage() -> None:
    cfg, base = WatchdogConfig(), Baselines()
    for stage, reward in ((0.0, 0.8), (1.0, 0.1)):  # stage 2's reward lives on another scale
        for _ in range(30):
            m = {**HEALTHY, "reward/mean": reward, "reward/stage": stage}
            assert find_trip(m, base, cfg) is None
            base.fold(m, cfg)
    assert base.best_reward == pytest.approx(0.1)


def test_watchdog_pruning_keeps_the_protected_checkpoint_and_rewind_discards_later_ones(tmp_path: Path) -> None:
    module = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(module.parameters(), lr=0.1)
    for step in range(1, 6):
        save_checkpoint(tmp_path, TrainState(step=step), {"m": module}, {"m": opt}, keep=2, protect=(2,))
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-000002", "ckpt-000004", "ckpt-000005"]
    assert rewind(tmp_path, 2) == latest_checkpoint(tmp_path) == checkpoint_dir(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-000002"]
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        rewind(tmp_path, 4)


def test_watchdog_kl_coef_needs_the_kl_term_in_the_loss() -> None:
    with pytest.raises(ConfigError, match=r"watchdog\.kl_coef"):
        load_config(None, ["train.watchdog.kl_coef=0.1", "train.kl_in_reward=true", "train.kl_coef=0"])
    assert load_config(None, ["train.watchdog.lr_factor=0.25"]).train.watchdog.lr_factor == 0.25


def trip_records(run_dir: Path) -> list[dict[str, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "watchdog/trip" in r]


# epoch 1 at lr 10 turns the tiny model into a near-deterministic one: entropy ~0 from step 2 on
COLLAPSE = [
    "train.lr=10",
    "train.epochs=1",
    "train.log_entropy=true",
    "train.fast_paths=false",
    "train.checkpoint_every=1",
]


def test_watchdog_collapse_trips_rolls_back_and_finishes_finite(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    off = make_trainer(
        smol_tokenizer, "grpo", tmp_path / "off", steps=2, extra=[*COLLAPSE, "train.watchdog.enabled=false"]
    )
    assert off.fit()[1]["actor/entropy"] < 0.01  # without the watchdog: collapsed
    recover = ["train.watchdog.lr_factor=0.001", "train.watchdog.kl_coef=0.05"]
    trainer = make_trainer(smol_tokenizer, "grpo", tmp_path / "on", steps=4, extra=[*COLLAPSE, *recover])
    history = trainer.fit()
    assert len(history) == 6  # steps 1, 2 (tripped), then 1..4 again
    trip = history[1]
    assert trip["watchdog/trip"] == 1.0 and trip["watchdog/entropy_floor"] == 1.0
    assert trip["watchdog/restored_step"] == 0.0  # ckpt-1 passed its own step, but step 2 ran from its weights
    assert trip["watchdog/lr_scale"] == pytest.approx(0.001) and trip["watchdog/kl_coef"] == 0.05
    assert [r["step"] for r in trip_records(tmp_path / "on")] == [2]
    last = history[-1]
    assert trainer.state.step == 4 and "watchdog/trip" not in last
    assert math.isfinite(last["actor/pg_loss"]) and last["actor/skipped_steps"] == 0.0
    assert last["actor/entropy"] > 0.01 and "actor/kl" in last  # the KL term switched on after the trip
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    assert latest_checkpoint(tmp_path / "on") == checkpoint_dir(tmp_path / "on", 4)
    again = make_trainer(smol_tokenizer, "grpo", tmp_path / "on", steps=4, extra=[*COLLAPSE, *recover])
    assert again.resume() and again.watchdog is not None
    again.watchdog.start(again)  # a resumed run keeps its trips, lowered learning rate and KL term
    assert again.watchdog.state.trips == 1 and again.watchdog.state.passed == 3
    assert again.optimizer.param_groups[0]["lr"] == pytest.approx(0.01) and again.update.t.kl_coef == 0.05


def test_watchdog_healthy_run_never_trips_and_changes_nothing(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # at lr 0.003 the toy policy learns without collapsing (8 steps of 2 epochs: reward 0.64 -> 0.88, entropy
    # 1.26 -> 0.27); at the helper's lr 0.01 it turns deterministic in 6 steps (entropy 1.22 -> 0.15): a collapse
    extra = ["train.lr=0.003", "train.epochs=1", "train.log_entropy=true", "train.checkpoint_every=2"]
    extra.append("train.watchdog.warmup=2")  # the jump checks apply from step 3
    on = make_trainer(smol_tokenizer, "grpo", tmp_path / "on", steps=4, extra=extra)
    with_watchdog = on.fit()  # each trainer seeds the global RNG when built: build, then run, one at a time
    off = make_trainer(
        smol_tokenizer, "grpo", tmp_path / "off", steps=4, extra=[*extra, "train.watchdog.enabled=false"]
    )
    without = off.fit()
    assert on.watchdog is not None and on.watchdog.state.trips == 0 and not trip_records(tmp_path / "on")
    assert (on.watchdog.state.passed, on.watchdog.state.pending) == (2, 4)  # ckpt-2 passed with step 3
    keys = ("reward/mean", "actor/pg_loss", "actor/entropy", "actor/grad_norm")
    assert [[m.get(k) for k in keys] for m in with_watchdog] == [[m.get(k) for k in keys] for m in without]


def test_watchdog_stops_after_max_trips_naming_the_signal(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    extra = [
        "train.epochs=1",
        "train.log_entropy=true",
        "train.watchdog.entropy_min=1000",
        "train.watchdog.max_trips=2",
    ]
    trainer = make_trainer(smol_tokenizer, "grpo", tmp_path, steps=3, extra=extra)
    with pytest.raises(WatchdogError, match=r"after 2 trips \(entropy_floor, entropy_floor\).*entropy_floor"):
        trainer.fit()
    assert [r["watchdog/trips"] for r in trip_records(tmp_path)] == [1.0, 2.0]
    assert trainer.state.step == 0 and latest_checkpoint(tmp_path) == checkpoint_dir(tmp_path, 0)

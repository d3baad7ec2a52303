"""The `searchrl` command end to end, in subprocesses: config errors, a world, a few training steps
with a tiny model, and a run killed with SIGKILL then resumed, which must match the uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from searchrl.models import tiny_model
from searchrl.trainer.metrics import read_metrics

BIN = [sys.executable, "-m", "searchrl.cli"]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BIN, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


@pytest.fixture(scope="module")
def tiny_dir(smol_tokenizer, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("tiny")
    tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path


def test_config_errors_exit_2() -> None:
    bad = run("config", "show", "retrieval.topK=3")
    assert bad.returncode == 2 and "Did you mean 'topk'" in bad.stderr
    good = run("config", "show", "retrieval.topk=7")
    assert good.returncode == 0 and "topk: 7" in good.stdout


def test_data_world(tmp_path: Path) -> None:
    res = run("data", "world", "--out", str(tmp_path / "w"), "--size", "tiny", "--seed", "1")
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["seed"] == 1 and manifest["passages"] > 50


def train_args(tiny: Path, out: Path, steps: int) -> list[str]:
    return [
        "train",
        f"model.path={tiny}",
        f"output_dir={out}",
        f"train.steps={steps}",
        "train.lora_r=0",
        "train.lr=0.003",
        "train.prompts_per_step=2",
        "train.mini_batch=4",
        "train.micro_batch=2",
        "train.checkpoint_every=1",
        "train.kl_coef=0.01",
        "rollout.group_size=2",
        "rollout.max_new_tokens=6",
        "rollout.max_turns=2",
        "data.train=world:default",
    ]


def comparable(path: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in rec.items() if not k.startswith("perf/")} for rec in read_metrics(path)]


def test_train_resume_after_sigkill_matches(tiny_dir: Path, tmp_path: Path) -> None:
    full = run(*train_args(tiny_dir, tmp_path / "full", 5))
    assert full.returncode == 0, full.stderr[-2000:]
    expected = comparable(tmp_path / "full" / "metrics.jsonl")
    assert [m["step"] for m in expected] == [1, 2, 3, 4, 5]
    assert (tmp_path / "full" / "config.yaml").is_file()

    out = tmp_path / "killed"
    proc = subprocess.Popen([*BIN, *train_args(tiny_dir, out, 5)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (out / "ckpt-000002").is_dir():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "latest").is_file()
    resumed = run(*train_args(tiny_dir, out, 5), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed at step" in resumed.stderr
    got = comparable(out / "metrics.jsonl")
    assert len(got) == 5
    for a, b in zip(got, expected, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (a["step"], k)

"""Experiment files: validation errors, and a 2 arms x 2 seeds x 1 step run of the real command with a
tiny model (warm start, RL, held-out eval, findings page), then a rerun that must redo nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from searchrl.config import ConfigError
from searchrl.eval.paired import Interval, PairedRow
from searchrl.experiment.findings import verdict
from searchrl.experiment.spec import load_spec


def spec_dict(model: Path) -> dict[str, object]:
    return {
        "name": "smoke",
        "world": {"seed": 2, "size": "tiny"},
        "held_out": {"split": "test", "per_type": {"1hop": 3, "2hop": 3}},
        "seeds": [0, 1],
        "config": {
            "model": {"path": str(model)},
            "rollout": {"max_new_tokens": 6, "max_turns": 2, "group_size": 2},
            "train": {"prompts_per_step": 2, "mini_batch": 4, "micro_batch": 2, "lora_r": 4, "checkpoint_every": 1},
        },
        "warm_start": {"per_type": {"1hop": 2, "2hop": 2}},
        "arms": [
            {"name": "masked", "steps": 1},
            {"name": "unmasked", "steps": 1, "overrides": ["train.mask_retrieved_tokens=false"]},
        ],
        "claims": [{"id": "F2", "before": "unmasked", "after": "masked", "metric": "em"}],
        "bootstrap": 200,
    }


def write(tmp: Path, data: dict[str, object]) -> Path:
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(colour=1), "colour"),
        (lambda d: d["arms"].append({"name": "x", "init": "nope"}), "not an earlier arm"),
        (lambda d: d["claims"].append({"id": "F9", "before": "masked", "after": "ghost"}), "ghost"),
        (lambda d: d["arms"][0].update(overrides=["train.lrr=1"]), "lrr"),
        (lambda d: d.update(warm_start=None), "no warm_start"),
        (lambda d: d["world"].update(size="huge"), "huge"),
    ],
)
def test_bad_spec_is_refused_with_its_reason(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    data = spec_dict(tmp_path)
    change(data)
    with pytest.raises(ConfigError, match=message):
        load_spec(write(tmp_path, data))


def test_verdicts() -> None:
    def row(lo: float, hi: float) -> PairedRow:
        return PairedRow("w", "all", "a", "b", 100, Interval((lo + hi) / 2, lo, hi), 3, 1)

    assert verdict(row(0.01, 0.2), "greater") == "reproduced"
    assert verdict(row(-0.05, 0.2), "greater") == "inconclusive"
    assert verdict(row(-0.2, -0.01), "greater") == "not reproduced"
    assert verdict(row(-0.2, -0.01), "less") == "reproduced"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "searchrl.cli", "experiment", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ.copy())


def test_two_arms_two_seeds_one_step(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = write(tmp_path, spec_dict(tiny_model_dir))
    out = tmp_path / "out"
    res = run(str(spec), "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    for arm in ("masked", "unmasked"):
        for seed in (0, 1):
            run_dir = out / "arms" / arm / f"seed{seed}"
            rows = [json.loads(x) for x in (run_dir / "eval" / "heldout.jsonl").read_text().splitlines()]
            assert len(rows) == 6 and {r["group"] for r in rows} == {"1hop", "2hop"}
            assert [m["step"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())] == [1]
            cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
            assert cfg["seed"] == seed and cfg["train"]["mask_retrieved_tokens"] == (arm == "masked")
    assert (out / "warm_start" / "sft.json").is_file()
    page = (out / "findings.md").read_text()
    assert "| F2" in page and "masked − unmasked" in page and "| 2 |" in page  # two seeds of the 'after' arm
    assert "## Held-out em" in page and "1hop" in page and "2hop" in page
    svg = (out / "curves" / "reward_mean.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 4  # 2 arms x 2 seeds
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == {"masked": 2, "unmasked": 2}
    assert summary["verdicts"][0]["verdict"] in ("reproduced", "not reproduced", "inconclusive")

    before = (out / "arms" / "masked" / "seed1" / "eval" / "heldout.jsonl").stat().st_mtime_ns
    again = run(str(spec), "--out", str(out))  # resumable: everything is done, nothing is redone
    assert again.returncode == 0, again.stderr[-3000:]
    assert "step 1/1" not in again.stderr and "warm start:" not in again.stderr
    assert (out / "arms" / "masked" / "seed1" / "eval" / "heldout.jsonl").stat().st_mtime_ns == before
    bad = run(str(spec), "--out", str(out), "--arm", "ghost")
    assert bad.returncode == 2 and "ghost" in bad.stderr


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "recipes" / "experiments").glob("*.yaml")))
def test_shipped_experiment_files_load(path: Path) -> None:
    spec = load_spec(path)
    assert len(spec.seeds) >= 3 and spec.claims
    assert all(n >= 100 for n in spec.held_out.per_type.values())  # >= 100 held-out questions per type

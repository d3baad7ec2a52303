"""`searchrl demo` end to end with a tiny model: every stage runs, Ctrl-C leaves a run that the same
command continues (finished evaluations and the warm start are not redone), and the report renders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = [sys.executable, "-m", "searchrl.cli"]


def demo_args(model: Path, out: Path) -> list[str]:
    return [
        "demo",
        "--quick",
        f"model.path={model}",
        f"output_dir={out}",
        "rollout.max_new_tokens=6",
        "rollout.max_turns=2",
        "train.lora_r=4",
    ]


def test_demo_interrupted_then_resumed(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps log lines at the terminal width
    proc = subprocess.Popen(
        [*BIN, *demo_args(tiny_model_dir, out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (out / "sft.json").is_file() and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert b"run the same command again" in err
    done_before = sorted(p.name for p in (out / "eval").glob("*.json"))
    assert {"direct_base.json", "rag_base.json"} <= set(done_before)

    res = subprocess.run([*BIN, *demo_args(tiny_model_dir, out)], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "direct_base: done before" in res.stderr and "sft: done before" in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["tables"]) == ["direct_base", "rag_base", "rag_sft", "agent_sft", "agent_rl"]
    assert summary["plan"]["rl_steps"] == 1 and len(summary["rl_rewards"]) == 1
    assert (out / "ckpt-000001" / "policy.safetensors").is_file()
    assert "| agent_rl | 2hop |" in (out / "results.md").read_text()

    report = subprocess.run([*BIN, "report", str(out)], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "agent_rl" in (out / "report.html").read_text()

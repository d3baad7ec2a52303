"""`searchrl demo` end to end with a tiny model: every stage runs; an interrupt (Ctrl-C) leaves a run
that the same command continues without redoing finished evaluations or the warm start; the CLI turns
Ctrl-C into exit code 130 with a hint; the report renders the finished run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import pytest

from searchrl.config import Config, load_config
from searchrl.demo import run_demo

BIN = [sys.executable, "-m", "searchrl.cli"]
DEMO_YAML = Path(str(files("searchrl") / "configs" / "demo.yaml"))


def overrides(model: Path, out: Path) -> list[str]:
    small = ["rollout.max_new_tokens=6", "rollout.max_turns=2", "train.lora_r=4"]
    return [f"model.path={model}", f"output_dir={out}", *small]


def tiny_cfg(model: Path, out: Path) -> Config:
    return load_config(DEMO_YAML, overrides(model, out))


def test_demo_interrupted_after_warm_start_resumes(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    first: list[str] = []

    def ctrl_c_after_sft(msg: str) -> None:  # Ctrl-C at a known point: right after the warm start
        first.append(msg)
        if msg.startswith("sft:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_demo(tiny_cfg(tiny_model_dir, out), quick=True, log=ctrl_c_after_sft)
    tables = {p.name for p in (out / "eval").glob("*.json") if not p.name.endswith(".manifest.json")}
    assert tables == {"direct_base.json", "rag_base.json"}
    assert {p.name for p in (out / "eval").glob("*.manifest.json")} == {f"{t[:-5]}.manifest.json" for t in tables}
    assert (out / "sft.json").is_file() and (out / "ckpt-000000" / "policy.safetensors").is_file()

    second: list[str] = []
    summary = run_demo(tiny_cfg(tiny_model_dir, out), quick=True, log=second.append)
    done_before = [m.split(":")[0] for m in second if "done before" in m]
    assert done_before == ["direct_base", "rag_base", "sft"]
    assert list(summary["tables"]) == ["direct_base", "rag_base", "rag_sft", "agent_sft", "agent_rl"]
    assert summary["plan"]["rl_steps"] == 1 and len(summary["rl_rewards"]) == 1
    assert (out / "ckpt-000001" / "policy.safetensors").is_file()
    assert "| agent_rl | 2hop |" in (out / "results.md").read_text()
    # the paired row: RL minus warm start on the same held-out questions (quick: 5 per type, baselines 3)
    assert "agent_rl − agent_sft" in (out / "results.md").read_text()
    assert {p["group"] for p in summary["paired"]} == {"1hop", "2hop", "all"}
    assert summary["tables"]["agent_rl"]["all"]["n"] == 10 and summary["tables"]["rag_base"]["all"]["n"] == 6
    # the saved config says what ran (the plan's one RL step, not train.steps of demo.yaml) and where to search
    saved = load_config(out / "config.yaml")
    assert saved.train.steps == 1 and summary["rl_steps_run"] == 1
    assert saved.retrieval.corpus is not None and Path(saved.retrieval.corpus).is_file()

    report = subprocess.run([*BIN, "report", str(out)], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "agent_rl" in (out / "report.html").read_text()


def test_cli_ctrl_c_exits_130_with_a_hint(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "COLUMNS": "200"}
    args = [*BIN, "demo", "--quick", *overrides(tiny_model_dir, out)]
    # a shell running tests in the background (`cmd &`) ignores SIGINT, and children inherit that: a
    # terminal's Ctrl-C reaches a process with the default disposition, so give the child that
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "config.yaml").is_file():  # written before any stage
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert b"run the same command again" in err

"""The `searchrl` command end to end, in subprocesses: config errors, a world, a few training steps
with a tiny model, and a run killed with SIGKILL then resumed, which must match the uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from searchrl.metrics import read_metrics

BIN = [sys.executable, "-m", "searchrl.cli"]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BIN, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


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
    timing = ("perf/", "retrieval/seconds", "retrieval/latency")  # wall-clock metrics differ run to run
    return [{k: v for k, v in rec.items() if not k.startswith(timing)} for rec in read_metrics(path)]


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


def test_ask_prints_trace_of_trained_lora_run(tiny_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from searchrl.trainer.checkpoint import load_trained_policy

    out = tmp_path / "lora"
    args = [a for a in train_args(tiny_dir, out, 1) if not a.startswith("train.lora_r")]
    trained = run(*args, "train.lora_r=4")
    assert trained.returncode == 0, trained.stderr[-2000:]

    _, policy, _, step = load_trained_policy(out)
    saved = load_file(str(out / "ckpt-000001" / "policy.safetensors"))
    params = dict(policy.named_parameters())
    assert step == 1 and saved and all("lora" in name for name in saved)
    for name, weight in saved.items():
        assert params[name].detach().equal(weight), name

    res = run("ask", "Where was Kanka Drourteim born?", "rollout.max_turns=2", "--checkpoint", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Where was Kanka Drourteim born?" in res.stdout
    assert "checkpoint step 1" in res.stdout and "[policy]" in res.stdout and "answer:" in res.stdout

    missing = run("ask", "q", "--checkpoint", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "not a run folder" in (missing.stdout + missing.stderr)


def rows_of(stem: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stem.with_suffix(".jsonl").read_text().splitlines()]


class _NoJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible judge stub on loopback: records each request and always replies "no"."""

    seen: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _NoJudge.seen.append(body)
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": "no"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def test_eval_own_corpus_two_methods_with_judge(tiny_dir: Path, tmp_path: Path, raw_data: Path) -> None:
    hotpot = raw_data / "hotpotqa" / "OSU-NLP-Group__HippoRAG" / "hotpotqa_train.json"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        res = run(
            "eval",
            f"model.path={tiny_dir}",
            "data.max_examples=3",
            "rollout.max_new_tokens=6",
            "rollout.max_turns=2",
            "--dataset",
            str(hotpot),
            "--own-corpus",
            "--method",
            "rag",
            "--method",
            "agent",
            "--out",
            str(tmp_path / "ev"),
            "--judge-url",
            f"http://127.0.0.1:{server.server_port}/v1",
        )
    finally:
        server.shutdown()
    assert res.returncode == 0, res.stderr[-2000:]
    for method in ("rag", "agent"):
        table = json.loads((tmp_path / "ev" / f"{method}.json").read_text())
        assert sum(m["n"] for g, m in table.items() if g != "all") == 3.0  # rows per question type
        rows = [json.loads(line) for line in (tmp_path / "ev" / f"{method}.jsonl").read_text().splitlines()]
        assert len(rows) == 3 and all(r["spans"] for r in rows)
        # rows without an answer are judged 0 without a request; every judged row says "no" here
        assert all(r["judge"] == 0.0 for r in rows) and all(m["judge"] == 0.0 for m in table.values())
    assert "| judge |" in (tmp_path / "ev" / "results.md").read_text()
    answered = sum(r["answer"] is not None for m in ("rag", "agent") for r in rows_of(tmp_path / "ev" / m))
    assert len(_NoJudge.seen) == answered  # unanswered rows are judged 0 without a request
    rag_rows = (tmp_path / "ev" / "rag.jsonl").read_text()
    assert '"searches": 0' in rag_rows
    paired = (tmp_path / "ev" / "paired.md").read_text()  # two arms: the paired comparison, agent vs rag
    assert "agent − rag" in paired and "[95 % CI]" in paired
    assert len(json.loads((tmp_path / "ev" / "paired.json").read_text())["scores"]) >= 4  # 2 arms x >= 2 groups

    bad = run("eval", f"model.path={tiny_dir}", "--dataset", str(tmp_path / "missing.jsonl"))
    assert bad.returncode == 2


def test_compare_finished_evaluations(tmp_path: Path) -> None:
    def write(name: str, ems: list[int]) -> Path:
        path = tmp_path / f"{name}.jsonl"
        rows = [{"id": f"q{i}", "dataset": "w", "group": "2hop", "em": em} for i, em in enumerate(ems)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    sft, rl0, rl1 = write("sft", [0, 0, 1, 1]), write("rl0", [1, 1, 1, 0]), write("rl1", [1, 0, 1, 1])
    res = run("compare", str(sft), f"rl={rl0},{rl1}", "--bootstrap", "200")
    assert res.returncode == 0, res.stderr
    # two RL runs against one SFT run: fixed (2 + 1) / 2, broken (1 + 0) / 2
    assert "| w | 2hop | rl − sft | 4 | 0.250 [" in res.stdout and "| 1.5 | 0.5 |" in res.stdout
    bad = run("compare", str(sft), str(tmp_path / "none.jsonl"))
    assert bad.returncode == 2 and "not found" in bad.stderr
    bad_metric = run("compare", str(sft), str(rl0), "--metric", "acc")
    assert bad_metric.returncode == 2 and "unknown metric" in bad_metric.stderr


def test_interrupt_handler_raises_a_keyboard_interrupt_subclass_and_respects_ignore() -> None:
    """The CLI's SIGINT handler (see ``searchrl.cli.common.Interrupted`` for why a subclass)."""
    code = """
import os, signal, sys
from searchrl.cli.common import Interrupted, install_interrupt_handler
install_interrupt_handler()
try:
    os.kill(os.getpid(), signal.SIGINT)
    for _ in range(10**7):
        pass
except KeyboardInterrupt as exc:
    assert type(exc) is Interrupted, type(exc)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    install_interrupt_handler()  # an ignored SIGINT (a background job) stays ignored
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    os.kill(os.getpid(), signal.SIGINT)
    sys.exit(130)
sys.exit(1)
"""
    # a shell's background job (`cmd &`, as CI may run us) ignores SIGINT and children inherit that;
    # a terminal's Ctrl-C reaches a process with the default disposition, so give the child that
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert done.returncode == 130, done.stderr

"""The static HTML report of a run folder, built from a real run: two training steps of a tiny model on
the synthetic world, a real evaluation of it and a scripted-policy evaluation that searches. The browser
tests open the page in headless Chromium and read back whether its scripts ran without error."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from searchrl.config import load_config, save_config
from searchrl.data.world import default_world
from searchrl.eval.run import evaluate, write_results
from searchrl.metrics import read_metrics
from searchrl.models import tiny_model
from searchrl.report import html_page, plot_keys, write_report
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.rollout.build import build_rollout
from searchrl.rollout.hf import HFGenerator
from searchrl.rollout.scripted import ScriptedBackend
from searchrl.trainer.loop import Trainer

SCRIPTED, TINY = "agent_scripted", "agent_tiny"


@pytest.fixture(scope="module")
def run_dir(smol_tokenizer, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A run folder as `searchrl train` and the evaluation leave it, plus a summary.json."""
    run = tmp_path_factory.mktemp("run")
    overrides = ["train.steps=2", "train.lora_r=0", "train.prompts_per_step=2", "train.mini_batch=4"]
    overrides += ["train.micro_batch=2", "train.kl_coef=0.01", "rollout.group_size=2", "rollout.max_new_tokens=8"]
    cfg = load_config(None, [*overrides, "rollout.max_turns=2", f"output_dir={run}"])
    save_config(cfg, run)
    world = default_world()
    retriever = BM25Retriever.build(world.passages)
    model = tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0)
    t0 = time.perf_counter()
    Trainer(cfg, model, smol_tokenizer, retriever, world.questions["train"][:8], run).fit()
    t1 = time.perf_counter()
    by_type = {t: [q for q in world.questions["test"] if q.metadata["type"] == t] for t in ("1hop", "2hop")}
    test = by_type["1hop"][:2] + by_type["2hop"][:2]
    engine = build_rollout(cfg, HFGenerator(model, smol_tokenizer), retriever, smol_tokenizer)
    tiny = evaluate("agent", test, engine)
    scripts = [
        [f"<search>{ex.question}</search>", f"<answer>{ex.answers[0] if i < 2 else 'no'}</answer>"]
        for i, ex in enumerate(test)
    ]
    backend = ScriptedBackend(smol_tokenizer, scripts)
    roomy = build_rollout(cfg, backend, retriever, smol_tokenizer).with_limits(max_turns=3, max_new_tokens=48)
    scripted = evaluate("agent", test, roomy)  # room for the scripted search and answer turns
    tables = {TINY: write_results(run / "eval", TINY, tiny), SCRIPTED: write_results(run / "eval", SCRIPTED, scripted)}
    summary = {"tables": tables, "timings_s": {"rl": t1 - t0, "eval": time.perf_counter() - t1}}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def viewer_bodies(page: str) -> list[str]:
    return re.findall(r'<details class="ex".*?</details>', page, re.DOTALL)


def test_report_of_a_real_run(run_dir: Path) -> None:
    out = write_report(run_dir)
    assert out == run_dir / "report.html"
    page = out.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)=", page)  # self-contained: nothing fetched

    keys = plot_keys(read_metrics(run_dir / "metrics.jsonl"))
    for key in ("reward/mean", "reward/em", "rollout/searches", "rollout/response_tokens", "actor/approx_kl"):
        assert key in keys
    assert "perf/time_step" in keys and "actor/kl" in keys
    assert page.count('<svg class="chart"') == len(keys)
    assert all(f'data-metric="{k}"' in page for k in keys)

    tables = {label: json.loads((run_dir / "eval" / f"{label}.json").read_text()) for label in (TINY, SCRIPTED)}
    rows = [(label, group) for label, t in tables.items() for group in t]
    assert page.count('<tr class="result">') == len(rows)
    positions = [page.index(f"<td>{label}</td><td>{group}</td>") for label, group in rows]
    assert positions == sorted(positions)  # summary.json's order (tiny first), not file-name order
    assert tables[SCRIPTED]["all"]["em"] > tables[TINY]["all"]["em"]
    assert re.search(r"<td>agent_scripted</td><td>all</td><td>[^<]*</td><td class=best>", page)

    bodies = viewer_bodies(page)
    assert len(bodies) == 4 + 4 + 2  # two evaluations of 4 questions, two training samples
    assert all(tag not in body for body in bodies for tag in ("<search>", "<answer>", "<information>", "<think>"))
    assert "&lt;search&gt;" in page and '<mark class="query">&lt;search&gt;' in page
    assert '<div class="injected">' in page and "retrieved — masked from loss" in page
    assert 'data-method="training samples"' in page and "model.path" in page
    assert re.search(r"<b>timings:</b> rl \d+\.\d s, eval \d+\.\d s", page)


def test_the_runs_paired_comparison_is_on_the_page(tmp_path: Path) -> None:
    paired = [
        {"group": "all", "diff": 0.12, "low": 0.03, "high": 0.21, "fixed": 15, "broken": 3},
        {"group": "2hop", "diff": "n/a"},  # malformed: skipped, not rendered as a number
    ]
    (tmp_path / "summary.json").write_text(json.dumps({"paired": paired, "paired_title": "after RL − before"}))
    page = write_report(tmp_path, tmp_path / "out.html").read_text()
    section = page[page.index('id="paired"') :]
    assert "after RL − before" in page and "+0.120" in section and "[+0.030, +0.210]" in section
    assert "15 / 3" in section and section.count('class="paired"') == 1


def test_injected_class_only_with_injected_spans(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    row = {"id": "a", "question": "Q <b>?", "golds": ["x"], "answer": "x", "em": 1.0, "response": "r"}
    row["spans"] = [[True, "<search>q</search>"], [True, "<answer>x</answer>"]]
    (tmp_path / "eval" / "m.jsonl").write_text(json.dumps(row) + "\n")
    page = write_report(tmp_path).read_text()
    assert '<div class="injected">' not in page and '<mark class="answer">&lt;answer&gt;x' in page
    assert "Q &lt;b&gt;?" in page and "Q <b>?" not in page


def test_missing_parts(tmp_path: Path) -> None:
    page = write_report(tmp_path, tmp_path / "out.html").read_text()
    assert "no training metrics" in page and "no evaluation results" in page and "no trajectories" in page
    assert 'id="paired"' not in page
    assert "no config.yaml" in page
    with pytest.raises(FileNotFoundError, match="not a directory"):
        write_report(tmp_path / "nope")


def test_malformed_lines_are_skipped_and_counted(run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("ckpt-*", "tb"))
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 3, "reward/me\n[1, 2]\n')  # a torn last write and a non-object
    with (run / "eval" / f"{TINY}.jsonl").open("a") as fh:
        fh.write("not json\n")
    (run / "eval" / "broken.json").write_text("{")
    page = write_report(run).read_text()
    assert "metrics.jsonl: 2 unreadable line(s) skipped" in page
    assert f"eval/{TINY}.jsonl: 1 unreadable line(s) skipped" in page and "broken.json: unreadable JSON" in page
    assert page.count('<svg class="chart"') == len(plot_keys(read_metrics(run_dir / "metrics.jsonl")))


def test_single_resumed_step_and_rows_without_spans(tmp_path: Path) -> None:
    metrics = [{"step": 1, "reward/mean": 0.25}, {"step": 1, "reward/mean": 0.75}]  # a resumed run rewrote step 1
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    sample = {"step": 1, "name": "rollout/sample", "text": "<search>x</search> <answer>Oss</answer>", "golds": ["Oss"]}
    (tmp_path / "samples.jsonl").write_text(json.dumps(sample) + "\n")
    page = write_report(tmp_path).read_text()
    assert page.count('<svg class="chart"') == 1 and page.count("<circle") == 1 and "(last 0.75)" in page
    assert '<pre class="plain">' in page and "<search>" not in page and 'data-correct="1"' in page


def test_script_data_cannot_close_its_script(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    row = {"id": "a", "group": "</script><script>window.x=1</script>", "question": "q", "response": "r"}
    (tmp_path / "eval" / "m.jsonl").write_text(json.dumps(row) + "\n")
    page = write_report(tmp_path).read_text()
    assert "<script>window.x" not in page and page.count("</script>") == page.count("<script")


# -- in a real browser -----------------------------------------------------------------------------
def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium not found: run `make browser` (scripts/install_browser.sh) to install it")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def script_errors(dom: str) -> int:
    """The count the page's last script wrote; fails when the page never finished rendering."""
    assert 'data-rendered="1"' in dom, dom[-2000:]
    found = re.search(r'id="script-errors"[^>]*>(\d+)<', dom)
    assert found, dom[-2000:]
    return int(found.group(1))


@pytest.mark.browser
def test_report_renders_in_chromium(run_dir: Path, tmp_path: Path) -> None:
    report = write_report(run_dir, tmp_path / "report.html")
    dom = chromium(report, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert script_errors(dom.stdout) == 0
    assert re.search(r'id="f-count">\d+ shown<', dom.stdout) and "<option" in dom.stdout  # the filters were built

    shots = Path(os.environ.get("SEARCHRL_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    png = shots / "report.png"
    shot = chromium(report, tmp_path / "profile", f"--screenshot={png}", "--window-size=1280,2000", "--hide-scrollbars")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert png.is_file() and png.stat().st_size > 10_000


@pytest.mark.browser
def test_broken_script_is_detected(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(html_page("broken", "<p>x</p>", "undefinedFn();"))
    dom = chromium(page, tmp_path / "profile", "--dump-dom")
    assert script_errors(dom.stdout) == 1

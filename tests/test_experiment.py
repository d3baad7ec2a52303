"""Experiment files: validation errors, the findings pages from fabricated finished runs, and a 2 arms x
2 seeds x 1 step run of the real command with a tiny model (warm start, RL, held-out eval, findings
page), then a rerun that must redo nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from searchrl.config import ConfigError
from searchrl.eval.paired import Interval, PairedRow, compare_arms
from searchrl.experiment.findings import CURVES, verdict, write_findings
from searchrl.experiment.runner import run_dir_of
from searchrl.experiment.spec import ExperimentSpec, load_spec


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
        (lambda d: d["arms"][0].update(curriculum=True), "asks for the curriculum"),
        (lambda d: d.update(curriculum={"k": 4, "band": [3, 5]}), "curriculum.band"),
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
    assert verdict(row(0.01, 0.2), "greater", seeds=1) == "preliminary (1 seed): reproduced"
    assert verdict(row(-0.05, 0.2), "greater", seeds=2) == "preliminary (2 seeds): inconclusive"


HOSTILE = "<script>alert(1)</script>"


def fake_run(run_dir: Path, right: set[int], kl: float, report: bool) -> None:
    """A run folder as the runner leaves it: held-out rows (EM 1 on the questions in ``right``),
    two logged steps, timing.json, and optionally the run's own report.html."""
    (run_dir / "eval").mkdir(parents=True)
    rows = [
        {"id": f"q{i}", "dataset": "world", "group": ("1hop", "2hop")[i % 2], "em": float(i in right)}
        | {"f1": float(i in right), "answer": "x" if i in right else None}
        for i in range(12)
    ]
    (run_dir / "eval" / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    steps = [{"step": s, "reward/mean": 0.1 * s, "actor/kl": kl * s, "rollout/response_tokens": 20.0} for s in (1, 2)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in steps))
    (run_dir / "timing.json").write_text(json.dumps({"train_s": 61.0, "eval_s": 9.0}))
    if report:
        (run_dir / "report.html").write_text("<html></html>")


def test_findings_html_from_fabricated_runs(tmp_path: Path) -> None:
    data = spec_dict(tmp_path)
    data["name"] = f"smoke {HOSTILE}"
    data["arms"].append({"name": "later", "steps": 1})  # type: ignore[attr-defined]
    data["claims"] = [  # reproduced, not reproduced, and one whose arm has no finished run
        {"id": "F2", "title": HOSTILE, "before": "unmasked", "after": "masked", "metric": "em"},
        {"id": "F7", "before": "masked", "after": "unmasked", "metric": "em"},
        {"id": "F9", "before": "masked", "after": "later", "metric": "em"},
        {"id": "F8", "before": "unmasked", "after": "masked", "metric": "em", "group": "3hop"},  # no such group
    ]
    spec = ExperimentSpec.model_validate(data)
    out = tmp_path / "out"
    for seed in (0, 1):
        fake_run(run_dir_of(out, "masked", seed), set(range(10 - seed)), 0.01, report=seed == 0)
        fake_run(run_dir_of(out, "unmasked", seed), {0, 1 + seed}, 0.05, report=False)
    write_findings(spec, out)

    page = (out / "findings.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    rows = {m[1]: m[0] for m in re.finditer(r"<tr><td>(F\d)\b.*?</tr>", page)}
    prelim = "preliminary (2 seeds): "  # fewer than 3 seeds
    assert f"<td>{prelim}reproduced</td>" in rows["F2"] and f"<td>{prelim}not reproduced</td>" in rows["F7"]
    assert "<td>not run</td>" in rows["F9"]
    assert "refused: no group" in rows["F8"] and "3hop" in rows["F8"]  # never another group's verdict
    summary = json.loads((out / "summary.json").read_text())
    f2 = summary["verdicts"][0]
    assert f"[{f2['low']:+.3f}, {f2['high']:+.3f}]" in rows["F2"]  # the claim's interval
    heldout = {
        arm: [
            [json.loads(x) for x in (run_dir_of(out, arm, s) / "eval/heldout.jsonl").read_text().splitlines()]
            for s in (0, 1)
        ]
        for arm in ("masked", "unmasked")
    }
    scores, paired = compare_arms(heldout, metric="em", n_boot=spec.bootstrap)
    assert all(f"<td>{s.score.text()}</td>" in page for s in scores)  # every arm's interval
    assert all(f"<td>{p.diff.text()}</td>" in page for p in paired) and "<td>unmasked − masked</td>" in page
    assert page.count("<svg") == len(CURVES) and "<polyline" in page and "<img" not in page  # the curves, inlined
    assert '<a href="arms/masked/seed0/report.html">report</a>' in page
    assert page.count("report.html") == 1  # no link where a run has no report
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page

    markdown = (out / "findings.md").read_text()  # the same sections
    assert (
        "| F2 <script>" in markdown
        and "| preliminary (2 seeds): reproduced |" in markdown
        and "| not run |" in markdown
    )
    assert "![train reward (sampled)](curves/reward_mean.svg)" in markdown
    assert "[report](arms/masked/seed0/report.html)" in markdown
    assert "| masked | 0 | – | – |" in markdown  # rows without audit or text: nothing to audit, said so


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
    audit = page.split("## Behaviour audit (held-out)")[1].split("##")[0]
    assert "| masked | 12 |" in audit and "| unmasked | 12 |" in audit and "answer_without_search" in audit
    svg = (out / "curves" / "reward_mean.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 4  # 2 arms x 2 seeds
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == {"masked": 2, "unmasked": 2}
    report = (out / "arms" / "unmasked" / "seed1" / "report.html").read_text()  # each run's own page, linked
    assert "<svg" in report and "arms/unmasked/seed1/report.html" in (out / "findings.html").read_text()
    calls = ("reproduced", "not reproduced", "inconclusive")
    assert summary["verdicts"][0]["verdict"] in [f"preliminary (2 seeds): {c}" for c in calls]

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
    if spec.data is None:
        assert all(n >= 100 for n in spec.held_out.per_type.values())  # >= 100 held-out questions per type
    else:  # real data (F7): 100 in all, the group its claims are read from
        assert sum(spec.held_out.per_type.values()) >= 100 and {c.group for c in spec.claims} >= {"all"}


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "recipes" / "demonstrations").glob("*.yaml")))
def test_shipped_demonstration_files_load(path: Path) -> None:
    assert load_spec(path).arms  # one-seed demonstrations (not claims): they must load, every arm's config too


def test_a_run_the_watchdog_stops_is_evaluated_where_it_stopped(tiny_model_dir: Path, tmp_path: Path) -> None:
    """max_trips reached: the arm keeps the restored policy (its last passed checkpoint), says why in
    watchdog_stop.txt and still gets its held-out rows, so the experiment goes on to the next arm."""
    from searchrl.experiment.runner import Experiment

    data = spec_dict(tiny_model_dir)
    data.update(seeds=[0], warm_start=None, claims=[])
    trip = ["train.log_entropy=true", "train.watchdog.entropy_min=1000", "train.watchdog.max_trips=1"]
    data["arms"] = [{"name": "stopped", "init": "base", "steps": 3, "overrides": trip}, {"name": "next", "steps": 0}]
    data["arms"][1]["init"] = "base"  # type: ignore[index]
    spec = ExperimentSpec.model_validate(data)
    logged: list[str] = []
    Experiment.prepare(spec, tmp_path / "out", log=logged.append).run()
    run = run_dir_of(tmp_path / "out", "stopped", 0)
    assert "entropy_floor" in (run / "watchdog_stop.txt").read_text()
    assert any("stopped at step 0" in line for line in logged), logged
    assert len((run / "eval/heldout.jsonl").read_text().splitlines()) == 6
    assert (run_dir_of(tmp_path / "out", "next", 0) / "eval/heldout.jsonl").is_file()
    steps = (run / "metrics.jsonl").read_text()
    (run / "eval/heldout.jsonl").unlink()  # interrupted after the stop, before its rows: the stop must hold
    Experiment.prepare(spec, tmp_path / "out", log=logged.append).run()
    assert (run / "metrics.jsonl").read_text() == steps and any("stopped it before" in x for x in logged)
    assert len((run / "eval/heldout.jsonl").read_text().splitlines()) == 6


def test_a_parent_run_without_checkpoints_is_trained_again_for_its_child(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A fresh checkout keeps a finished run's committed rows, not its checkpoints: an arm that starts from
    that run (stage 2 from stage 1) trains it again instead of failing, and the parent's rows stay."""
    import shutil

    from searchrl.experiment.runner import Experiment

    data = spec_dict(tiny_model_dir)
    data.update(seeds=[0], warm_start=None, claims=[])
    data["arms"] = [{"name": "stage1", "init": "base", "steps": 1}, {"name": "stage2", "init": "stage1", "steps": 1}]
    spec = ExperimentSpec.model_validate(data)
    out = tmp_path / "out"
    Experiment.prepare(spec, out, log=print).run(only=["stage1"])
    parent = run_dir_of(out, "stage1", 0)
    rows = (parent / "eval/heldout.jsonl").read_text()
    for ckpt in parent.glob("ckpt-*"):
        shutil.rmtree(ckpt)
    (parent / "latest").unlink()
    logged: list[str] = []
    Experiment.prepare(spec, out, log=logged.append).run()
    assert any("rows but no checkpoint" in line for line in logged), logged
    assert (parent / "retrained.txt").is_file() and list(parent.glob("ckpt-*"))
    assert (parent / "eval/heldout.jsonl").read_text() == rows
    assert len((run_dir_of(out, "stage2", 0) / "eval/heldout.jsonl").read_text().splitlines()) == 6

"""Sampled held-out evaluation (avg@k): one row per question holding the means over k sampled answers,
so arms still pair by question; the `searched` metric reads the share of samples that searched; an
experiment with held_out.samples writes eval/sampled.jsonl and judges `decoding: sampled` claims on it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from searchrl.eval.manifest import Manifest
from searchrl.eval.paired import compare_arms
from searchrl.eval.run import EvalRow, mean_row
from searchrl.experiment.findings import write_findings
from searchrl.experiment.runner import Experiment, run_dir_of
from searchrl.experiment.spec import ExperimentSpec
from test_experiment import spec_dict


def row(qid: str, em: float, searches: int) -> EvalRow:
    return EvalRow(qid, "world", "1hop", "q?", ["a"], "a", em, em, em, searches, "answer", "", [])


def test_mean_row_averages_the_samples_and_counts_the_searched_share() -> None:
    got = mean_row([row("q1", 1.0, 2), row("q1", 0.0, 0), row("q1", 0.0, 1), row("q1", 1.0, 0)])
    assert (got.id, got.samples, got.em, got.f1, got.searches, got.searched) == ("q1", 4, 0.5, 0.5, 0.75, 0.5)


def test_searched_is_the_sampled_share_when_rows_have_one() -> None:
    greedy = [row(f"q{i}", 0.0, 1) for i in range(4)]  # every greedy answer searched
    sampled = [replace(r, samples=4, searched=0.25) for r in greedy]  # one sample in four did
    _, paired = compare_arms({"greedy": [greedy], "sampled": [sampled]}, metric="searched", n_boot=200)
    assert paired[0].diff.mean == pytest.approx(-0.75)


def test_manifests_before_decoding_read_as_greedy_and_decodings_are_not_compared() -> None:
    data = json.loads(Manifest("c", "i", {}, "p", "agent", "h", {}, "q", 1, "m", "k", 0, "v").to_json())
    del data["decoding"]
    old = Manifest.from_dict(data)
    assert old.decoding == "greedy"
    assert replace(old, decoding="avg@4 t=0.9").compared("em")["decoding"] != old.compared("em")["decoding"]


def test_a_sampled_claim_needs_samples(tiny_model_dir: Path) -> None:
    data = spec_dict(tiny_model_dir)
    data["claims"] = [
        {"id": "F4a", "before": "unmasked", "after": "masked", "metric": "searched", "decoding": "sampled"}
    ]
    with pytest.raises(ValueError, match=r"held_out\.samples"):
        ExperimentSpec.model_validate(data)


def test_an_experiment_writes_sampled_rows_and_judges_a_sampled_claim(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = spec_dict(tiny_model_dir)
    data.update(seeds=[0], warm_start=None)
    data["held_out"] = {"split": "test", "per_type": {"1hop": 3, "2hop": 3}, "samples": 2}
    data["arms"] = [{"name": "base", "init": "base", "steps": 0}, {"name": "rl", "init": "base", "steps": 1}]
    data["claims"] = [
        {"id": "S", "before": "base_agent", "after": "rl", "metric": "searched", "decoding": "sampled"},
        {"id": "G", "before": "base_agent", "after": "rl", "metric": "em"},
    ]
    data["arms"][0]["name"] = "base_agent"  # type: ignore[index]
    spec = ExperimentSpec.model_validate(data)
    out = tmp_path / "out"
    Experiment.prepare(spec, out, log=print).run()
    write_findings(spec, out)
    for arm in ("base_agent", "rl"):
        run = run_dir_of(out, arm, 0)
        rows = [json.loads(x) for x in (run / "eval/sampled.jsonl").read_text().splitlines()]
        assert len(rows) == 6 and {r["samples"] for r in rows} == {2}
        assert all(r["searched"] in (0.0, 0.5, 1.0) for r in rows)
        manifest = json.loads((run / "eval/sampled.manifest.json").read_text())
        assert manifest["decoding"].startswith("avg@2 t=")
        assert json.loads((run / "eval/heldout.manifest.json").read_text())["decoding"] == "greedy"
    verdicts = {v["claim"]: v for v in json.loads((out / "summary.json").read_text())["verdicts"]}
    assert verdicts["S"]["metric"] == "searched, sampled" and verdicts["S"]["n"] == 6
    assert verdicts["G"]["metric"] == "em" and verdicts["G"]["n"] == 6
    assert "greedy evaluation, and avg@2 at each arm's rollout temperature" in (out / "findings.md").read_text()
    timing = json.loads((run_dir_of(out, "rl", 0) / "timing.json").read_text())
    assert timing["sampled_eval_s"] > 0 and timing["eval_s"] > 0  # timed apart
    assert (
        f"| rl | seed0 | {timing['train_s']:.0f} | {timing['eval_s']:.0f} + {timing['sampled_eval_s']:.0f} sampled |"
        in (out / "findings.md").read_text()
    )
    before = (run_dir_of(out, "rl", 0) / "eval/sampled.jsonl").stat().st_mtime_ns
    Experiment.prepare(spec, out, log=print).run()  # finished: nothing is evaluated again
    assert (run_dir_of(out, "rl", 0) / "eval/sampled.jsonl").stat().st_mtime_ns == before

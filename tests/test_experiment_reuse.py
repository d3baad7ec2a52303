"""Reusing finished runs: another experiment's identical arm is copied with its held-out rows, a test run
reuses its calibration's training (and curriculum record) and evaluates it again, and a run trained
differently is never copied."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from searchrl.config import ConfigError
from searchrl.experiment.findings import write_findings
from searchrl.experiment.reuse import fingerprint, load_source, why_not_same_training
from searchrl.experiment.runner import Experiment, run_dir_of
from searchrl.experiment.spec import ExperimentSpec, load_spec
from searchrl.retrieval.bm25_engines import DEFAULT_BM25_ENGINE


def spec_dict(model: Path, name: str, arms: list[dict[str, Any]], reuse: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "world": {"seed": 2, "size": "tiny"},
        "held_out": {"split": "test", "per_type": {"1hop": 2}},
        "seeds": [0],
        "config": {
            "model": {"path": str(model)},
            "rollout": {"max_new_tokens": 4, "max_turns": 2, "group_size": 2},
            "train": {"prompts_per_step": 2, "mini_batch": 4, "micro_batch": 2, "lora_r": 4, "checkpoint_every": 1},
        },
        "warm_start": {"per_type": {"1hop": 2}},
        "rl_types": ["1hop"],
        "arms": arms,
        "reuse": reuse or [],
    }


GRPO = {"name": "grpo", "steps": 1}


def run(data: dict[str, Any], out: Path, calibrate: bool = False) -> tuple[Experiment, list[str]]:
    spec = ExperimentSpec.model_validate(data)
    if calibrate:
        spec = spec.for_calibration()
    log: list[str] = []
    exp = Experiment.prepare(spec, out, log=log.append)
    exp.run()
    return exp, log


@pytest.fixture(scope="module")
def first(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished experiment (warm start, one GRPO step, held-out rows) that the tests copy from."""
    out = tmp_path_factory.mktemp("reuse") / "first"
    run(spec_dict(tiny_model_dir, "first", [GRPO]), out)
    return out


def test_an_identical_arm_of_another_experiment_is_copied_with_its_rows(
    tiny_model_dir: Path, tmp_path: Path, first: Path
) -> None:
    unmasked = {"name": "unmasked", "steps": 1, "overrides": ["train.mask_retrieved_tokens=false"]}
    second = tmp_path / "second"
    exp, log = run(spec_dict(tiny_model_dir, "second", [GRPO, unmasked], reuse=[str(first)]), second)
    assert any("warm start: copied" in m for m in log) and not any(m.startswith("warm start: 2 gold") for m in log)
    assert fingerprint(second / "warm_start") == fingerprint(first / "warm_start") is not None
    mine, theirs = run_dir_of(second, "grpo", 0), run_dir_of(first, "grpo", 0)
    assert json.loads((mine / "reused_from.json").read_text()) == {"from": str(theirs), "held_out_rows": True}
    for name in ("eval/heldout.jsonl", "metrics.jsonl"):
        assert (mine / name).read_bytes() == (theirs / name).read_bytes()
    assert not any("grpo seed 0: step" in m for m in log)  # not trained again
    assert any("unmasked seed 0: step 1/1" in m for m in log)  # the arm the source does not have is trained
    assert not (run_dir_of(second, "unmasked", 0) / "reused_from.json").exists()
    cpu = write_findings(exp.spec, second).read_text().split("## CPU per run")[1]
    assert "| grpo | seed0 |" in cpu and "run and rows from first/arms/grpo/seed0" in cpu


def test_a_run_with_sampled_evaluation_added_keeps_the_greedy_rows_and_samples_here(
    tiny_model_dir: Path, tmp_path: Path, first: Path
) -> None:
    data = spec_dict(tiny_model_dir, "sampled", [GRPO], reuse=[str(first)])
    data["held_out"]["samples"] = 2
    _, log = run(data, tmp_path / "sampled")
    mine, theirs = run_dir_of(tmp_path / "sampled", "grpo", 0), run_dir_of(first, "grpo", 0)
    assert json.loads((mine / "reused_from.json").read_text())["held_out_rows"] is True
    assert (mine / "eval" / "heldout.jsonl").read_bytes() == (theirs / "eval" / "heldout.jsonl").read_bytes()
    rows = [json.loads(x) for x in (mine / "eval" / "sampled.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["samples"] == 2 for r in rows)
    assert not any("grpo seed 0: step" in m for m in log)  # neither trained nor evaluated greedily again
    assert not any("held-out EM" in m for m in log)
    timing = json.loads((mine / "timing.json").read_text())  # the source's seconds, and the sampled ones made here
    assert (
        timing["sampled_eval_s"] > 0 and timing["eval_s"] == json.loads((theirs / "timing.json").read_text())["eval_s"]
    )
    # a source with avg@k rows of another k: its greedy rows come along, its sampled rows do not
    data4 = {
        **data,
        "name": "sampled4",
        "held_out": {**data["held_out"], "samples": 3},
        "reuse": [str(tmp_path / "sampled")],
    }
    run(data4, tmp_path / "sampled4")
    again = run_dir_of(tmp_path / "sampled4", "grpo", 0)
    assert json.loads((again / "reused_from.json").read_text())["from"] == str(mine)
    assert {json.loads(x)["samples"] for x in (again / "eval" / "sampled.jsonl").read_text().splitlines()} == {3}


def test_a_test_run_reuses_its_calibrations_training_and_evaluates_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = spec_dict(tiny_model_dir, "exp", [GRPO, {"name": "cur", "steps": 1, "curriculum": True}])
    data["curriculum"] = {"candidates": 4, "k": 2, "band": [0, 2], "seed": 3}
    run(data, tmp_path / "exp_dev", calibrate=True)
    _, log = run(data, tmp_path / "exp")
    record = json.loads((tmp_path / "exp" / "curriculum" / "warm_start.json").read_text())  # not rolled out again
    assert record["copied_from"] == str(tmp_path / "exp_dev" / "curriculum" / "warm_start.json")
    assert record["start"] == str(tmp_path / "exp" / "warm_start" / "ckpt-000000")
    assert any("curriculum from warm_start: copied" in m for m in log)
    assert (
        json.loads((run_dir_of(tmp_path / "exp", "cur", 0) / "reused_from.json").read_text())["held_out_rows"] is False
    )
    mine, dev = run_dir_of(tmp_path / "exp", "grpo", 0), run_dir_of(tmp_path / "exp_dev", "grpo", 0)
    assert json.loads((mine / "reused_from.json").read_text())["held_out_rows"] is False
    assert (mine / "metrics.jsonl").read_bytes() == (dev / "metrics.jsonl").read_bytes()
    assert (mine / "timing.source.json").is_file() and (mine / "eval" / "heldout.jsonl").is_file()
    held = {json.loads(x)["id"] for x in (mine / "eval" / "heldout.jsonl").read_text().splitlines()}
    assert held.isdisjoint(json.loads(x)["id"] for x in (dev / "eval" / "heldout.jsonl").read_text().splitlines())
    assert not any("grpo seed 0: step" in m for m in log) and any("held-out EM" in m for m in log)


def test_a_run_trained_differently_is_not_copied(tiny_model_dir: Path, tmp_path: Path, first: Path) -> None:
    data = spec_dict(tiny_model_dir, "first", [GRPO])
    other = json.loads(json.dumps(data))
    other["config"]["train"]["lr"] = 3e-4
    a, b = ExperimentSpec.model_validate(data), ExperimentSpec.model_validate(other)
    assert why_not_same_training(a, b, "grpo") == "its config differs"
    longer = ExperimentSpec.model_validate({**data, "arms": [{"name": "grpo", "steps": 2}]})
    assert why_not_same_training(a, longer, "grpo") == "its arm 'grpo' differs"
    assert why_not_same_training(a, ExperimentSpec.model_validate({**data, "arms": [{"name": "x"}]}), "grpo") == (
        "it has no arm 'grpo'"
    )
    chain = ExperimentSpec.model_validate({**data, "arms": [GRPO, {"name": "more", "init": "grpo", "steps": 1}]})
    assert why_not_same_training(chain, chain, "more") == "arm 'more' starts from another arm"
    # a source whose file was edited after its run finished: its spec.yaml matches, the run's config.yaml does not
    edited = tmp_path / "edited"
    shutil.copytree(first, edited)
    source = edited / "arms" / "grpo" / "seed0" / "config.yaml"
    source.write_text(source.read_text().replace("lr: 0.0001", "lr: 0.0003"))
    _, log = run({**data, "name": "third", "reuse": [str(edited)]}, tmp_path / "third")
    assert not (run_dir_of(tmp_path / "third", "grpo", 0) / "reused_from.json").exists()
    assert any("warm start: copied" in m for m in log) and any("grpo seed 0: step 1/1" in m for m in log)


def test_a_source_saved_before_the_engine_switch_reads_as_numba(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Specs saved before `sparse` became the default name no engine and ran numba (the runner ignored the
    field); every spec now states its engine, so a recipe that pins numba still reuses those runs and one
    that takes the default does not."""
    data = spec_dict(tiny_model_dir, "old", [GRPO])
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "spec.yaml").write_text(yaml.safe_dump(data))  # as runners wrote it then
    legacy = load_source(tmp_path / "old")
    assert legacy is not None and legacy.config["retrieval"] == {"bm25_engine": "numba"}
    pinned = json.loads(json.dumps(data))
    pinned["config"]["retrieval"] = {"bm25_engine": "numba"}
    assert why_not_same_training(ExperimentSpec.model_validate(pinned), legacy, "grpo") is None
    today = ExperimentSpec.model_validate(data)
    assert today.config["retrieval"] == {"bm25_engine": DEFAULT_BM25_ENGINE} and DEFAULT_BM25_ENGINE != "numba"
    assert why_not_same_training(today, legacy, "grpo") == "its config differs"
    assert "retrieval" not in data["config"]  # the caller's tree is not modified
    overridden = {**data, "arms": [{"name": "grpo", "steps": 1, "overrides": ["retrieval.bm25_engine=numba"]}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(overridden))
    with pytest.raises(ConfigError, match=r"overrides retrieval\.bm25_engine"):
        load_spec(path)


def test_the_config_picks_the_bm25_engine_of_an_experiment_and_of_the_cli(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`retrieval.bm25_engine` reaches the retriever the runner and the CLI build over a world (before the
    switch to sparse both built the default engine whatever the config said)."""
    from searchrl.cli.common import retriever_for
    from searchrl.config import Config

    data = spec_dict(tiny_model_dir, "pinned", [GRPO])
    data["config"]["retrieval"] = {"bm25_engine": "numba"}
    pinned = Experiment.prepare(ExperimentSpec.model_validate(data), tmp_path / "pinned", log=lambda _: None)
    default = Experiment.prepare(ExperimentSpec.model_validate(spec_dict(tiny_model_dir, "d", [GRPO])), tmp_path / "d")
    assert (pinned.retriever.engine.name, default.retriever.engine.name) == ("numba", DEFAULT_BM25_ENGINE)
    assert yaml.safe_load((tmp_path / "d" / "spec.yaml").read_text())["config"]["retrieval"] == {
        "bm25_engine": DEFAULT_BM25_ENGINE
    }
    numba = Config.model_validate({"retrieval": {"bm25_engine": "numba"}})
    assert retriever_for(numba).engine.name == "numba"  # type: ignore[attr-defined]
    assert retriever_for(Config()).engine.name == DEFAULT_BM25_ENGINE  # type: ignore[attr-defined]

"""The manifest behind every number: each eval row set carries what produced it (``<label>.manifest.json``),
and comparisons refuse arms whose retrieval, metric or question settings differ, naming each difference,
unless told to go ahead; rows from before manifests still compare."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from searchrl.cli import app
from searchrl.config import config_from_dict
from searchrl.data.protocols import PROTOCOLS
from searchrl.eval.manifest import (
    BASE,
    NORMALIZATION,
    REMOTE,
    Manifest,
    differences,
    eval_manifest,
    load_manifest,
    manifest_path,
    prompt_hash,
    questions_hash,
)
from searchrl.eval.paired import ROW_METRICS
from searchrl.eval.run import EvalRow, write_results
from searchrl.experiment.findings import write_findings
from searchrl.experiment.runner import run_dir_of
from searchrl.experiment.spec import ExperimentSpec
from searchrl.report import render_report
from searchrl.retrieval.ondisk.index import passages_fingerprint
from searchrl.types import Passage, QAExample

PASSAGES = [Passage("p1", "Lisbon", "Lisbon is the capital of Portugal."), Passage("p2", "Oslo", "Oslo is in Norway.")]
QUESTIONS = [
    QAExample("w/q1", "What is the capital of Portugal?", ("Lisbon",), "w", metadata={"type": "1hop"}),
    QAExample("w/q2", "Where is Oslo?", ("Norway",), "w", metadata={"type": "1hop"}),
]


class InMemory:  # a retriever holding its passages, as BM25Retriever.build makes one
    def __init__(self, passages: list[Passage]) -> None:
        self.passages = passages


class Store(list[Passage]):  # an index folder's passage store: its fingerprint, and its file in the folder
    def __init__(self, passages: list[Passage], path: Path) -> None:
        super().__init__(passages)
        self.fingerprint, self.path = passages_fingerprint(passages), path


class Remote:  # an http or web retriever: no passages here
    pass


def base_manifest(**changes: Any) -> Manifest:
    cfg = config_from_dict({"model": {"path": "tiny"}, "seed": 3})
    return replace(eval_manifest(cfg, "agent", QUESTIONS, [InMemory(PASSAGES)], None), **changes)


def test_manifest_records_what_produced_the_rows(tmp_path: Path) -> None:
    cfg = config_from_dict({"model": {"path": "tiny"}, "seed": 3, "rollout": {"protocol": "r1_searcher"}})
    ckpt = tmp_path / "ckpt-000004"
    ckpt.mkdir()
    (ckpt / "policy.safetensors").write_bytes(b"weights")
    m = eval_manifest(cfg, "agent", QUESTIONS, [InMemory(PASSAGES)], ckpt)
    assert m.corpus == passages_fingerprint(PASSAGES) and m.index == "in memory: InMemory"
    assert m.retriever == {"kind": "bm25", "topk": 3}
    assert m.protocol == "r1_searcher" and m.prompt == prompt_hash("agent", PROTOCOLS["r1_searcher"])
    assert m.prompt != prompt_hash("agent", PROTOCOLS["search_r1"]) != prompt_hash("rag", PROTOCOLS["search_r1"])
    assert m.metrics["em"] == "squad" and m.metrics["r1_cover_em"] == "r1-searcher"
    assert m.questions == questions_hash(list(reversed(QUESTIONS))) and m.n_questions == 2  # order-free
    assert m.model == "tiny" and m.checkpoint == hashlib.sha256(b"weights").hexdigest() and m.seed == 3
    assert m.version and eval_manifest(cfg, "rag", QUESTIONS, [Remote()], None).checkpoint == BASE

    dense = config_from_dict({"retrieval": {"kind": "dense", "nprobe": 8, "refine": 4, "topk": 5}})
    params = eval_manifest(dense, "agent", QUESTIONS, [Remote()], None).retriever
    assert params["kind"] == "dense" and (params["topk"], params["nprobe"], params["refine"]) == (5, 8, 4)
    remote = eval_manifest(dense, "agent", QUESTIONS, [Remote()], None)
    assert remote.corpus == REMOTE and remote.index.startswith(REMOTE)

    folder = tmp_path / "index"  # an index folder: the store's fingerprint, the hash of the folder's manifest
    folder.mkdir()
    (folder / "manifest.json").write_text('{"kind": "bm25"}')
    stored = eval_manifest(cfg, "agent", QUESTIONS, [InMemory(Store(PASSAGES, folder / "passages.sqlite"))], None)
    assert stored.corpus == m.corpus and stored.index == hashlib.sha256(b'{"kind": "bm25"}').hexdigest()


def test_manifest_keys_cover_every_row_metric() -> None:
    assert set(NORMALIZATION) == set(ROW_METRICS)


def test_manifest_written_beside_the_rows_and_read_back(tmp_path: Path) -> None:
    row = EvalRow("w/q1", "w", "1hop", "q", ["Lisbon"], "Lisbon", 1.0, 1.0, 1.0, 1, "answer", "r", [])
    m = base_manifest()
    ev = tmp_path / "eval"  # a run folder's eval/
    write_results(ev, "agent", [row], manifest=m)
    assert manifest_path(ev / "agent.jsonl") == ev / "agent.manifest.json"
    assert load_manifest(ev / "agent.jsonl") == m
    assert json.loads((ev / "agent.json").read_text()).keys() == {"1hop"}  # the table stays a table
    write_results(ev, "old", [row])
    assert load_manifest(ev / "old.jsonl") is None  # no manifest: rows from before manifests
    (ev / "bad.manifest.json").write_text('{"corpus": 1}')
    with pytest.raises(ValueError, match=r"bad\.manifest\.json"):
        load_manifest(ev / "bad.jsonl")

    page = render_report(tmp_path)  # the report's header shows each evaluation's manifest
    assert 'id="manifests"' in page and m.corpus[:12] in page and "no manifest" in page
    assert "agent.manifest" not in page  # never read as a results table


def write_arm(folder: Path, name: str, ems: list[int], manifest: Manifest | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    rows = [{"id": f"q{i}", "dataset": "w", "group": "2hop", "em": em, "f1": em} for i, em in enumerate(ems)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if manifest is not None:
        manifest_path(path).write_text(manifest.to_json())
    return path


def compare(*args: str) -> Any:
    return CliRunner().invoke(app, ["compare", *args, "--bootstrap", "100"])


def test_mismatched_manifest_comparison_is_refused_with_the_differences_named(tmp_path: Path) -> None:
    m = base_manifest()
    other = replace(m, retriever={"kind": "bm25", "topk": 5}, metrics=m.metrics | {"em": "lowercase only"})
    sft = write_arm(tmp_path, "sft", [0, 0, 1, 1], m)
    rl = write_arm(tmp_path, "rl", [1, 1, 1, 0], replace(other, protocol="r1_searcher", checkpoint="abc", seed=1))
    res = compare(str(sft), str(rl))
    assert res.exit_code == 2
    assert (
        "retriever.topk: 3 (sft), 5 (rl)" in res.output and "metric.em: squad (sft), lowercase only (rl)" in res.output
    )
    assert "protocol" not in res.output and "seed" not in res.output  # what arms are meant to differ in
    assert "--allow-mismatch" in res.output
    assert compare(str(sft), str(rl), "--metric", "f1").exit_code == 2  # topk still differs

    runs = {"sft": m, "rl/s0": m, "rl/s1": replace(m, corpus="c" * 64)}  # a seed of the same arm, too
    assert differences(runs, "em") == [f"corpus: {m.corpus[:12]} (sft, rl/s0), cccccccccccc (rl/s1)"]


def test_allow_mismatch_compares_and_prints_the_manifest_differences(tmp_path: Path) -> None:
    m = base_manifest()
    sft = write_arm(tmp_path, "sft", [0, 0, 1, 1], m)
    rl = write_arm(tmp_path, "rl", [1, 1, 1, 0], replace(m, questions="f" * 64, index="in memory: Dense"))
    res = compare(str(sft), str(rl), "--allow-mismatch")
    assert res.exit_code == 0, res.output
    assert "**Settings differ** (compared anyway):" in res.output
    assert "- index: in memory: InMemory (sft), in memory: Dense (rl)" in res.output
    assert "- questions:" in res.output and "ffffffffffff (rl)" in res.output
    assert "| w | 2hop | rl − sft | 4 |" in res.output  # and the table


def test_rows_without_manifest_still_compare(tmp_path: Path) -> None:
    m = base_manifest()
    old = write_arm(tmp_path / "old", "sft", [0, 0, 1, 1], None)
    new = write_arm(tmp_path, "rl", [1, 1, 1, 0], m)
    res = compare(str(old), str(new))
    assert res.exit_code == 0, res.output
    assert "no manifest: sft (settings not checked)" in res.output and "| w | 2hop | rl − sft | 4 |" in res.output
    runs = compare(str(old), f"rl={new},{write_arm(tmp_path / 'b', 'rl', [1, 0, 1, 1], replace(m, seed=9))}")
    assert runs.exit_code == 0, runs.output  # two seeds of one arm, differing only in seed: comparable
    assert "no manifest: sft" in runs.output and "Settings differ" not in runs.output


def fake_run(run_dir: Path, right: set[int], manifest: Manifest | None) -> None:
    (run_dir / "eval").mkdir(parents=True)
    rows = [
        {"id": f"q{i}", "dataset": "w", "group": "2hop", "em": float(i in right), "f1": float(i in right)}
        | {"answer": "x"}
        for i in range(8)
    ]
    (run_dir / "eval" / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if manifest is not None:
        (run_dir / "eval" / "heldout.manifest.json").write_text(manifest.to_json())


@pytest.mark.parametrize("topk", [3, 5])
def test_findings_refuse_arms_whose_manifests_differ(tmp_path: Path, topk: int) -> None:
    spec = ExperimentSpec.model_validate(
        {
            "name": "manifest",
            "held_out": {"per_type": {"2hop": 8}},
            "seeds": [0],
            "arms": [{"name": "before", "init": "base"}, {"name": "rl", "init": "base", "steps": 1}],
            "claims": [{"id": "F1", "before": "before", "after": "rl"}],
            "bootstrap": 100,
        }
    )
    m = base_manifest()
    out = tmp_path / "out"
    fake_run(run_dir_of(out, "before", 0), {0}, m)
    fake_run(run_dir_of(out, "rl", 0), {0, 1, 2, 3, 4, 5}, replace(m, retriever={"kind": "bm25", "topk": topk}))
    write_findings(spec, out)
    summary = json.loads((out / "summary.json").read_text())["verdicts"][0]
    page = (out / "findings.md").read_text()
    assert "## Settings" in page and "before/seed0" in page  # each run's manifest
    if topk == 3:  # same settings: judged as before
        assert summary["differences"] == [] and not summary["verdict"].startswith("refused")
        assert "| rl − before |" in page  # the paired table
    else:
        assert summary["verdict"] == "refused: settings differ (see Settings)"
        assert summary["differences"] == ["retriever.topk: 3 (before/seed0), 5 (rl/seed0)"]
        assert "Not compared" in page and "| rl − before |" not in page


def test_eval_writes_a_manifest_beside_each_arm(tiny_model_dir: Path, tmp_path: Path) -> None:
    from searchrl.data.sources import load_source
    from searchrl.data.world import default_world

    res = CliRunner().invoke(
        app,
        [
            "eval",
            f"model.path={tiny_model_dir}",
            "data.max_examples=2",
            "rollout.max_new_tokens=3",
            "--dataset",
            "world:default",
            "--method",
            "direct",
            "--out",
            str(tmp_path / "ev"),
        ],
    )
    assert res.exit_code == 0, res.output
    m = load_manifest(tmp_path / "ev" / "direct.jsonl")
    assert m is not None and m.method == "direct" and m.model == str(tiny_model_dir) and m.checkpoint == BASE
    assert m.corpus == passages_fingerprint(default_world().passages) and m.index.startswith("in memory: BM25")
    assert m.questions == questions_hash(load_source("world:default", "test", 2)) and m.n_questions == 2

"""Real questions over their own corpora as an experiment's world (searchrl.data.real, F7): splits by id,
coverage, gold searches, the spec's `data:` block and an experiment prepared on HippoRAG's samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from searchrl.config import ConfigError
from searchrl.data.qa import DataError, load_qa
from searchrl.data.real import RealSource, real_world, split_by_id
from searchrl.experiment.runner import Experiment
from searchrl.experiment.spec import load_spec
from searchrl.types import QAExample

HOTPOT = "hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train"
MUSIQUE = "musique/OSU-NLP-Group__HippoRAG/musique_train"


def sources(raw: Path) -> list[RealSource]:
    return [
        RealSource("hotpotqa", raw / f"{HOTPOT}.json", raw / f"{HOTPOT}_corpus.json"),
        RealSource("musique", raw / f"{MUSIQUE}.json", raw / f"{MUSIQUE}_corpus.json"),
    ]


def examples(n: int) -> list[QAExample]:
    return [QAExample(f"d/{i}", f"q{i}", ("a",), "d") for i in range(n)]


def test_split_by_id_ignores_order_and_keeps_test_when_train_dev_change() -> None:
    ex = examples(40)
    a = split_by_id(ex, {"train": 0.5, "dev": 0.25, "test": 0.25})
    b = split_by_id(list(reversed(ex)), {"train": 0.5, "dev": 0.25, "test": 0.25})
    assert a == b and [len(a[s]) for s in ("train", "dev", "test")] == [20, 10, 10]
    assert {e.id for s in a.values() for e in s} == {e.id for e in ex}  # a partition
    c = split_by_id(ex, {"train": 0.7, "dev": 0.05, "test": 0.25})
    assert c["test"] == a["test"] and len(c["dev"]) == 2
    grown = split_by_id([*ex, *examples(41)[40:]], {"train": 0.5, "dev": 0.25, "test": 0.25})
    assert len(set(e.id for e in grown["test"]) & set(e.id for e in a["test"])) >= 8  # hash order, not position


@pytest.mark.parametrize("fractions", [{"train": 0.5, "test": 0.4}, {"train": 1.2, "test": -0.2}, {"holdout": 1.0}])
def test_bad_fractions_refused(fractions: dict[str, float]) -> None:
    with pytest.raises(DataError, match="fractions"):
        split_by_id(examples(4), fractions)


def test_hipporag_samples_split_with_gold_searches(raw_data: Path) -> None:
    world, report = real_world(sources(raw_data), {"train": 0.3, "dev": 0.2, "test": 0.5})
    assert report.dropped == {"hotpotqa": 0, "musique": 0}  # every supporting passage is in its own corpus
    assert report.kept == {k: {"train": 30, "dev": 20, "test": 50} for k in ("hotpotqa", "musique")}
    ids = {p.id for p in world.passages}
    assert len(ids) == len(world.passages) == report.passages > 2700  # merged, deduplicated, unique ids
    for split in ("train", "dev", "test"):
        assert {e.metadata["type"] for e in world.questions[split]} == {"hotpotqa", "musique"}
    hp = next(e for e in world.questions["train"] if e.metadata["type"] == "hotpotqa")
    assert world.gold[hp.id].queries == hp.metadata["supporting_titles"]  # HotpotQA: its supporting titles
    assert hp.metadata["native_type"] in ("bridge", "comparison") and set(hp.supporting_ids) <= ids
    mq = load_qa(raw_data / f"{MUSIQUE}.json").examples[0]  # 2hop__150763_14904
    mq_gold = world.gold[mq.id]
    assert mq_gold.queries == (
        "What company published Journal of Psychotherapy Integration?",
        "Who was the first president of American Psychological Association ?",  # "#1" filled in
    )
    assert mq_gold.answer == "G. Stanley Hall" and len(mq_gold.passage_ids) == 2


def test_a_question_whose_passage_is_missing_is_dropped(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps([{"title": "Alpha", "text": "Alpha was born in Beta."}]))
    qa = tmp_path / "qa.json"
    recs = [
        {"_id": "ok", "question": "Where was Alpha born?", "answer": "Beta", "supporting_facts": [["Alpha", 0]]},
        {"_id": "gone", "question": "Who?", "answer": "x", "supporting_facts": [["Gamma", 0]]},
    ]
    qa.write_text(json.dumps(recs))
    world, report = real_world([RealSource("toy", qa, corpus)], {"train": 1.0})
    assert report.dropped == {"toy": 1} and [e.question for e in world.questions["train"]] == ["Where was Alpha born?"]
    with pytest.raises(DataError, match="corpus file not found"):
        real_world([RealSource("toy", qa, tmp_path / "nope.json")], {"train": 1.0})


def real_spec(raw: Path) -> dict[str, object]:
    return {
        "name": "real",
        "data": {
            "sources": [
                {"label": s.label, "questions": str(s.questions), "corpus": str(s.corpus)} for s in sources(raw)
            ],
            "splits": {"train": 0.3, "dev": 0.2, "test": 0.5},
        },
        "held_out": {
            "split": "test",
            "per_type": {"hotpotqa": 50, "musique": 50},
            "calibration_per_type": {"hotpotqa": 20, "musique": 20},
        },
        "seeds": [0],
        "warm_start": {"per_type": {"hotpotqa": 10, "musique": 10}},
        "rl_types": ["hotpotqa", "musique"],
        "arms": [{"name": "warm", "steps": 0}],
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(world={"seed": 1}), "not both"),
        (lambda d: d.update(rl_types=["2hop"]), "rl_types names"),
        (lambda d: d["held_out"].update(per_type={"bamboogle": 5}), "held_out.per_type names"),
        (lambda d: d["data"].update(sources=[]), "sources"),
    ],
)
def test_bad_real_spec_refused(raw_data: Path, tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    data = real_spec(raw_data)
    change(data)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_spec(path)


def test_experiment_prepared_on_real_questions(raw_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(real_spec(raw_data)))
    spec = load_spec(path)
    exp = Experiment.prepare(spec, tmp_path / "out", log=lambda _: None)
    assert len(exp.held_out) == 100 and {e.metadata["type"] for e in exp.held_out} == {"hotpotqa", "musique"}
    golds = exp.warm_golds()
    assert len(golds) == 20 and all(g.queries and g.answer for g in golds)
    rl = exp.rl_examples()
    assert len(rl) == 40 and not {e.id for e in rl} & {g.example_id for g in golds}
    assert not {e.id for e in rl} & {e.id for e in exp.held_out}  # training never sees a held-out question
    assert json.loads((tmp_path / "out" / "data.json").read_text())["dropped"] == {"hotpotqa": 0, "musique": 0}
    hits = exp.retriever.search([golds[0].queries[0]], 3)[0]
    assert hits and hits[0].title  # the merged corpus is indexed
    calib = Experiment.prepare(spec.for_calibration(), tmp_path / "dev", log=lambda _: None)
    assert len(calib.held_out) == 40 and not {e.id for e in calib.held_out} & {e.id for e in exp.held_out}


def test_findings_lead_names_the_real_sources(raw_data: Path, tmp_path: Path) -> None:
    from searchrl.experiment.findings import claims_section

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(real_spec(raw_data)))
    text = claims_section(load_spec(path), []).text
    assert "Real questions: hotpotqa (`hotpotqa_train.json` over `hotpotqa_train_corpus.json`)" in text
    assert "World seed" not in text


@pytest.mark.slow
def test_real_data_experiment_runs_end_to_end(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`searchrl experiment` on a `data:` file: warm start from gold searches, one RL step, the base
    model's RAG, rows grouped by the source's label, and a findings page that names the sources. Slow
    tier: the world's end-to-end run (tests/test_experiment.py) covers the same runner in the default tier,
    and test_experiment_prepared_on_real_questions what `data:` changes in it."""
    import subprocess
    import sys

    people = [("Ana Vel", "Porto"), ("Bo Lund", "Oslo"), ("Cy Marr", "Lima"), ("Di Sato", "Kyoto"), ("Ed Roe", "Cork")]
    corpus = [{"title": n, "text": f"{n} was born in {c}."} for n, c in people]
    corpus += [{"title": c, "text": f"{c} is a city."} for _, c in people]
    records = [
        {"_id": f"q{i}", "question": f"Where was {n} born?", "answer": c, "supporting_facts": [[n, 0], [c, 0]]}
        for i, (n, c) in enumerate(people * 2)
    ]
    for i, rec in enumerate(records):
        rec["_id"] = f"q{i}"
    (tmp_path / "corpus.json").write_text(json.dumps(corpus))
    (tmp_path / "qa.json").write_text(json.dumps(records))
    spec = {
        "name": "real_smoke",
        "data": {
            "sources": [
                {"label": "toy", "questions": str(tmp_path / "qa.json"), "corpus": str(tmp_path / "corpus.json")}
            ],
            "splits": {"train": 0.6, "test": 0.4},
        },
        "held_out": {"split": "test", "per_type": {"toy": 4}},
        "seeds": [0],
        "config": {
            "model": {"path": str(tiny_model_dir)},
            "rollout": {"max_new_tokens": 6, "max_turns": 2, "group_size": 2},
            "train": {"prompts_per_step": 2, "mini_batch": 4, "micro_batch": 2, "lora_r": 4, "reward": "f1"},
        },
        "warm_start": {"per_type": {"toy": 2}},
        "rl_types": ["toy"],
        "arms": [
            {"name": "base_rag", "init": "base", "method": "rag"},
            {"name": "warm", "steps": 0},
            {"name": "rl", "steps": 1},
        ],
        "claims": [{"id": "F7", "before": "warm", "after": "rl", "metric": "f1"}],
        "bootstrap": 200,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "searchrl.cli", "experiment", str(path), "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for arm in ("base_rag", "warm", "rl"):
        rows = [
            json.loads(x) for x in (out / "arms" / arm / "seed0" / "eval" / "heldout.jsonl").read_text().splitlines()
        ]
        assert len(rows) == 4 and {r["group"] for r in rows} == {"toy"}
    assert json.loads((out / "data.json").read_text())["kept"] == {"toy": {"train": 6, "dev": 0, "test": 4}}
    assert json.loads((out / "warm_start" / "sft.json").read_text())["examples"] == 2
    assert "Real questions: toy (`qa.json` over `corpus.json`)" in (out / "findings.md").read_text()

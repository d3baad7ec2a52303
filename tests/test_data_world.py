"""The synthetic world: deterministic, split by subject entity, every gold hop findable and correct."""

from __future__ import annotations

from pathlib import Path

from searchrl.data.world import SPLITS, default_world, generate_world, save_world
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.retrieval.corpus import load_corpus


def test_deterministic_bytes(tmp_path: Path) -> None:
    a = save_world(generate_world(3, "tiny"), tmp_path / "a")
    b = save_world(generate_world(3, "tiny"), tmp_path / "b")
    for f in sorted(p.name for p in a.iterdir()):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    c = save_world(generate_world(4, "tiny"), tmp_path / "c")
    assert (a / "corpus.jsonl").read_bytes() != (c / "corpus.jsonl").read_bytes()
    assert len(load_corpus(a / "corpus.jsonl")) == len(generate_world(3, "tiny").passages)


def test_splits_do_not_share_subjects() -> None:
    w = default_world()
    subjects = {s: {e.metadata["subject"] for e in w.questions[s]} for s in SPLITS}
    assert not (subjects["train"] & subjects["test"]) and not (subjects["train"] & subjects["dev"])
    assert not (subjects["dev"] & subjects["test"])
    kinds = {e.metadata["type"] for e in w.questions["train"]}
    assert kinds == {"1hop", "2hop", "compare"}
    assert len({e.id for s in SPLITS for e in w.questions[s]}) == sum(len(w.questions[s]) for s in SPLITS)


def test_gold_trajectories_find_and_contain_the_answer() -> None:
    w = default_world()
    by_id = {p.id: p for p in w.passages}
    bm25 = BM25Retriever.build(w.passages)
    for ex in w.questions["test"] + w.questions["dev"]:
        gold = w.gold[ex.id]
        results = bm25.search(list(gold.queries), 3)
        for pid, hits in zip(gold.passage_ids, results, strict=True):
            assert pid in [p.id for p in hits], (ex.question, gold.queries)
        evidence = " ".join(by_id[p].text for p in gold.passage_ids)
        assert gold.answer in evidence or ex.metadata["type"] == "compare"
        assert gold.answer == ex.answers[0]


def test_sources(tmp_path: Path, raw_data: Path) -> None:
    import pytest

    from searchrl.data.sources import DataError, load_source

    assert len(load_source("world:default:test")) == len(default_world().questions["test"])
    assert len(load_source("world:default", split="dev", limit=5)) == 5
    nq = load_source(str(raw_data / "nq/RUC-NLPIR__FlashRAG/test.jsonl"))
    assert nq and all(ex.answers for ex in nq)
    bam = load_source(str(raw_data / "bamboogle/RUCAIBox__R1-Searcher/bamboogle.jsonl"))
    assert len(bam) == 125
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "golden_answers": ["a"]}\n{"question": "q2", "golden_answers": []}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl: record 2: field 'golden_answers'"):
        load_source(str(bad))
    with pytest.raises(DataError, match="unknown split"):
        load_source("world:default:holdout")

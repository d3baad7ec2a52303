"""QA loaders on the real files in ../shared/data/raw; named errors; mixing and splitting."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from searchrl.data.mix import mix, split, split_of
from searchrl.data.qa import DataError, detect_format, load_qa

REAL = [
    ("multi/GAIR-NLP__DeepResearcher/test.parquet", "verl", 3197),
    ("multi/GAIR-NLP__DeepResearcher/dev.parquet", "verl", 875),
    ("hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train.json", "hotpotqa", 100),
    ("musique/OSU-NLP-Group__HippoRAG/musique_train.json", "musique", 100),
    ("bamboogle/anchen1011__FireAct/test.csv", "csv", 125),
    ("bamboogle/RUCAIBox__R1-Searcher/bamboogle.jsonl", "r1_searcher", 125),
    ("nq/RUC-NLPIR__FlashRAG/test.jsonl", "flashrag", 17),
    ("r1_searcher_train/RUCAIBox__R1-Searcher/stage_1.jsonl", "r1_searcher", 350),
    ("r1_searcher_train/RUCAIBox__R1-Searcher/stage_2.jsonl", "r1_searcher", 8148),
    ("musique/RUCAIBox__R1-Searcher/musique_500.jsonl", "r1_searcher", 500),
    ("2wikimultihopqa/RUCAIBox__R1-Searcher/2wiki_500.jsonl", "r1_searcher", 500),
]


@pytest.mark.parametrize(("rel", "fmt", "count"), REAL)
def test_real_files(raw_data: Path, rel: str, fmt: str, count: int) -> None:
    assert detect_format(raw_data / rel) == fmt
    res = load_qa(raw_data / rel)
    assert len(res.examples) == count and res.skipped == 0
    assert len({e.id for e in res.examples}) == count
    assert all(e.question and e.answers and all(a for a in e.answers) for e in res.examples)


def test_seven_datasets_in_the_parquet(raw_data: Path) -> None:
    ex = load_qa(raw_data / "multi/GAIR-NLP__DeepResearcher/test.parquet").examples
    counts = Counter(e.dataset for e in ex)
    assert counts == {
        "2wiki": 512,
        "popqa": 512,
        "tq": 512,
        "hotpotqa": 512,
        "nq": 512,
        "musique": 512,
        "Bamboogle": 125,
    }
    first = ex[0]
    assert first.question.startswith("What is the date of birth of Millicent") and first.answers == ("20 July 1851",)
    multi = [e for e in ex if len(e.answers) > 1]
    assert len(multi) == 1115  # answers joined by <|answer_split|> come apart
    assert all("<|answer_split|>" not in a for e in ex for a in e.answers)


def test_native_supporting_titles_and_aliases(raw_data: Path) -> None:
    hp = load_qa(raw_data / "hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train.json").examples[0]
    assert hp.metadata["supporting_titles"] == ("Alû", "Lilu (mythology)")
    mq = load_qa(raw_data / "musique/OSU-NLP-Group__HippoRAG/musique_train.json").examples
    assert any(len(e.answers) > 1 for e in mq) and all(e.metadata["supporting_titles"] for e in mq)


BAD = [
    ('{"question": "q", "golden_answers": []}\n', "record 1: field 'golden_answers' has no non-empty answer"),
    ('{"question": "q", "golden_answers": ["a"]}\n{"golden_answers": ["a"]}\n', "record 2: missing field 'question'"),
    ('{"question": 3, "golden_answers": ["a"]}\n', "record 1: field 'question' should be str"),
    ('{"question": "q", "golden_answers": ["a"]}\n{"question": "q",\n', r"bad\.jsonl:2: not valid JSON"),
]


@pytest.mark.parametrize(("content", "message"), BAD)
def test_malformed_named(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    with pytest.raises(DataError, match=message):
        load_qa(f, fmt="flashrag")


def test_skip_bad_counts(tmp_path: Path) -> None:
    f = tmp_path / "q.jsonl"
    f.write_text('{"question": "a", "answer": "x"}\n{"question": "b"}\n{"question": "c", "answer": ""}\n')
    res = load_qa(f, skip_bad=True)
    assert [e.question for e in res.examples] == ["a"] and res.skipped == 2
    with pytest.raises(DataError, match="unknown QA format"):
        load_qa(f, fmt="xml")


def test_split_is_stable_and_mix_is_weighted(raw_data: Path) -> None:
    nq = load_qa(raw_data / "multi/GAIR-NLP__DeepResearcher/test.parquet").examples
    hp = load_qa(raw_data / "hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train.json").examples
    fr = {"train": 0.8, "dev": 0.2}
    parts = split(nq, 0, fr)
    assert 0.75 < len(parts["train"]) / len(nq) < 0.85
    assert split(nq[:100], 0, fr)["dev"] == [e for e in parts["dev"] if e in nq[:100]]  # adding data moves nothing
    assert split_of("x/1", 0, fr) == split_of("x/1", 0, fr)
    m = mix({"multi": nq, "hotpotqa": hp}, {"multi": 3, "hotpotqa": 1}, 200, seed=1)
    assert len(m) == 150 + 50 and m == mix({"multi": nq, "hotpotqa": hp}, {"multi": 3, "hotpotqa": 1}, 200, seed=1)
    with pytest.raises(ValueError, match="sum to 1"):
        split(nq, 0, {"train": 0.5})


def test_world_questions_file_keeps_its_question_types(tmp_path: Path) -> None:
    """A `searchrl data world` questions file carries its type in a nested metadata object; a plain file
    may carry it at the top level. Both are grouped per type, not as one dataset."""
    from searchrl.data.world import default_world, save_world
    from searchrl.eval.run import group_of

    world = default_world()
    folder = save_world(world, tmp_path / "w")
    loaded = load_qa(folder / "questions_test.jsonl").examples
    assert [e.metadata.get("type") for e in loaded] == [e.metadata["type"] for e in world.questions["test"]]
    assert {group_of(e) for e in loaded} >= {"1hop", "2hop"}
    plain = tmp_path / "typed.jsonl"
    plain.write_text('{"question": "q1", "golden_answers": ["a"], "type": "bridge"}\n')
    assert group_of(load_qa(plain).examples[0]) == "bridge"

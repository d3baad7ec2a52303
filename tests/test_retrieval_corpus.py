"""Corpus loaders on the real files in ../shared/data/raw, and clear errors on malformed input."""

from __future__ import annotations

from pathlib import Path

import pytest

from searchrl.retrieval.corpus import CorpusError, detect_format, load_corpus, write_corpus_jsonl
from searchrl.types import Passage

REAL = [
    ("2wikimultihopqa/OSU-NLP-Group__HippoRAG/2wikimultihopqa_corpus.json", "title_text", 6119),
    ("hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train_corpus.json", "title_sentences", 994),
    ("hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train.json", "hotpotqa", 994),
    ("musique/OSU-NLP-Group__HippoRAG/musique_train_corpus.json", "title_text", 1890),
    ("musique/OSU-NLP-Group__HippoRAG/musique_train.json", "musique", 1890),
    ("wikipedia/PeterGriffinJin__Search-R1/corpus.jsonl", "search_r1", 10),
    ("wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl", "search_r1", 1000),
    ("wikipedia/RUCAIBox__R1-Searcher/filtered_kilt_sample_100.jsonl", "kilt", 5537),
]


@pytest.mark.parametrize(("rel", "fmt", "count"), REAL)
def test_real_corpora(raw_data: Path, rel: str, fmt: str, count: int) -> None:
    path = raw_data / rel
    assert detect_format(path) == fmt
    passages = load_corpus(path)
    assert len(passages) == count
    assert len({p.id for p in passages}) == count  # ids unique
    assert all(p.text.strip() for p in passages)


def test_qa_file_paragraphs_equal_its_corpus(raw_data: Path) -> None:
    base = raw_data / "hotpotqa/OSU-NLP-Group__HippoRAG"
    from_qa = {(p.title, p.text) for p in load_corpus(base / "hotpotqa_train.json")}
    corpus = {(p.title, p.text) for p in load_corpus(base / "hotpotqa_train_corpus.json")}
    assert from_qa == corpus


def test_search_r1_contents_round_trip(raw_data: Path, tmp_path: Path) -> None:
    passages = load_corpus(raw_data / "wikipedia/PeterGriffinJin__Search-R1/corpus.jsonl")
    assert passages[0].title == "Evan Morris" and passages[0].id == "0"
    write_corpus_jsonl(passages, tmp_path / "c.jsonl")
    assert load_corpus(tmp_path / "c.jsonl") == passages


def test_dedupe_and_ids(tmp_path: Path) -> None:
    f = tmp_path / "c.jsonl"
    f.write_text('{"title": "A", "text": "x"}\n{"title": "A", "text": "x"}\n{"title": "A", "text": "y"}\n\n')
    assert load_corpus(f) == [Passage("A#0", "A", "x"), Passage("A#1", "A", "y")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"title": "A", "text": "x"}\n{"title": "B", "text": \n', r"c\.jsonl:2: not valid JSON"),
        ('{"title": "A", "text": "x"}\n{"title": "B"}\n', r"record 2: missing field 'text'"),
        ('{"title": "A", "text": 3}\n{"title": "B", "text": "y"}\n', r"record 1: field 'text' should be"),
        ('{"id": 1, "contents": ["x"]}\n{"id": 2, "contents": "y"}\n', r"field 'contents' should be"),
        ('[{"title": "A", "text": "x"}, 5]', r"record 2: expected an object"),
        ("[1, 2", "not valid JSON"),
        ('{"foo": 1}\n{"foo": 2}\n', "cannot tell the corpus format"),
    ],
)
def test_malformed_input_named(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "c.jsonl"
    f.write_text(content)
    with pytest.raises(CorpusError, match=message):
        load_corpus(f)


def test_missing_file_and_bad_format(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(tmp_path / "nope.jsonl")
    (tmp_path / "c.jsonl").write_text('{"title": "A", "text": "x"}\n')
    with pytest.raises(CorpusError, match="unknown corpus format 'csv'"):
        load_corpus(tmp_path / "c.jsonl", fmt="csv")
    (tmp_path / "b.jsonl").write_bytes(b'{"title": "A", "text": "\xff\xfe"}\n')
    with pytest.raises(CorpusError, match="not UTF-8"):
        load_corpus(tmp_path / "b.jsonl")

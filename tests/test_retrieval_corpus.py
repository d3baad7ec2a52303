"""Corpus loaders on the real files in ../shared/data/raw, and errors that name file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from searchrl.retrieval.corpus import (
    CorpusError,
    detect_format,
    join_sentences,
    load_corpus,
    passages_from_qa_file,
    read_corpus_jsonl,
    write_corpus_jsonl,
)
from searchrl.types import Passage

HOTPOT = "hotpotqa/OSU-NLP-Group__HippoRAG"
MUSIQUE = "musique/OSU-NLP-Group__HippoRAG"
R1 = "wikipedia/RUCAIBox__R1-Searcher"
REAL = [
    ("2wikimultihopqa/OSU-NLP-Group__HippoRAG/2wikimultihopqa_corpus.json", "title_text", 6119),
    (f"{HOTPOT}/hotpotqa_train_corpus.json", "title_sentences", 994),
    (f"{HOTPOT}/hotpotqa_train.json", "hotpotqa", 994),
    (f"{MUSIQUE}/musique_train_corpus.json", "title_text", 1890),
    (f"{MUSIQUE}/musique_train.json", "musique", 1890),
    ("wikipedia/PeterGriffinJin__Search-R1/corpus.jsonl", "search_r1", 10),
    ("wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl", "search_r1", 1000),
    (f"{R1}/filtered_kilt_sample_100.jsonl", "kilt", 2371),
    (f"{R1}/train_kilt_full_page_sample_100.tsv", "tsv", 93),
    (f"{R1}/train_np_title_abs_sample_100.tsv", "tsv", 100),
]


@pytest.mark.parametrize(("rel", "fmt", "count"), REAL)
def test_real_corpora(raw_data: Path, rel: str, fmt: str, count: int) -> None:
    path = raw_data / rel
    assert detect_format(path) == fmt
    passages = load_corpus(path)
    assert len(passages) == count
    assert len({p.id for p in passages}) == count  # ids unique
    assert len({(p.title, p.text) for p in passages}) == count  # no duplicates
    assert all(p.title and p.text.strip() and p.score is None for p in passages)


def test_ids_titles_and_texts_of_each_format(raw_data: Path) -> None:
    first = load_corpus(raw_data / "wikipedia/PeterGriffinJin__Search-R1/corpus.jsonl")[0]
    assert (first.id, first.title) == ("0", "Evan Morris") and first.text.startswith("Evan Morris Evan L. Morris")
    unquoted = load_corpus(raw_data / "wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl")[29]  # 'Absalon\n...'
    assert (unquoted.id, unquoted.title) == ("29", "Absalon") and unquoted.text.startswith("dragged forth")
    hotpot = load_corpus(raw_data / HOTPOT / "hotpotqa_train_corpus.json")[0]
    assert (hotpot.id, hotpot.title) == ("Demon Dice#0", "Demon Dice")
    assert "Tim Brown. In it, each player" in hotpot.text  # sentences keep their one space
    abstract = load_corpus(raw_data / R1 / "train_np_title_abs_sample_100.tsv")[0]
    assert (abstract.id, abstract.title) == ("0", "Professional Football League of Ukraine")
    assert abstract.text.startswith('Professional Football League of Ukraine (Ukrainian: "Професіональна')
    page = load_corpus(raw_data / R1 / "train_kilt_full_page_sample_100.tsv")[1]
    assert (page.id, page.title) == ("1", "A") and page.text.startswith("also found in italic type.")


def test_kilt_pages_become_100_word_passages(raw_data: Path) -> None:
    passages = load_corpus(raw_data / R1 / "filtered_kilt_sample_100.jsonl")
    assert passages[0].id == "A#0" and passages[0].text.startswith("A (named , plural")
    assert all(len(p.text.split()) <= 100 for p in passages)
    assert sum(len(p.text.split()) == 100 for p in passages) > 0.9 * len(passages)  # only page ends are short
    assert not any("Section::::" in p.text or "BULLET::::" in p.text for p in passages)


def test_qa_file_paragraphs_equal_their_corpus(raw_data: Path) -> None:
    for folder, name in ((HOTPOT, "hotpotqa_train"), (MUSIQUE, "musique_train")):
        from_qa = {(p.title, p.text) for p in passages_from_qa_file(raw_data / folder / f"{name}.json")}
        corpus = {(p.title, p.text) for p in load_corpus(raw_data / folder / f"{name}_corpus.json")}
        assert from_qa == corpus


def test_passages_from_qa_file_refuses_files_without_paragraphs(raw_data: Path) -> None:
    with pytest.raises(CorpusError, match=r"2wiki_500\.jsonl:1: .*a QA record that carries no passages"):
        passages_from_qa_file(raw_data / "2wikimultihopqa/RUCAIBox__R1-Searcher/2wiki_500.jsonl")
    with pytest.raises(CorpusError, match="looks like 'title_text', but one of hotpotqa, musique is needed"):
        passages_from_qa_file(raw_data / f"{MUSIQUE}/musique_train_corpus.json")


def test_context_layouts_and_sentence_joining(tmp_path: Path) -> None:
    records = [
        {"question": "q1", "context": [["Teutberga", ["She was a queen.", "She died in 875."]]]},  # 2Wiki
        {"question": "q2", "context": {"title": ["Alû"], "sentences": [["Alû is a demon.", " It has no mouth."]]}},
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert passages_from_qa_file(path) == [
        Passage("Teutberga#0", "Teutberga", "She was a queen. She died in 875."),
        Passage("Alû#0", "Alû", "Alû is a demon. It has no mouth."),
    ]
    assert join_sentences([" a.", " b.", "c.", "\nd. "]) == "a. b. c.\nd."
    assert join_sentences([]) == ""


def test_dedupe_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    rows = [
        {"title": "A", "text": "x"},
        {"title": "A", "text": "x"},  # repeated: dropped
        {"title": "A", "text": "y"},
        {"title": "B", "text": "  "},  # empty: dropped
        {"id": 7, "title": "C", "text": "z"},
        {"id": "7", "title": "D", "text": "w"},  # id taken: gets a title id
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert load_corpus(path) == [
        Passage("A#0", "A", "x"),
        Passage("A#1", "A", "y"),
        Passage("7", "C", "z"),
        Passage("D#0", "D", "w"),
    ]


def test_write_and_read_round_trip(raw_data: Path, tmp_path: Path) -> None:
    passages = load_corpus(raw_data / f"{MUSIQUE}/musique_train_corpus.json")
    out = tmp_path / "sub" / "corpus.jsonl"
    write_corpus_jsonl(passages, out)
    assert load_corpus(out) == passages == read_corpus_jsonl(out)
    assert json.loads(out.read_text().splitlines()[0]) == {"id": passages[0].id, "contents": passages[0].contents}
    assert sorted(p.name for p in out.parent.iterdir()) == ["corpus.jsonl"]  # no temporary file left


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        ('{"title": "A", "text": "x"}\n{"title": "B", "text": \n', "auto", r"c\.jsonl:2: not valid JSON"),
        ('{"title": "A", "text": "x"}\n\n{"title": "B"}\n', "auto", r"c\.jsonl:3: missing field 'text'"),
        ('{"title": "A", "text": 3}\n', "auto", r"c\.jsonl:1: field 'text' should be a string, got int"),
        ('{"id": 1, "contents": ["x"]}\n', "auto", r"c\.jsonl:1: field 'contents' should be a string, got a list"),
        ('{"id": [1], "contents": "x"}\n', "auto", r"c\.jsonl:1: field 'id' should be a string or an integer"),
        ('[{"title": "A", "text": "x"}, 5]', "auto", r"c\.jsonl, item 2: expected an object, got int"),
        ('[{"title": "A",\n "text": }]', "auto", r"c\.jsonl:2: not valid JSON"),
        ('{"foo": 1}\n{"foo": 2}\n', "auto", r"c\.jsonl:1: cannot tell the corpus format from keys \['foo'\]"),
        ('{"A": ["x"], "B": 3}', "title_sentences", r"c\.jsonl:1: title 'B': expected a list of sentences, got int"),
        ('{"context": [["T", "not a list"]]}\n', "auto", r"c\.jsonl:1: field 'context' item 0: expected \[title"),
        (
            '{"paragraphs": [{"title": "T", "paragraph_text": "x"}, {"title": "U"}]}\n',
            "auto",
            r"c\.jsonl:1, paragraphs\[1\]: missing field 'paragraph_text'",
        ),
        ("0\tTitle: A Text: x\n1\tB\tC\n", "auto", r"c\.jsonl:2: expected 2 tab-separated columns"),
        ("0\tno title here\n", "auto", r"c\.jsonl:1: column 2: no title found"),
        ("just words\n", "auto", r"c\.jsonl: not JSON, JSON lines or tab-separated values"),
        ("\n  \n", "auto", r"c\.jsonl: the file is empty"),
        ('{"title": "A", "text": "x"}\n', "tsv", r"c\.jsonl: format 'tsv' does not fit a jsonl file"),
    ],
)
def test_malformed_input_is_named(tmp_path: Path, content: str, fmt: str, message: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        load_corpus(path, fmt)


def test_missing_file_unknown_format_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="corpus file not found"):
        load_corpus(tmp_path / "nope.jsonl")
    (tmp_path / "c.jsonl").write_text('{"title": "A", "text": "x"}\n')
    with pytest.raises(CorpusError, match="unknown corpus format 'csv'; valid: auto, search_r1"):
        load_corpus(tmp_path / "c.jsonl", fmt="csv")
    (tmp_path / "b.jsonl").write_bytes(b'{"title": "A", "text": "x"}\n{"title": "B", "text": "\xff\xfe"}\n')
    with pytest.raises(CorpusError, match=r"b\.jsonl: not UTF-8 text"):
        load_corpus(tmp_path / "b.jsonl")

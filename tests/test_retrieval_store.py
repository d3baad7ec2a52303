"""The on-disk passage store and streaming ingest: the same passages as ``load_corpus`` for every real
corpus format, fetched by row and by id, and clear errors for what cannot be stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from searchrl.retrieval.corpus import CorpusError, iter_corpus, load_corpus
from searchrl.retrieval.ondisk.index import passages_fingerprint
from searchrl.retrieval.ondisk.store import PassageStore, StoreError, fetch, write_store
from searchrl.types import Passage

CORPORA = [
    "wikipedia/RUC-NLPIR__FlashRAG/sample_data.jsonl",  # search_r1
    "wikipedia/RUCAIBox__R1-Searcher/filtered_kilt_sample_100.jsonl",  # kilt
    "wikipedia/RUCAIBox__R1-Searcher/train_np_title_abs_sample_100.tsv",  # tsv
    "hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train_corpus.json",  # title_text
    "hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train.json",  # hotpotqa QA records: many repeats
]


@pytest.mark.parametrize("name", CORPORA)
def test_streamed_store_equals_load_corpus(raw_data: Path, tmp_path: Path, name: str) -> None:
    want = load_corpus(raw_data / name)
    progress: list[int] = []
    info = write_store(iter_corpus(raw_data / name), tmp_path / "s.sqlite", progress=progress.append)
    store = PassageStore(tmp_path / "s.sqlite")
    assert len(store) == info.n_passages == len(want) == sum(progress)
    assert list(store) == want  # same dedupe, same generated ids, same order
    assert info.fingerprint == store.fingerprint == passages_fingerprint(want)
    raw = sum(1 for _ in iter_corpus(raw_data / name))
    assert info.n_dropped == raw - len(want)
    rows = [len(want) - 1, 0, 3, 3]
    assert store.get_many(rows) == [want[r] for r in rows] == fetch(store, rows) == fetch(want, rows)
    assert store[-1] == want[-1] and store[1:4] == want[1:4]
    assert store.row_of(want[7].id) == 7 and store.row_of("no such id") is None


def test_repeats_and_missing_ids_follow_dedupe_rules(tmp_path: Path) -> None:
    given = [
        Passage("", "T", "one"),
        Passage("x", "T", "two"),
        Passage("x", "T", "three"),  # id taken: gets T#n
        Passage("", "T", "one"),  # repeat: dropped
        Passage("y", "U", "   "),  # empty: dropped
        Passage("", "T", "four"),
    ]
    info = write_store(given, tmp_path / "s.sqlite")
    assert [p.id for p in PassageStore(tmp_path / "s.sqlite")] == ["T#0", "x", "T#1", "T#2"]
    assert info.n_dropped == 2
    with pytest.raises(StoreError, match=r"passage 1 has the id 'x' twice"):
        write_store(given[1:3], tmp_path / "strict.sqlite", dedupe=False)
    assert not (tmp_path / "strict.sqlite").exists() and not list(tmp_path.glob(".strict*"))  # nothing half-written
    with pytest.raises(StoreError, match=r"passage 0 has an empty id"):
        write_store(given[:1], tmp_path / "strict.sqlite", dedupe=False)


def test_bad_store_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="passage store not found"):
        PassageStore(tmp_path / "none.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 50)
    with pytest.raises(StoreError, match="is not a passage store"):
        PassageStore(tmp_path / "junk.sqlite")
    conn = sqlite3.connect(tmp_path / "other.sqlite")
    conn.executescript("CREATE TABLE meta(key TEXT, value TEXT); INSERT INTO meta VALUES ('schema_version', '9');")
    conn.close()
    with pytest.raises(StoreError, match="store schema '9', expected 1"):
        PassageStore(tmp_path / "other.sqlite")
    write_store([Passage("a", "T", "x")], tmp_path / "ok.sqlite")
    store = PassageStore(tmp_path / "ok.sqlite")
    with pytest.raises(IndexError, match="row 1 is out of range for a store of 1 passages"):
        store[1]
    with pytest.raises(IndexError, match=r"rows \[5\] are not in the store"):
        store.get_many([0, 5])


def test_stream_errors_surface_when_reached(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "contents": "\\"A\\"\\ntext"}\n{"id": "2"}\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: missing field 'contents'"):
        write_store(iter_corpus(bad), tmp_path / "s.sqlite")
    assert not (tmp_path / "s.sqlite").exists()
    with pytest.raises(CorpusError, match="corpus file not found"):
        list(iter_corpus(tmp_path / "missing.jsonl"))

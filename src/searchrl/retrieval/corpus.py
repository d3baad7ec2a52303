"""Corpus loaders: every passage format we meet, into one list of :class:`Passage`.

Formats (``fmt`` names; ``auto`` detects them from the first record):

* ``search_r1`` — jsonl, ``{"id", "contents"}`` with ``contents = '"Title"\\ntext'`` (also FlashRAG).
* ``title_text`` — jsonl (or a json list) of ``{"title", "text"}``, ``id`` optional (HippoRAG corpora).
* ``title_sentences`` — a json object ``{title: [sentence, ...]}`` (HippoRAG's HotpotQA corpus).
* ``kilt`` — jsonl of ``{"wikipedia_title", "text": [paragraph, ...]}`` (R1-Searcher's KILT sample).
* ``hotpotqa`` — a QA file whose records carry ``context: [[title, [sentences]]]``.
* ``musique`` — a QA file whose records carry ``paragraphs: [{title, paragraph_text}]``.

Passages with the same title and text are kept once; ids are stable (the source id when the format
has one, else ``<title>#<n>``). Malformed input raises :class:`CorpusError` naming file, record and field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from searchrl.types import Passage
from searchrl.utils import atomic_write_text


class CorpusError(ValueError):
    """A corpus file that cannot be read; the message names the file, the record and the field."""


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(record number, record) for a jsonl file or a json list/object (numbers start at 1)."""
    text = path.read_text(encoding="utf-8")
    head = text.lstrip()[:1]
    if head in ("[", "{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if head == "[":
                raise CorpusError(f"{path}: not valid JSON ({exc})") from None
            data = None  # several objects: jsonl
        if isinstance(data, list):
            yield from enumerate(data, 1)
            return
        if isinstance(data, dict):
            yield 1, data
            return
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{n}: not valid JSON ({exc.msg})") from None


def _field(path: Path, n: int, rec: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(rec, dict):
        raise CorpusError(f"{path}: record {n}: expected an object, got {type(rec).__name__}")
    if name not in rec:
        raise CorpusError(f"{path}: record {n}: missing field '{name}'")
    value = rec[name]
    if not isinstance(value, kind):
        raise CorpusError(f"{path}: record {n}: field '{name}' should be {kind}, got {type(value).__name__}")
    return value


def _search_r1(path: Path) -> Iterator[Passage]:
    for n, rec in _records(path):
        contents = _field(path, n, rec, "contents", str)
        yield Passage.from_contents(str(rec.get("id", n - 1)), contents)


def _title_text(path: Path) -> Iterator[Passage]:
    for n, rec in _records(path):
        title = _field(path, n, rec, "title", str)
        text = _field(path, n, rec, "text", str)
        pid = rec.get("id", rec.get("idx"))
        yield Passage(str(pid) if pid is not None else "", title, text)


def _title_sentences(path: Path) -> Iterator[Passage]:
    for _, data in _records(path):
        if not isinstance(data, dict):
            raise CorpusError(f"{path}: expected an object mapping titles to sentence lists")
        for title, sents in data.items():
            if not isinstance(sents, list) or not all(isinstance(s, str) for s in sents):
                raise CorpusError(f"{path}: title '{title}': expected a list of sentences")
            yield Passage("", title, "".join(sents).strip())


def _kilt(path: Path) -> Iterator[Passage]:
    for n, rec in _records(path):
        title = _field(path, n, rec, "wikipedia_title", str)
        paragraphs = _field(path, n, rec, "text", list)
        body = [p.strip() for p in paragraphs[1:] if isinstance(p, str) and p.strip()]
        for i, para in enumerate(body):
            yield Passage(f"{rec.get('wikipedia_id', title)}#{i}", title, para)


def _hotpotqa(path: Path) -> Iterator[Passage]:
    for n, rec in _records(path):
        for item in _field(path, n, rec, "context", list):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], list)):
                raise CorpusError(f"{path}: record {n}: field 'context' items must be [title, [sentences]]")
            yield Passage("", str(item[0]), "".join(str(s) for s in item[1]).strip())


def _musique(path: Path) -> Iterator[Passage]:
    for n, rec in _records(path):
        for para in _field(path, n, rec, "paragraphs", list):
            title = _field(path, n, para, "title", str)
            yield Passage("", title, _field(path, n, para, "paragraph_text", str))


LOADERS: dict[str, Callable[[Path], Iterator[Passage]]] = {
    "search_r1": _search_r1,
    "title_text": _title_text,
    "title_sentences": _title_sentences,
    "kilt": _kilt,
    "hotpotqa": _hotpotqa,
    "musique": _musique,
}


def detect_format(path: Path) -> str:
    """Guess the format from the first record's keys."""
    for _, rec in _records(path):
        if not isinstance(rec, dict):
            break
        keys = set(rec)
        for fmt, need in (
            ("search_r1", {"contents"}),
            ("hotpotqa", {"context"}),
            ("musique", {"paragraphs"}),
            ("kilt", {"wikipedia_title"}),
            ("title_text", {"title", "text"}),
        ):
            if need <= keys:
                return fmt
        if rec and all(isinstance(v, list) for v in rec.values()):
            return "title_sentences"
        break
    raise CorpusError(f"{path}: cannot tell the corpus format; pass one of {sorted(LOADERS)}")


def dedupe(passages: Iterable[Passage]) -> list[Passage]:
    """Drop repeated (title, text) pairs; give id-less passages ``<title>#<n>`` ids, unique overall."""
    seen: set[tuple[str, str]] = set()
    ids: set[str] = set()
    per_title: dict[str, int] = {}
    out = []
    for p in passages:
        key = (p.title, p.text)
        if key in seen or not p.text.strip():
            continue
        seen.add(key)
        pid = p.id
        if not pid or pid in ids:
            n = per_title.get(p.title, 0)
            while (pid := f"{p.title}#{n}") in ids:
                n += 1
            per_title[p.title] = n + 1
        ids.add(pid)
        out.append(Passage(pid, p.title, p.text))
    return out


def load_corpus(path: str | Path, fmt: str = "auto") -> list[Passage]:
    """Read every passage of ``path`` (deduplicated, in file order)."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    if fmt != "auto" and fmt not in LOADERS:
        raise CorpusError(f"unknown corpus format '{fmt}'; valid: {', '.join(sorted(LOADERS))}")
    try:
        return dedupe(LOADERS[detect_format(path) if fmt == "auto" else fmt](path))
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def write_corpus_jsonl(passages: Iterable[Passage], path: str | Path) -> None:
    """Write Search-R1 jsonl (``id``, ``contents``) atomically."""
    lines = (json.dumps({"id": p.id, "contents": p.contents}, ensure_ascii=False) for p in passages)
    atomic_write_text(path, "\n".join(lines) + "\n")

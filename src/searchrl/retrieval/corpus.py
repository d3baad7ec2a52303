"""Corpus loaders: the passage formats of Search-R1, R1-Searcher, HippoRAG and the QA datasets, into
one list of :class:`Passage`.

Formats (``fmt`` names; ``auto`` tells them apart from the first record):

* ``search_r1`` — jsonl ``{"id", "contents"}`` with ``contents = '"Title"\\ntext'`` (wiki-18, FlashRAG;
  as in Search-R1, the first line is the title, quoted or not).
* ``title_text`` — jsonl or a JSON list of ``{"title", "text"}``, ``id`` optional (HippoRAG corpora).
* ``title_sentences`` — a JSON object ``{title: [sentence, ...]}`` (HippoRAG's HotpotQA corpus).
* ``kilt`` — jsonl of whole KILT pages ``{"wikipedia_title", "text": [paragraph, ...]}``, cut into
  passages of 100 words, as R1-Searcher and DPR index them.
* ``tsv`` — R1-Searcher's passage tsv (``id<TAB>Title: T Text: body`` or ``id<TAB>T<3 spaces>body``),
  or DPR's ``psgs_w100.tsv`` (a header row naming ``id``, ``text`` and ``title``).
* ``hotpotqa`` — QA records carrying ``context``: ``[[title, [sentences]]]`` (HotpotQA, 2Wiki) or the
  Hugging Face layout ``{"title": [...], "sentences": [[...]]}``.
* ``musique`` — QA records carrying ``paragraphs: [{"title", "paragraph_text"}]``.

Sentences are joined with one space where neither side already has one (HotpotQA's sentences carry
their leading space, 2Wiki's do not). Passages with the same title and text are kept once, and passages
with no text are dropped. Ids are stable: the source's id when the format has one (and it is not taken),
else ``<title>#<n>`` in file order. Malformed input raises :class:`CorpusError` naming the file, the line
(or list item) and the field.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from searchrl.types import Passage
from searchrl.utils import atomic_write_text

Record = tuple[str, Any]  # (where it came from, e.g. "corpus.jsonl:7", the parsed record)
KILT_PASSAGE_WORDS = 100
QA_FORMATS = ("hotpotqa", "musique")


class CorpusError(ValueError):
    """A corpus file that cannot be read; the message names the file, the line or item, and the field."""


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _field(where: str, rec: Any, name: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``rec[name]``, checked to be a ``kind``; a :class:`CorpusError` saying where and what otherwise."""
    if not isinstance(rec, dict):
        raise CorpusError(f"{where}: expected an object, got {_type_name(rec)}")
    if name not in rec:
        raise CorpusError(f"{where}: missing field '{name}'")
    value = rec[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CorpusError(f"{where}: field '{name}' should be {what}, got {_type_name(value)}")
    return value


def _source_id(where: str, rec: dict[str, Any], *names: str) -> str:
    """The record's own id (first present of ``names``), or "" when it has none."""
    for name in names:
        if rec.get(name) is not None:
            return str(_field(where, rec, name, (str, int), "a string or an integer"))
    return ""


def join_sentences(sentences: Iterable[str]) -> str:
    """Concatenate sentences, adding one space only where neither neighbour has whitespace at the seam."""
    out = ""
    for s in sentences:
        if out and s and not out[-1].isspace() and not s[0].isspace():
            out += " "
        out += s
    return out.strip()


# ---- containers: jsonl, one JSON document, tsv ----------------------------------------------------


def _sniff(path: Path) -> str:
    """The container, from the first non-empty line: ``jsonl``, ``json`` or ``tsv``."""
    with open(path, encoding="utf-8-sig") as fh:
        head = next((line.strip() for line in fh if line.strip()), "")
    if not head:
        raise CorpusError(f"{path}: the file is empty")
    if head.startswith("{"):
        try:
            json.loads(head)
        except json.JSONDecodeError:
            return "json"  # an object spread over several lines (or broken JSON: reported on loading)
        return "jsonl"
    if head.startswith("["):
        return "json"
    if "\t" in head:
        return "tsv"
    raise CorpusError(f"{path}: not JSON, JSON lines or tab-separated values (first line: {head[:60]!r})")


def _records(path: Path, container: str) -> Iterator[Record]:
    """The file's records, each with where it came from (jsonl/tsv are streamed line by line)."""
    if container == "jsonl":
        with open(path, encoding="utf-8-sig") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CorpusError(f"{path}:{n}: not valid JSON ({exc.msg}, column {exc.colno})") from None
                yield f"{path}:{n}", rec
    elif container == "tsv":
        with open(path, encoding="utf-8-sig", newline="") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    yield f"{path}:{n}", line.rstrip("\r\n").split("\t")
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if isinstance(data, list):
            yield from ((f"{path}, item {i}", rec) for i, rec in enumerate(data, 1))
        else:
            yield str(path), data


# ---- one parser per format: records in, passages out (ids may be "", dedupe assigns them) ----------


def _search_r1(records: Iterable[Record], strict: bool = False) -> Iterator[Passage]:
    """``strict``: only a quoted first line is a title (the inverse of :attr:`Passage.contents`); else
    any first line is, quotes stripped, as Search-R1 reads its corpus (wiki-18 has unquoted titles)."""
    for where, rec in records:
        contents = _field(where, rec, "contents", str, "a string")
        passage = Passage.from_contents(_source_id(where, rec, "id"), contents)
        if not strict and not passage.title and "\n" in contents:
            title, _, text = contents.partition("\n")
            passage = Passage(passage.id, title.strip().strip('"'), text)
        yield passage


def _title_text(records: Iterable[Record]) -> Iterator[Passage]:
    for where, rec in records:
        title = _field(where, rec, "title", str, "a string")
        text = _field(where, rec, "text", str, "a string")
        yield Passage(_source_id(where, rec, "id", "idx", "_id"), title, text.strip())


def _title_sentences(records: Iterable[Record]) -> Iterator[Passage]:
    for where, rec in records:
        if not isinstance(rec, dict):
            raise CorpusError(f"{where}: expected an object mapping titles to sentence lists, got {_type_name(rec)}")
        for title, sentences in rec.items():
            if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
                raise CorpusError(
                    f"{where}: title {title!r}: expected a list of sentences, got {_type_name(sentences)}"
                )
            yield Passage("", title, join_sentences(sentences))


def _kilt_paragraph(text: str) -> str:
    """KILT markup to plain text: section headings and bullets keep their words, lose their markers."""
    return text.strip().removeprefix("Section::::").replace("BULLET::::", "")


def _kilt(records: Iterable[Record], words: int = KILT_PASSAGE_WORDS) -> Iterator[Passage]:
    for where, rec in records:
        title = _field(where, rec, "wikipedia_title", str, "a string")
        paragraphs = _field(where, rec, "text", list, "a list of paragraphs")
        if not all(isinstance(p, str) for p in paragraphs):
            raise CorpusError(f"{where}: field 'text' should hold only strings")
        if paragraphs and paragraphs[0].strip() == title:
            paragraphs = paragraphs[1:]  # KILT's first paragraph repeats the title
        tokens = " ".join(_kilt_paragraph(p) for p in paragraphs).split()
        page = _source_id(where, rec, "wikipedia_id") or title
        for i in range(0, len(tokens), words):
            yield Passage(f"{page}#{i // words}", title, " ".join(tokens[i : i + words]))


def _unquote(cell: str) -> str:
    """A tsv cell without its CSV-style quoting: outer quotes dropped, doubled quotes made single."""
    if len(cell) >= 2 and cell[0] == cell[-1] == '"':
        return cell[1:-1].replace('""', '"')
    return cell


def _split_title(where: str, body: str) -> tuple[str, str]:
    if body.startswith("Title: ") and " Text: " in body:
        title, _, text = body[len("Title: ") :].partition(" Text: ")
        return title.strip(), text.strip()
    if "   " in body:
        title, _, text = body.partition("   ")
        return title.strip(), text.strip()
    raise CorpusError(f"{where}: column 2: no title found (expected 'Title: T Text: body' or 'T<3 spaces>body')")


def _tsv(records: Iterable[Record]) -> Iterator[Passage]:
    rows = iter(records)
    head = next(rows, None)
    if head is None:
        return
    header = [c.strip().lower() for c in head[1]]
    if {"id", "text", "title"} <= set(header):  # DPR's psgs_w100.tsv
        cols = {name: header.index(name) for name in ("id", "text", "title")}
        for where, row in rows:
            if len(row) != len(header):
                raise CorpusError(f"{where}: expected {len(header)} tab-separated columns, got {len(row)}")
            cells = [_unquote(c) for c in row]
            yield Passage(cells[cols["id"]], cells[cols["title"]].strip(), cells[cols["text"]].strip())
        return
    for where, row in itertools.chain([head], rows):
        if len(row) != 2:
            raise CorpusError(f"{where}: expected 2 tab-separated columns (id, passage), got {len(row)}")
        title, text = _split_title(where, _unquote(row[1]))
        yield Passage(row[0].strip(), title, text)


def _context_pairs(where: str, context: Any) -> Iterator[tuple[str, list[Any]]]:
    """(title, sentences) pairs of HotpotQA/2Wiki ``context``, list layout or Hugging Face layout."""
    if isinstance(context, dict):
        titles = _field(where, context, "title", list, "a list")
        sentences = _field(where, context, "sentences", list, "a list")
        if len(titles) != len(sentences):
            raise CorpusError(f"{where}: field 'context' has {len(titles)} titles but {len(sentences)} sentence lists")
        context = list(zip(titles, sentences, strict=True))
    if not isinstance(context, list):
        raise CorpusError(f"{where}: field 'context' should be a list, got {_type_name(context)}")
    for j, item in enumerate(context):
        ok = isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str)
        if not (ok and isinstance(item[1], list) and all(isinstance(s, str) for s in item[1])):
            raise CorpusError(f"{where}: field 'context' item {j}: expected [title, [sentences]]")
        yield item[0], item[1]


def _hotpotqa(records: Iterable[Record]) -> Iterator[Passage]:
    for where, rec in records:
        context = _field(where, rec, "context", (list, dict), "a list")
        for title, sentences in _context_pairs(where, context):
            yield Passage("", title, join_sentences(sentences))


def _musique(records: Iterable[Record]) -> Iterator[Passage]:
    for where, rec in records:
        for j, para in enumerate(_field(where, rec, "paragraphs", list, "a list")):
            at = f"{where}, paragraphs[{j}]"
            title = _field(at, para, "title", str, "a string")
            yield Passage("", title, _field(at, para, "paragraph_text", str, "a string").strip())


PARSERS: dict[str, Callable[[Iterable[Record]], Iterator[Passage]]] = {
    "search_r1": _search_r1,
    "title_text": _title_text,
    "title_sentences": _title_sentences,
    "kilt": _kilt,
    "tsv": _tsv,
    "hotpotqa": _hotpotqa,
    "musique": _musique,
}
# the keys that identify a format, checked in this order
_SIGNATURES = (
    ("search_r1", {"contents"}),
    ("hotpotqa", {"context"}),
    ("musique", {"paragraphs"}),
    ("kilt", {"wikipedia_title"}),
    ("title_text", {"title", "text"}),
)


def _detect(path: Path, container: str, first: Record | None) -> str:
    if container == "tsv":
        return "tsv"
    if first is None:
        raise CorpusError(f"{path}: no records")
    where, rec = first
    if isinstance(rec, dict):
        for fmt, keys in _SIGNATURES:
            if keys <= rec.keys():
                return fmt
        if rec and all(isinstance(v, list) for v in rec.values()):
            return "title_sentences"
        found = f"keys {sorted(rec)[:8]}"
        if "question" in rec:
            found += " (a QA record that carries no passages)"
    else:
        found = _type_name(rec)
    raise CorpusError(f"{where}: cannot tell the corpus format from {found}; pass fmt, one of {', '.join(PARSERS)}")


def _stream(path: str | Path, fmt: str, allowed: Iterable[str]) -> Iterator[Passage]:
    """The passages of ``path`` as parsed, before deduplication, one at a time."""
    path = Path(path)
    allowed = tuple(allowed)
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    if fmt != "auto" and fmt not in allowed:
        raise CorpusError(f"unknown corpus format '{fmt}'; valid: auto, {', '.join(allowed)}")
    try:
        container = _sniff(path)
        records = _records(path, container)
        first = next(records, None)
        found = _detect(path, container, first) if fmt == "auto" else fmt
        if found not in allowed:
            raise CorpusError(f"{path}: looks like '{found}', but one of {', '.join(allowed)} is needed here")
        if (found == "tsv") != (container == "tsv"):
            raise CorpusError(f"{path}: format '{found}' does not fit a {container} file")
        rest = itertools.chain([first] if first is not None else [], records)
        yield from PARSERS[found](rest)
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _parse(path: str | Path, fmt: str, allowed: Iterable[str]) -> list[Passage]:
    return dedupe(_stream(path, fmt, allowed))


def iter_corpus(path: str | Path, fmt: str = "auto") -> Iterator[Passage]:
    """The passages of ``path`` in file order, parsed one at a time and not deduplicated (jsonl and tsv
    are read line by line; a JSON document is parsed whole). Format errors are raised when reached;
    :func:`searchrl.retrieval.ondisk.store.write_store` deduplicates the stream on disk."""
    return _stream(path, fmt, PARSERS)


def detect_format(path: str | Path) -> str:
    """The format name ``load_corpus`` would use for ``path`` (reads only the first record of jsonl/tsv)."""
    path = Path(path)
    container = _sniff(path)
    return _detect(path, container, next(_records(path, container), None))


def load_corpus(path: str | Path, fmt: str = "auto") -> list[Passage]:
    """Every passage of ``path``, deduplicated, in file order (see the module docstring for formats)."""
    return _parse(path, fmt, PARSERS)


def passages_from_qa_file(path: str | Path) -> list[Passage]:
    """The paragraphs a QA file carries with its questions (HotpotQA/2Wiki ``context``, MuSiQue
    ``paragraphs``), deduplicated across questions; a :class:`CorpusError` for a QA file without them."""
    return _parse(path, "auto", QA_FORMATS)


def dedupe(passages: Iterable[Passage]) -> list[Passage]:
    """Drop empty and repeated (title, text) passages; give each a unique id (see the module docstring)."""
    seen: set[tuple[str, str]] = set()
    taken: set[str] = set()
    next_n: dict[str, int] = {}
    out = []
    for p in passages:
        key = (p.title, p.text)
        if key in seen or not p.text.strip():
            continue
        seen.add(key)
        pid = p.id
        if not pid or pid in taken:
            n = next_n.get(p.title, 0)
            while (pid := f"{p.title}#{n}") in taken:
                n += 1
            next_n[p.title] = n + 1
        taken.add(pid)
        out.append(Passage(pid, p.title, p.text))
    return out


def read_corpus_jsonl(path: str | Path) -> list[Passage]:
    """The exact inverse of :func:`write_corpus_jsonl`: every line, ids as written, nothing dropped."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    return list(_search_r1(_records(path, "jsonl"), strict=True))


def write_corpus_jsonl(passages: Iterable[Passage], path: str | Path) -> None:
    """Write Search-R1 jsonl (``{"id", "contents"}`` per line), atomically."""
    lines = [json.dumps({"id": p.id, "contents": p.contents}, ensure_ascii=False) + "\n" for p in passages]
    atomic_write_text(path, "".join(lines))

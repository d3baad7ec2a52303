"""QA loaders: every format in, ``QAExample`` out, driven by one table of format specs.

A spec names how to find the records of a file and, in each record, the question, the answers (and
aliases) and the native id. Formats: ``flashrag`` (jsonl ``question``/``golden_answers``),
``r1_searcher`` (jsonl ``question``/``answer``), ``verl`` (Search-R1/verl parquet: chat ``prompt``,
``reward_model.ground_truth`` with answers joined by ``<|answer_split|>``, ``data_source``),
``hotpotqa`` (native json with ``context`` and ``supporting_facts``), ``musique`` (native, with
``answer_aliases`` and ``paragraphs``), ``csv`` (``question,answer`` columns, any case: Bamboogle).
Ids are ``<dataset>/<native id>`` so they are unique across datasets. A malformed record raises
:class:`DataError` naming file, record and field, or is skipped and counted with ``skip_bad``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from searchrl.types import QAExample

ANSWER_SPLIT = "<|answer_split|>"


class DataError(ValueError):
    """A QA record that cannot be read; the message names the file, the record and the field."""


@dataclass(frozen=True)
class LoadResult:
    examples: list[QAExample]
    skipped: int


def _jsonl_or_json(path: Path) -> Iterator[tuple[int, Any]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            yield from enumerate(json.loads(text), 1)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from None
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None


def _csv(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh), 2):
            yield n, {k.strip().lower(): v for k, v in row.items() if k}


def _parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    yield from enumerate(pq.read_table(path).to_pylist(), 1)


def _need(rec: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(rec, dict):
        raise KeyError(f"record is {type(rec).__name__}, not an object")
    if name not in rec:
        raise KeyError(f"missing field '{name}'")
    if not isinstance(rec[name], kind):
        raise KeyError(f"field '{name}' should be {getattr(kind, '__name__', kind)}, got {type(rec[name]).__name__}")
    return rec[name]


def _answers(values: list[Any], field: str) -> tuple[str, ...]:
    out = tuple(str(v).strip() for v in values if str(v).strip())
    if not out:
        raise KeyError(f"field '{field}' has no non-empty answer")
    return out


def _flashrag(rec: Any) -> tuple[str, tuple[str, ...], Any, dict[str, Any]]:
    golds = _need(rec, "golden_answers", list)
    return _need(rec, "question", str), _answers(golds, "golden_answers"), rec.get("id"), {}


def _r1_searcher(rec: Any) -> tuple[str, tuple[str, ...], Any, dict[str, Any]]:
    ans = _need(rec, "answer", (str, list))
    return _need(rec, "question", str), _answers(ans if isinstance(ans, list) else [ans], "answer"), rec.get("idx"), {}


def _verl(rec: Any) -> tuple[str, tuple[str, ...], Any, dict[str, Any]]:
    prompt = _need(rec, "prompt", list)
    users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    if not users or not isinstance(users[-1], str):
        raise KeyError("field 'prompt' has no user message")
    truth = _need(rec, "reward_model", dict).get("ground_truth")
    if isinstance(truth, dict):
        truth = truth.get("target")
    golds = truth.split(ANSWER_SPLIT) if isinstance(truth, str) else truth
    if not isinstance(golds, list):
        raise KeyError("field 'reward_model.ground_truth' has no answers")
    extra = rec.get("extra_info") or {}
    return (
        users[-1],
        _answers(golds, "reward_model.ground_truth"),
        extra.get("index"),
        {"data_source": rec.get("data_source")},
    )


def _hotpotqa(rec: Any) -> tuple[str, tuple[str, ...], Any, dict[str, Any]]:
    facts = _need(rec, "supporting_facts", list)
    titles = tuple(dict.fromkeys(str(f[0]) for f in facts if isinstance(f, list) and f))
    meta = {"supporting_titles": titles, "type": rec.get("type"), "level": rec.get("level")}
    return _need(rec, "question", str), _answers([_need(rec, "answer", str)], "answer"), rec.get("_id"), meta


def _decomposition(rec: Any) -> tuple[str, ...]:
    """MuSiQue's single-hop sub-questions in order, each ``#k`` replaced by the k-th step's answer and
    ``X >> relation`` read as ``X relation``: the searches a gold trajectory issues. Empty when the
    record has no usable decomposition."""
    steps = rec.get("question_decomposition")
    if not isinstance(steps, list) or not steps:
        return ()
    if not all(isinstance(s, dict) and isinstance(s.get("question"), str) for s in steps):
        return ()
    answers = [str(s.get("answer", "")) for s in steps]
    out = []
    for step in steps:
        text = step["question"]
        for k in range(len(answers), 0, -1):  # #10 before #1
            text = text.replace(f"#{k}", answers[k - 1])
        out.append(" ".join(text.replace(" >> ", " ").split()))  # "X >> relation": a Wikidata-style step
    return tuple(out)


def _musique(rec: Any) -> tuple[str, tuple[str, ...], Any, dict[str, Any]]:
    aliases = rec.get("answer_aliases") or []
    paragraphs = _need(rec, "paragraphs", list)
    titles = tuple(p.get("title") for p in paragraphs if isinstance(p, dict) and p.get("is_supporting"))
    golds = _answers([_need(rec, "answer", str), *aliases], "answer")
    meta = {"supporting_titles": titles, "decomposition": _decomposition(rec) or None}
    return _need(rec, "question", str), golds, rec.get("id"), meta


def _carried(rec: Any) -> dict[str, Any]:
    """What a record of any format carries beyond the question: its nested ``metadata`` object (FlashRAG,
    ``searchrl data world``) and a top-level ``type`` (the question type results are grouped by)."""
    if not isinstance(rec, dict):
        return {}
    nested = rec.get("metadata")
    carried = {k: v for k, v in nested.items() if v is not None} if isinstance(nested, dict) else {}
    if isinstance(rec.get("type"), str) and rec["type"]:
        carried.setdefault("type", rec["type"])
    return carried


def _plain(rec: Any) -> tuple[str, tuple[str, ...], Any, dict[str, Any]]:
    return _need(rec, "question", str), _answers([_need(rec, "answer", str)], "answer"), rec.get("id"), {}


@dataclass(frozen=True)
class FormatSpec:
    read: Callable[[Path], Iterator[tuple[int, Any]]]
    parse: Callable[[Any], tuple[str, tuple[str, ...], Any, dict[str, Any]]]
    detect: Callable[[dict[str, Any]], bool]


FORMATS: dict[str, FormatSpec] = {
    "verl": FormatSpec(_parquet, _verl, lambda r: "prompt" in r and "reward_model" in r),
    "hotpotqa": FormatSpec(_jsonl_or_json, _hotpotqa, lambda r: "supporting_facts" in r),
    "musique": FormatSpec(_jsonl_or_json, _musique, lambda r: "paragraphs" in r and "question" in r),
    "flashrag": FormatSpec(_jsonl_or_json, _flashrag, lambda r: "golden_answers" in r),
    "r1_searcher": FormatSpec(_jsonl_or_json, _r1_searcher, lambda r: "answer" in r and "question" in r),
    "csv": FormatSpec(_csv, _plain, lambda r: {"question", "answer"} <= set(r)),
}


def detect_format(path: Path) -> str:
    if path.suffix == ".parquet":
        return "verl"
    reader = _csv if path.suffix == ".csv" else _jsonl_or_json
    for _, rec in reader(path):
        if isinstance(rec, dict):
            for name, spec in FORMATS.items():
                if spec.read is reader and spec.detect(rec):
                    return name
        break
    raise DataError(f"{path}: cannot tell the QA format; pass one of {', '.join(FORMATS)}")


def load_qa(
    path: str | Path, fmt: str = "auto", dataset: str | None = None, skip_bad: bool = False, limit: int | None = None
) -> LoadResult:
    """Read a QA file into examples; ``dataset`` names it (default: the file's stem, or verl's data_source)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"QA file not found: {path}")
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(f"unknown QA format '{fmt}'; valid: {', '.join(FORMATS)}")
    spec = FORMATS[detect_format(path) if fmt == "auto" else fmt]
    examples: list[QAExample] = []
    skipped = 0
    for n, rec in spec.read(path):
        try:
            question, golds, native, meta = spec.parse(rec)
        except (KeyError, TypeError, AttributeError) as exc:
            if skip_bad:
                skipped += 1
                continue
            raise DataError(f"{path}: record {n}: {exc.args[0] if exc.args else exc}") from None
        meta = {**_carried(rec), **{k: v for k, v in meta.items() if v is not None}}
        name = dataset or meta.get("data_source") or path.stem
        nid = native if native not in (None, "") else n - 1
        examples.append(
            QAExample(
                f"{name}/{nid}",
                question.strip(),
                golds,
                str(name),
                metadata={k: v for k, v in meta.items() if v is not None},
            )
        )
        if limit is not None and len(examples) >= limit:
            break
    return LoadResult(examples, skipped)

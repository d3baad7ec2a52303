"""Reading a run folder leniently: unreadable JSON lines are skipped and counted, unreadable files
become warnings shown on the page instead of failing the report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from searchrl.data.protocols import PROTOCOLS
from searchrl.eval.manifest import SUFFIX as MANIFEST_SUFFIX
from searchrl.eval.manifest import Manifest, load_manifest
from searchrl.metrics import merge_steps
from searchrl.report.page import fmt, is_number
from searchrl.rewards.normalize import exact_match

MAX_EXAMPLES = 50  # trajectories kept per method, to bound the page size
TRAIN_SAMPLES = "training samples"


@dataclass(frozen=True)
class Example:
    """One trajectory as the viewer shows it."""

    method: str  # eval label, or TRAIN_SAMPLES
    title: str  # example id, or the training step
    group: str
    question: str
    golds: list[str]
    answer: str | None
    correct: bool | None  # exact match of the answer; None when there is nothing to compare with
    facts: list[tuple[str, str]]  # (name, formatted value) shown under the question
    spans: list[tuple[bool, str]]  # (written by the policy?, text) runs; False = injected by the environment
    has_spans: bool  # False for older rows: spans is then the whole text as one plain run


@dataclass
class RunData:
    """Everything the page shows, read leniently from a run folder."""

    name: str
    config: dict[str, Any]
    config_text: str
    summary: dict[str, Any]
    history: list[dict[str, Any]] | None  # None when there is no metrics.jsonl
    tables: dict[str, dict[str, Any]]  # tables[label][group] -> metrics
    examples: list[Example]
    warnings: list[str]
    manifests: dict[str, Manifest | None] = field(default_factory=dict)  # label -> what produced its rows


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of a JSONL file and how many non-empty lines were not one (e.g. a torn last line)."""
    rows: list[dict[str, Any]] = []
    skipped = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if isinstance(rec, dict):
            rows.append(rec)
        else:
            skipped += 1
    return rows, skipped


def load_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    """One record per step (a resumed run's rewrite wins, as in read_metrics), and the skipped line count."""
    rows, skipped = read_jsonl(path)
    good = [r for r in rows if isinstance(r.get("step"), int)]
    skipped += len(rows) - len(good)
    return merge_steps(good), skipped


def read_json(path: Path, warnings: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        warnings.append(f"{path.name}: unreadable JSON ({e})")
        return None


def load_tables(run: Path, summary: dict[str, Any], warnings: list[str]) -> dict[str, dict[str, Any]]:
    """summary.json's tables in its order, then any other eval/<label>.json by file name."""
    listed = summary.get("tables")
    tables = {str(k): v for k, v in listed.items() if isinstance(v, dict)} if isinstance(listed, dict) else {}
    for path in sorted((run / "eval").glob("*.json")):
        if path.stem not in tables and not path.name.endswith(MANIFEST_SUFFIX):
            data = read_json(path, warnings)
            if isinstance(data, dict):
                tables[path.stem] = data
    return tables


def str_list(v: Any) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else []


def row_spans(row: dict[str, Any], text_key: str) -> tuple[list[tuple[bool, str]], bool]:
    spans = row.get("spans")
    if isinstance(spans, list) and all(
        isinstance(s, list) and len(s) == 2 and isinstance(s[0], bool) and isinstance(s[1], str) for s in spans
    ):
        return [(s[0], s[1]) for s in spans], True
    return [(True, str(row.get(text_key) or ""))], False


def eval_example(method: str, row: dict[str, Any]) -> Example:
    spans, has_spans = row_spans(row, "response")
    answer = row.get("answer")
    return Example(
        method=method,
        title=str(row.get("id", "")),
        group=str(row.get("group", row.get("dataset", ""))),
        question=str(row.get("question", "")),
        golds=str_list(row.get("golds")),
        answer=answer if isinstance(answer, str) else None,
        correct=row["em"] >= 1.0 if is_number(row.get("em")) else None,
        facts=[(k, fmt(row.get(k), ".3g")) for k in ("em", "f1", "cover_em", "searches")]
        + [("finish", str(row.get("finish", "–")))],
        spans=spans,
        has_spans=has_spans,
    )


def sample_example(row: dict[str, Any]) -> Example:
    """A training sample; its answer is read back with the answer tags both protocols share."""
    spans, has_spans = row_spans(row, "text")
    golds = str_list(row.get("golds"))
    answer = PROTOCOLS["search_r1"].extract_answer(str(row.get("text", "")))
    return Example(
        method=TRAIN_SAMPLES,
        title=f"step {row.get('step', '?')}",
        group="train",
        question=str(row.get("question", "")),
        golds=golds,
        answer=answer,
        correct=exact_match(answer or "", golds) >= 1.0 if golds else None,
        facts=[("name", str(row.get("name", ""))), ("reward", fmt(row.get("reward"), ".3g"))],
        spans=spans,
        has_spans=has_spans,
    )


def load_examples(run: Path, labels: list[str], warnings: list[str]) -> list[Example]:
    """Up to MAX_EXAMPLES per eval label (first rows) and of the training samples (latest steps)."""
    out: list[Example] = []
    paths = [run / "eval" / f"{label}.jsonl" for label in labels]
    paths += [p for p in sorted((run / "eval").glob("*.jsonl")) if p not in paths]
    for path in paths:
        if path.is_file():
            rows, skipped = read_jsonl(path)
            if skipped:
                warnings.append(f"eval/{path.name}: {skipped} unreadable line(s) skipped")
            out += [eval_example(path.stem, r) for r in rows[:MAX_EXAMPLES]]
    if (run / "samples.jsonl").is_file():
        rows, skipped = read_jsonl(run / "samples.jsonl")
        if skipped:
            warnings.append(f"samples.jsonl: {skipped} unreadable line(s) skipped")
        out += [sample_example(r) for r in rows[-MAX_EXAMPLES:]]
    return out


def load_manifests(run: Path, labels: list[str], warnings: list[str]) -> dict[str, Manifest | None]:
    """The manifest beside each label's rows (None: rows from before manifests); unreadable ones warn."""
    out: dict[str, Manifest | None] = {}
    for label in labels:
        if (run / "eval" / f"{label}.jsonl").is_file():
            try:
                out[label] = load_manifest(run / "eval" / f"{label}.jsonl")
            except ValueError as e:
                warnings.append(str(e))
    return out


def load_run(run: Path) -> RunData:
    warnings: list[str] = []
    config_text = (run / "config.yaml").read_text(encoding="utf-8") if (run / "config.yaml").is_file() else ""
    try:
        config = yaml.safe_load(config_text) or {}
    except yaml.YAMLError as e:
        warnings.append(f"config.yaml: unreadable ({e})")
        config = {}
    summary = read_json(run / "summary.json", warnings)
    summary = summary if isinstance(summary, dict) else {}
    history = None
    if (run / "metrics.jsonl").is_file():
        history, skipped = load_metrics(run / "metrics.jsonl")
        if skipped:
            warnings.append(f"metrics.jsonl: {skipped} unreadable line(s) skipped")
    tables = load_tables(run, summary, warnings)
    examples = load_examples(run, list(tables), warnings)
    manifests = load_manifests(run, list(tables), warnings)
    config = config if isinstance(config, dict) else {}
    return RunData(run.resolve().name, config, config_text, summary, history, tables, examples, warnings, manifests)

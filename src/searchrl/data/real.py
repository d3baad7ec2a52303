"""Real multi-hop questions over the corpus their supporting passages come from, as a :class:`World`.

An experiment normally runs on a generated world; ``data:`` in an experiment file runs it on real
questions instead (the findings' F7). Each source is a QA file (``searchrl.data.qa`` formats) and the
corpus it was built over (``searchrl.retrieval.corpus`` formats), e.g. HippoRAG's HotpotQA or MuSiQue
sample with its own paragraphs. The corpora are merged into one BM25 index.

* **Coverage.** A question is kept only when every supporting title it names is a passage title of the
  merged corpus (with no supporting titles at all it cannot be checked, and is dropped); the report
  counts what was dropped.
* **Splits by id.** Within each source, questions are ordered by a hash of their id and cut into
  ``test``, then ``dev``, then ``train`` by the given fractions: a question's split never depends on file
  order or on the other questions, and changing the train/dev fractions leaves ``test`` as it was.
* **Gold searches** (for an SFT warm start): MuSiQue's decomposition sub-questions with the earlier
  answers filled in, else the supporting titles in order (HotpotQA). The answer is the first gold.

Questions carry ``metadata.type`` = the source's label (results are grouped by it); the native type
(HotpotQA's bridge / comparison) stays under ``metadata.native_type``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from searchrl.data.qa import DataError, load_qa
from searchrl.data.world import SPLITS, Gold, World
from searchrl.retrieval.corpus import dedupe, load_corpus
from searchrl.types import Passage, QAExample

__all__ = ["RealReport", "RealSource", "gold_of", "real_world", "split_by_id"]


@dataclass(frozen=True)
class RealSource:
    label: str  # the question type results are grouped under, e.g. "hotpotqa"
    questions: Path
    corpus: Path


@dataclass(frozen=True)
class RealReport:
    """What loading kept: questions per label and split, and the ones dropped for missing passages."""

    kept: dict[str, dict[str, int]]
    dropped: dict[str, int]
    passages: int


def _hash(example_id: str) -> str:
    return hashlib.sha256(example_id.encode("utf-8")).hexdigest()


def split_by_id(examples: Sequence[QAExample], fractions: dict[str, float]) -> dict[str, list[QAExample]]:
    """``examples`` cut into splits by the hash of their ids: ``test`` first, then ``dev``, the rest
    ``train`` (each a rounded share of the total), every split in hash order."""
    unknown = set(fractions) - set(SPLITS)
    if unknown or abs(sum(fractions.values()) - 1.0) > 1e-9 or any(f < 0 for f in fractions.values()):
        raise DataError(f"split fractions {fractions} must be over {', '.join(SPLITS)}, non-negative, summing to 1")
    ordered = sorted(examples, key=lambda e: _hash(e.id))
    out: dict[str, list[QAExample]] = {}
    start = 0
    for name in ("test", "dev"):
        n = round(fractions.get(name, 0.0) * len(ordered))
        out[name] = ordered[start : start + n]
        start += n
    out["train"] = ordered[start:] if fractions.get("train", 0.0) > 0 else []
    return out


def gold_of(example: QAExample, title_to_id: dict[str, str]) -> Gold | None:
    """The searches and answer of a gold trajectory for ``example`` (module docstring); None when the
    question names no supporting passage, or one the corpus lacks."""
    titles = tuple(example.metadata.get("supporting_titles") or ())
    if not titles or any(t not in title_to_id for t in titles):
        return None
    queries = tuple(example.metadata.get("decomposition") or titles)
    return Gold(queries=queries, answer=example.answers[0], passage_ids=tuple(title_to_id[t] for t in titles))


def real_world(sources: Sequence[RealSource], fractions: dict[str, float]) -> tuple[World, RealReport]:
    """The merged corpus and each source's covered questions split by id (module docstring)."""
    if not sources:
        raise DataError("real data needs at least one source")
    labels = [s.label for s in sources]
    if len(set(labels)) != len(labels):
        raise DataError(f"real data sources need distinct labels, got {labels}")
    passages: list[Passage] = []
    for src in sources:
        if not src.corpus.is_file():
            raise DataError(f"corpus file not found: {src.corpus} (relative paths are read from the current folder)")
        passages.extend(load_corpus(src.corpus))
    passages = dedupe(passages)
    title_to_id: dict[str, str] = {}
    for p in passages:
        title_to_id.setdefault(p.title, p.id)
    questions: dict[str, list[QAExample]] = {name: [] for name in SPLITS}
    gold: dict[str, Gold] = {}
    kept: dict[str, dict[str, int]] = {}
    dropped: dict[str, int] = {}
    for src in sources:
        covered = []
        loaded = load_qa(src.questions).examples
        for ex in loaded:
            g = gold_of(ex, title_to_id)
            if g is None:
                continue
            meta = {**ex.metadata, "type": src.label, "native_type": ex.metadata.get("type")}
            ex = replace(ex, supporting_ids=g.passage_ids, metadata=meta)
            gold[ex.id] = g
            covered.append(ex)
        dropped[src.label] = len(loaded) - len(covered)
        parts = split_by_id(covered, fractions)
        kept[src.label] = {name: len(parts.get(name, [])) for name in SPLITS}
        for name in SPLITS:
            questions[name].extend(parts.get(name, []))
    world = World(seed=0, size="real", passages=passages, questions=questions, gold=gold)
    return world, RealReport(kept, dropped, len(passages))

"""Behaviour audit: pure checks of what the policy did in one trajectory, their shares over a batch
(``audit/<check>`` metrics: training steps, eval tables), and the drift of searches per sample.

Policy-written and injected text are told apart by ``loss_mask`` (:func:`searchrl.rollout.trace.text_spans`:
runs decoded with special tokens kept, so a tag that is a special token still shows). Words are
compared after the answer normalization of :mod:`searchrl.rewards.normalize` (lowercase, no
punctuation, no articles). The rules, and why:

* ``multiple_answers``: the policy wrote the answer opening tag, or its closing tag, more than once
  (e.g. ``<answer> a <answer> b </answer>``, or an unclosed answer, a corrective message, then another).
  Generation stops at the first closing tag, so one well-formed answer never counts twice.
* ``copied_passage``: the answer has at least :data:`COPY_MIN_WORDS` (8) normalized words and 8
  consecutive ones occur in an injected ``<information>`` block. Gold answers are entities, rarely
  over 5 normalized words; 8 in a row from the evidence is a lifted sentence, not an answer.
* ``copied_example``: the answer copies the instruction's worked example (:func:`worked_example`): it
  normalizes to the example's answer, or has 2 or more words and shares a run of ``min(3, its length)``
  words with the example's passage (the F4 policy's "The Night Watch is a painting by Rembrandt").
  The threshold is lower than for retrieved passages because the example is off-topic for every
  question. An answer that matches a gold alias never counts (a question whose answer is "Lisbon").
* ``query_repeats_question``: some query normalizes to the question itself.
* ``query_repeated``: some query normalizes to an earlier query of the same sample (the over-budget
  query that was refused included).
* ``hallucinated_evidence``: the protocol's information opening or closing tag in policy-written text,
  or, in the Search-R1 passage layout, a ``Doc N(Title:`` header (R1-Searcher's ``(N) title`` line is
  too common in ordinary text to be a signal).
* ``answer_without_search``: an answer with no search, on a question whose type needs one. The set
  of types is ``needs_search``; the default ``None`` means every question: a search-agent protocol
  asks for evidence before an answer, and the world's 1hop / 2hop / compare and HotpotQA's bridge /
  comparison all need it. Baselines (no search allowed) score their answer rate here by construction.
* :class:`SearchDrift`: ``audit/searches_drift`` is this step's mean searches per sample minus the
  run's first logged value; ``audit/searches_collapsed`` is 1.0 while the last ``window`` steps sat
  within ``tolerance`` of exactly 1.00 after a first value above ``start_above`` (1.3). A calibration
  run went from 1.75 to 1.00 by step 10 and its held-out 2-hop EM fell from 0.15 to 0.00: the
  one-search shortcut. A resumed run measures drift from its first step after resuming.
"""

from __future__ import annotations

import functools
import re
import sys
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from searchrl.data.protocols import Answer, Search, TagProtocol
from searchrl.rewards.normalize import exact_match, normalize_answer
from searchrl.rollout.trace import text_spans
from searchrl.types import Trajectory, Turn

__all__ = [
    "AUDIT_CHECKS",
    "COPY_MIN_WORDS",
    "SearchDrift",
    "WorkedExample",
    "answer_without_search",
    "audit_batch",
    "audit_row",
    "audit_sample",
    "copied_example",
    "copied_passage",
    "hallucinated_evidence",
    "multiple_answers",
    "query_repeated",
    "query_repeats_question",
    "worked_example",
]

AUDIT_CHECKS = (
    "multiple_answers",
    "copied_passage",
    "copied_example",
    "query_repeats_question",
    "query_repeated",
    "hallucinated_evidence",
    "answer_without_search",
)
COPY_MIN_WORDS = 8  # normalized words an answer must share in a row with a retrieved passage
EXAMPLE_RUN = 3  # words in a row shared with the worked example's passage (fewer for a shorter answer)
_DOC_HEADER = re.compile(r"Doc \d+\s*\(Title:")

Spans = Sequence[tuple[bool, str]]  # (written by the policy?, text) runs of a response


@dataclass(frozen=True)
class WorkedExample:
    """The example answer of a protocol's instruction and the passage of its example search ("" if none)."""

    answer: str
    passage: str


@functools.cache
def worked_example(protocol: TagProtocol) -> WorkedExample | None:
    """Parsed once per protocol (every audited sample of a run asks for it). The last ``<answer>`` and the last information block of the instruction, or None without either.
    The instructions that only name their tags ("between <information> and </information>") show no
    passage: a block of fewer than :data:`EXAMPLE_RUN` words is ignored."""
    text = protocol.instruction
    answer = protocol.extract_answer(text) or ""
    end = text.rfind(protocol.info_close)
    start = text.rfind(protocol.info_open, 0, max(end, 0))
    passage = text[start + len(protocol.info_open) : end].strip() if 0 <= start < end else ""
    if len(_words(passage)) < EXAMPLE_RUN:
        passage = ""
    return WorkedExample(answer, passage) if answer or passage else None


def _words(text: str) -> list[str]:
    return normalize_answer(text).split()


def _shares_run(a: list[str], b: list[str], n: int) -> bool:
    """Some ``n`` consecutive words of ``a`` occur consecutively in ``b``."""
    if n < 1 or len(a) < n or len(b) < n:
        return False
    runs = {tuple(b[i : i + n]) for i in range(len(b) - n + 1)}
    return any(tuple(a[i : i + n]) in runs for i in range(len(a) - n + 1))


def _queries(traj: Trajectory) -> list[str]:
    return [normalize_answer(t.query) for t in traj.turns if t.query is not None]


# -- the checks, one sample each -------------------------------------------------------------------
def multiple_answers(spans: Spans, protocol: TagProtocol) -> bool:
    policy = [text for written, text in spans if written]
    opens = sum(t.count(protocol.answer_open) for t in policy)
    closes = sum(t.count(protocol.answer_close) for t in policy)
    return max(opens, closes) > 1


def copied_passage(traj: Trajectory, spans: Spans, protocol: TagProtocol, min_words: int = COPY_MIN_WORDS) -> bool:
    if traj.answer is None:
        return False
    answer = _words(traj.answer)
    if len(answer) < min_words:
        return False
    blocks = [text for written, text in spans if not written and protocol.info_open in text]
    return any(_shares_run(answer, _words(block), min_words) for block in blocks)


def copied_example(traj: Trajectory, example: WorkedExample | None, golds: Sequence[str] = ()) -> bool:
    if traj.answer is None or example is None or (golds and exact_match(traj.answer, golds)):
        return False
    answer = _words(traj.answer)
    if not answer:
        return False
    if example.answer and answer == _words(example.answer):
        return True
    return len(answer) >= 2 and _shares_run(answer, _words(example.passage), min(EXAMPLE_RUN, len(answer)))


def query_repeats_question(traj: Trajectory, question: str) -> bool:
    q = normalize_answer(question)
    return any(query == q for query in _queries(traj))


def query_repeated(traj: Trajectory) -> bool:
    queries = _queries(traj)
    return len(set(queries)) < len(queries)


def hallucinated_evidence(spans: Spans, protocol: TagProtocol) -> bool:
    for written, text in spans:
        if not written:
            continue
        if protocol.info_open in text or protocol.info_close in text:
            return True
        if protocol.passage_style == "search_r1" and _DOC_HEADER.search(text):
            return True
    return False


def answer_without_search(traj: Trajectory, qtype: str, needs_search: Collection[str] | None = None) -> bool:
    needed = needs_search is None or qtype in needs_search
    return needed and traj.answer is not None and traj.n_searches == 0


# -- a sample, a batch -----------------------------------------------------------------------------
def audit_sample(
    traj: Trajectory,
    spans: Spans,
    question: str,
    qtype: str,
    protocol: TagProtocol,
    *,
    golds: Sequence[str] = (),
    needs_search: Collection[str] | None = None,
) -> dict[str, bool]:
    """Every check of one sample, keyed by :data:`AUDIT_CHECKS` (``spans``: :func:`text_spans` of ``traj``)."""
    return {
        "multiple_answers": multiple_answers(spans, protocol),
        "copied_passage": copied_passage(traj, spans, protocol),
        "copied_example": copied_example(traj, worked_example(protocol), golds),
        "query_repeats_question": query_repeats_question(traj, question),
        "query_repeated": query_repeated(traj),
        "hallucinated_evidence": hallucinated_evidence(spans, protocol),
        "answer_without_search": answer_without_search(traj, qtype, needs_search),
    }


def audit_row(
    row: Mapping[str, Any], protocol: TagProtocol, *, needs_search: Collection[str] | None = None
) -> dict[str, bool]:
    """The checks of one held-out row (:class:`searchrl.eval.run.EvalRow` as read back) that was written
    before rows carried them. Its turns are read back from ``spans``: each run of policy-written text is a
    turn, parsed as the rollout parsed it; searches past the row's count were refused (over budget) and
    stay as invalid turns with their query; a turn after a forced answer prefix is parsed with it, and a
    search there is an invalid turn without a query, as the rollout records it."""
    turns, searches, forced = [], 0, False
    for written, text in row["spans"]:
        if not written:  # the rollout parses a turn after a forced answer prefix with that prefix in front
            forced = bool(protocol.force_answer_prefix) and text.endswith(protocol.force_answer_prefix)
            continue
        action = protocol.parse_action(protocol.force_answer_prefix + text if forced else text)
        if isinstance(action, Search) and not forced:
            searches += 1
            kind = "search" if searches <= row["searches"] else "invalid"
            turns.append(Turn(kind, 0, query=action.query))
        else:
            turns.append(Turn("answer" if isinstance(action, Answer) else "invalid", 0))
    traj = Trajectory(row["id"], 0, [], [], [], 0, turns, row["answer"], row["finish"], row["response"])
    spans = [(bool(w), str(t)) for w, t in row["spans"]]
    return audit_sample(
        traj, spans, row["question"], row["group"], protocol, golds=row["golds"], needs_search=needs_search
    )


def audit_batch(
    trajs: Sequence[Trajectory],
    questions: Sequence[str],
    types: Sequence[str],
    protocol: TagProtocol,
    tokenizer: Any,
    *,
    golds: Sequence[Sequence[str]] | None = None,
    needs_search: Collection[str] | None = None,
) -> dict[str, float]:
    """``audit/<check>``: the share of samples each check flags (0.0 for an empty batch). ``questions``,
    ``types`` and ``golds`` (optional) are aligned with ``trajs``, one per sample."""
    gold_lists: Sequence[Sequence[str]] = golds if golds is not None else [()] * len(trajs)
    counts = dict.fromkeys(AUDIT_CHECKS, 0)
    for traj, question, qtype, g in zip(trajs, questions, types, gold_lists, strict=True):
        flags = audit_sample(
            traj, text_spans(traj, tokenizer), question, qtype, protocol, golds=g, needs_search=needs_search
        )
        for name, hit in flags.items():
            counts[name] += hit
    n = max(1, len(trajs))
    return {f"audit/{name}": c / n for name, c in counts.items()}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class SearchDrift:
    """Searches per sample against the run's start, one :meth:`update` per step (rule: module docstring)."""

    def __init__(
        self,
        window: int = 3,
        tolerance: float = 0.05,
        start_above: float = 1.3,
        warn: Callable[[str], None] = _stderr,
    ) -> None:
        if window < 1:
            raise ValueError(f"SearchDrift window must be >= 1, got {window}")
        self.window, self.tolerance, self.start_above, self.warn = window, tolerance, start_above, warn
        self.first: float | None = None
        self.recent: deque[float] = deque(maxlen=window)
        self.tripped = False  # the warning was given (once per run)

    def update(self, searches: float) -> dict[str, float]:
        """This step's ``rollout/searches`` in; ``audit/searches_drift`` and ``audit/searches_collapsed`` out."""
        if self.first is None:
            self.first = searches
        self.recent.append(searches)
        collapsed = (
            self.first > self.start_above
            and len(self.recent) == self.window
            and all(abs(s - 1.0) <= self.tolerance for s in self.recent)
        )
        if collapsed and not self.tripped:
            self.tripped = True
            self.warn(
                f"audit warning: searches per sample fell from {self.first:.2f} to 1.00 and stayed there for "
                f"{self.window} steps: the policy searches once (multi-hop questions are at risk)"
            )
        return {"audit/searches_drift": searches - self.first, "audit/searches_collapsed": float(collapsed)}

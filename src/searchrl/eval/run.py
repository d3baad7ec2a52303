"""Evaluation: one method over QA examples, greedy and batched; per-example rows and a metric table.

Methods: ``direct`` (answer at once), ``cot`` (think, then answer), ``rag`` (retrieve top-k for the
question once, put the passages in the prompt, answer), ``agent`` (the multi-turn search policy).
Every method answers inside ``<answer>`` tags and is scored by the same functions the rewards use, so
training and evaluation never disagree. Baselines cannot search: a search attempt is refused and the
answer tag is forced, exactly as the agent's budget rule does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from searchrl.audit import AUDIT_CHECKS, audit_sample
from searchrl.data.protocols import TagProtocol, baseline_messages
from searchrl.eval.manifest import Manifest, save_manifest
from searchrl.metrics import search_latency, search_waits
from searchrl.retrieval.base import Retriever
from searchrl.rewards.normalize import METRICS, cover_exact_match, exact_match, f1_score
from searchrl.rollout.backend import SamplingParams
from searchrl.rollout.engine import RolloutEngine, RolloutRequest
from searchrl.rollout.prompts import chat_ids, prompt_ids
from searchrl.rollout.trace import text_spans
from searchrl.types import Passage, QAExample, Trajectory
from searchrl.utils import atomic_write_text

# rag: the baseline's own chat prompt with the top k; rag_agent: the agent's prompt (its protocol's family, e.g.
# a plain-text demo) with one search for the question already made, so only the answer is left to write
Method = Literal["direct", "cot", "rag", "rag_agent", "agent"]
_MUSIQUE_ID = re.compile(r"^(\d+)hop\d*__")
METHODS: tuple[Method, ...] = get_args(Method)


EVAL_BATCH = 16  # questions per greedy batch everywhere (benchmarks/eval_batch.py measures others)


@dataclass(frozen=True)
class EvalRow:
    id: str
    dataset: str
    group: str  # e.g. the question type of the synthetic world ("1hop", "2hop", "compare"), else the dataset
    question: str
    golds: list[str]
    answer: str | None
    em: float
    f1: float
    cover_em: float
    searches: float  # a count; with samples, the mean count over them
    finish: str
    response: str
    spans: list[tuple[bool, str]]  # the response as (written by the policy?, text) runs; False = injected
    judge: float | None = None  # the LLM judge's verdict (1/0) when one was asked; None = not judged
    subem: float = 0.0  # Search-R1's character-substring EM (searchrl.rewards.normalize)
    r1_cover_em: float = 0.0  # R1-Searcher's any-order cover EM
    audit: dict[str, bool] = field(default_factory=dict)  # searchrl.audit's checks; {} = not audited
    samples: int = 0  # 0: one greedy answer; k: the means over k sampled answers (avg@k), text of the first
    searched: float | None = None  # with samples: the share that made a search (greedy: searches > 0)


def group_of(ex: QAExample) -> str:
    """The question type an example is reported under: ``metadata.type`` (world 1hop / 2hop / compare,
    HotpotQA bridge / comparison), else MuSiQue's hop count from its id (``2hop__…`` -> ``2hop``,
    ``3hop1__…`` -> ``3hop``: the digit after "hop" is the composition shape, not the count), else
    the dataset name (one group)."""
    kind = ex.metadata.get("type")
    if kind:
        return str(kind)
    hops = _MUSIQUE_ID.match(ex.id.rsplit("/", 1)[-1])
    return f"{hops.group(1)}hop" if hops else ex.dataset


def build_prompts(
    method: Method, examples: Sequence[QAExample], tokenizer: Any, protocol: TagProtocol, retriever: Retriever, k: int
) -> list[list[int]]:
    if method == "agent":
        return [prompt_ids(tokenizer, protocol, ex.question) for ex in examples]
    if method == "rag_agent":
        hits = retriever.search([ex.question for ex in examples], k)
        return [_searched_once(tokenizer, protocol, ex.question, h) for ex, h in zip(examples, hits, strict=True)]
    docs = [""] * len(examples)
    if method == "rag":
        hits = retriever.search([ex.question for ex in examples], k)
        docs = [protocol.format_passages(h) for h in hits]
    return [
        chat_ids(tokenizer, baseline_messages(method, ex.question, d)) for ex, d in zip(examples, docs, strict=True)
    ]


def _searched_once(tokenizer: Any, protocol: TagProtocol, question: str, hits: Sequence[Passage]) -> list[int]:
    """The agent's prompt, then a search for the question and its passages, as the rollout would append them."""
    done = protocol.format_search(f" {question.strip()} ") + protocol.wrap_information(protocol.format_passages(hits))
    return prompt_ids(tokenizer, protocol, question) + list(tokenizer.encode(done, add_special_tokens=False))


def policy_text(traj: Trajectory, tokenizer: Any) -> str:
    """Only what the policy wrote (injected passages excluded), without special tokens."""
    ids = [t for t, m in zip(traj.ids, traj.loss_mask, strict=True) if m]
    return str(tokenizer.decode(ids, skip_special_tokens=True)).strip()


def score(ex: QAExample, traj: Trajectory, tokenizer: Any, protocol: TagProtocol | None = None) -> EvalRow:
    """EM needs the tagged answer; F1 and cover-EM fall back to the text the policy wrote when no
    answer tag was written, so a baseline that answers in a sentence is not scored on format alone.
    With ``protocol`` the row carries the behaviour audit's flags (:mod:`searchrl.audit`)."""
    ans = traj.answer
    loose = ans if ans is not None else policy_text(traj, tokenizer)
    spans = text_spans(traj, tokenizer)
    audit = {} if protocol is None else audit_sample(traj, spans, ex.question, group_of(ex), protocol, golds=ex.answers)
    return EvalRow(
        id=ex.id,
        dataset=ex.dataset,
        group=group_of(ex),
        question=ex.question,
        golds=list(ex.answers),
        answer=ans,
        em=exact_match(ans, ex.answers) if ans is not None else 0.0,
        f1=f1_score(loose, ex.answers),
        cover_em=cover_exact_match(loose, ex.answers),
        subem=METRICS["subem"](loose, ex.answers),
        r1_cover_em=METRICS["r1_cover_em"](loose, ex.answers),
        searches=traj.n_searches,
        finish=traj.finish_reason,
        response=traj.response_text,
        spans=spans,
        audit=audit,
    )


def evaluate(
    method: Method,
    examples: Sequence[QAExample],
    engine: RolloutEngine,
    *,
    batch_size: int = EVAL_BATCH,
    progress: Callable[[int], None] | None = None,
    waits: dict[str, list[float]] | None = None,
    samples: int = 0,
    temperature: float = 1.0,
    seed: int = 0,
) -> list[EvalRow]:
    """Greedy evaluation of ``method`` with ``engine`` (its backend, retriever, tokenizer, protocol and
    budgets: :func:`searchrl.rollout.build.build_rollout`); baselines get two turns and no search.
    ``progress(n)`` is called after each batch of n examples. ``waits``, when given, receives each
    example's search waits in seconds (by id; kept out of the rows, which stay deterministic).
    ``samples=k`` samples k answers per question at ``temperature`` (seeded) instead, and each row holds
    their means (avg@k, ASearcher's metric): one row per question, so rows still pair by question."""
    if method != "agent":
        engine = engine.with_limits(max_turns=2, max_searches=0, on_budget="force_answer")
    tokenizer, k = engine.tokenizer, max(samples, 1)
    params = SamplingParams(temperature=temperature) if samples > 0 else SamplingParams(greedy=True)
    per_batch = max(1, batch_size // k)
    rows: list[EvalRow] = []
    for s in range(0, len(examples), per_batch):
        chunk = list(examples[s : s + per_batch])
        prompts = build_prompts(method, chunk, tokenizer, engine.protocol, engine.retriever, engine.limits.topk)
        reqs = [RolloutRequest(ex.id, j, p) for ex, p in zip(chunk, prompts, strict=True) for j in range(k)]
        trajs = engine.run(reqs, params, seed=seed + s if samples > 0 else 0)
        for i, ex in enumerate(chunk):
            scored = [score(ex, t, tokenizer, engine.protocol) for t in trajs[i * k : (i + 1) * k]]
            rows.append(mean_row(scored) if samples > 0 else scored[0])
            if waits is not None:
                waits[ex.id] = search_waits(trajs[i * k : (i + 1) * k])
        if progress is not None:
            progress(len(chunk))
    return rows


def mean_row(rows: Sequence[EvalRow]) -> EvalRow:
    """One question's k sampled rows as one row of their means (the first sample's text and audit)."""

    def mean(values: Sequence[float]) -> float:
        return float(np.mean(values))

    return replace(
        rows[0],
        em=mean([r.em for r in rows]),
        f1=mean([r.f1 for r in rows]),
        cover_em=mean([r.cover_em for r in rows]),
        subem=mean([r.subem for r in rows]),
        r1_cover_em=mean([r.r1_cover_em for r in rows]),
        searches=mean([r.searches for r in rows]),
        samples=len(rows),
        searched=mean([float(r.searches > 0) for r in rows]),
    )


def summarize(
    rows: Sequence[EvalRow],
    key: Callable[[EvalRow], str] = lambda r: r.dataset,
    waits: dict[str, list[float]] | None = None,
) -> dict[str, dict[str, float]]:
    """Mean EM, F1, cover-EM, searches, answer rate and the audit's shares (``audit/…``, when the rows
    were audited) per key (plus ``all``); with ``waits`` (from :func:`evaluate`) also the search latency
    percentiles ``retrieval/latency_p50`` and ``p99``."""
    groups: dict[str, list[EvalRow]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    if len(groups) > 1:
        groups["all"] = list(rows)
    tables = {name: _means(rs) for name, rs in groups.items()}
    if waits:
        for name, rs in groups.items():
            tables[name] |= search_latency([w for r in rs for w in waits.get(r.id, [])])
    return tables


def _means(rows: list[EvalRow]) -> dict[str, float]:
    out = {
        "n": float(len(rows)),
        "em": float(np.mean([r.em for r in rows])),
        "f1": float(np.mean([r.f1 for r in rows])),
        "cover_em": float(np.mean([r.cover_em for r in rows])),
        "subem": float(np.mean([r.subem for r in rows])),
        "r1_cover_em": float(np.mean([r.r1_cover_em for r in rows])),
        "searches": float(np.mean([r.searches for r in rows])),
        "answered": float(np.mean([r.answer is not None for r in rows])),
    }
    judged = [r.judge for r in rows if r.judge is not None]
    if judged:
        out["judge"] = float(np.mean(judged))
    if any(r.audit for r in rows):
        out |= {f"audit/{c}": float(np.mean([r.audit.get(c, False) for r in rows])) for c in AUDIT_CHECKS}
    return out


def markdown_table(tables: dict[str, dict[str, dict[str, float]]]) -> str:
    """``tables[method][group] -> metrics`` as one markdown table (a judge column when any row has one)."""
    judged = any("judge" in m for table in tables.values() for m in table.values())
    head = "| method | group | n | EM | F1 | cover-EM | searches | answered |" + (" judge |" if judged else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for method, table in tables.items():
        for group, m in table.items():
            line = (
                f"| {method} | {group} | {int(m['n'])} | {m['em']:.3f} | {m['f1']:.3f} | {m['cover_em']:.3f} "
                f"| {m['searches']:.2f} | {m['answered']:.2f} |"
            )
            if judged:
                line += f" {m['judge']:.3f} |" if "judge" in m else " – |"
            lines.append(line)
    return "\n".join(lines) + "\n"


def write_results(
    out_dir: str | Path,
    method: str,
    rows: Sequence[EvalRow],
    key: Callable[[EvalRow], str] = lambda r: r.group,
    manifest: Manifest | None = None,
    waits: dict[str, list[float]] | None = None,
) -> dict[str, dict[str, float]]:
    """Write ``<method>.jsonl`` (one row per example) and ``<method>.json`` (the table, one row per ``key``
    value: the question type by default), after ``<method>.manifest.json`` when a manifest is given (first,
    so that rows never exist without it); returns the table."""
    out = Path(out_dir)
    if manifest is not None:
        save_manifest(out / f"{method}.jsonl", manifest)
    atomic_write_text(out / f"{method}.jsonl", "".join(json.dumps(asdict(r)) + "\n" for r in rows))
    table = summarize(rows, key=key, waits=waits)
    atomic_write_text(out / f"{method}.json", json.dumps(table, indent=2))
    return table

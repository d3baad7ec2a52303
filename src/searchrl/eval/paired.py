"""Scores with bootstrap intervals, and paired differences between arms, per dataset and question type.

An *arm* is one method or checkpoint, evaluated on the same questions by one or more *runs* (training
seeds). Scores are per question (1/0 for EM, a fraction for F1). The interval is a percentile bootstrap
that resamples questions and, when an arm has several runs, runs too (a two-level bootstrap: the seed's
effect is part of the uncertainty, so three lucky seeds do not look like a law). A paired difference
resamples the *same* questions for both arms, which is what makes it much tighter than two separate
intervals: most of the variance is in which questions were drawn, and pairing cancels it.

``fixed`` / ``broken`` count questions the second arm scores higher / lower than the first (for 1/0
metrics: fixed = wrong before and right after); with several runs they are averaged over every pair
of runs (one run of each arm against one run of the other).

Everything is seeded (``numpy.random.default_rng(seed)``): the same rows and seed give the same
interval on any machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from searchrl.rewards.normalize import METRICS

__all__ = [
    "ROW_METRICS",
    "ArmScore",
    "Interval",
    "PairedRow",
    "bootstrap_mean",
    "compare_arms",
    "comparison_markdown",
    "comparison_tables",
    "paired_difference",
]


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def text(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _runs(values: Any) -> np.ndarray:
    """[R, Q] float array (R runs, Q questions) from a [Q] or [R, Q] array-like."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"scores must be a non-empty [questions] or [runs, questions] array, got shape {arr.shape}")
    return arr


def _resampled_means(arr: np.ndarray, runs: np.ndarray, questions: np.ndarray) -> np.ndarray:
    """Mean of arr over resampled runs [N, R] and questions [N, Q] -> [N]."""
    per_question = arr[runs].mean(axis=1)  # [N, Q]: the resampled runs' mean for every question
    return np.take_along_axis(per_question, questions, axis=1).mean(axis=1)


def _interval(point: float, stats: np.ndarray, level: float) -> Interval:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [tail, 1.0 - tail])
    return Interval(point, float(low), float(high))


def _check(n_boot: int, level: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def bootstrap_mean(values: Any, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Interval:
    """The mean score and its percentile bootstrap interval. ``values``: [Q] or [R, Q] (runs x questions)."""
    _check(n_boot, level)
    arr = _runs(values)
    r, q = arr.shape
    rng = np.random.default_rng(seed)
    stats = _resampled_means(arr, rng.integers(0, r, (n_boot, r)), rng.integers(0, q, (n_boot, q)))
    return _interval(float(arr.mean()), stats, level)


def paired_difference(
    before: Any, after: Any, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[Interval, float, float]:
    """``after - before`` on the same questions: (difference with interval, fixed, broken).

    ``before`` [Ra, Q] and ``after`` [Rb, Q] share the question axis (same order); their runs are
    resampled independently, the questions jointly.
    """
    _check(n_boot, level)
    a, b = _runs(before), _runs(after)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired arms need the same questions: {a.shape[1]} vs {b.shape[1]}")
    q = a.shape[1]
    rng = np.random.default_rng(seed)
    questions = rng.integers(0, q, (n_boot, q))
    ra, rb = rng.integers(0, a.shape[0], (n_boot, a.shape[0])), rng.integers(0, b.shape[0], (n_boot, b.shape[0]))
    stats = _resampled_means(b, rb, questions) - _resampled_means(a, ra, questions)
    diff = b[:, None, :] - a[None, :, :]  # [Rb, Ra, Q]: every pair of runs
    fixed = float((diff > 0).sum(axis=2).mean())
    broken = float((diff < 0).sum(axis=2).mean())
    return _interval(float(b.mean() - a.mean()), stats, level), fixed, broken


@dataclass(frozen=True)
class ArmScore:
    dataset: str
    group: str
    arm: str
    n: int  # questions
    runs: int
    score: Interval


@dataclass(frozen=True)
class PairedRow:
    dataset: str
    group: str
    base: str
    arm: str
    n: int
    diff: Interval
    fixed: float
    broken: float


Row = Any  # an EvalRow or its JSON dict: needs id, dataset, group and the metric

# the answer metrics, plus "searched": 1 when the policy made at least one well-formed search
ROW_METRICS = (*METRICS, "searched", "searches")  # searched: 1 with any search; searches: the count


def _get(row: Row, name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def _value(row: Row, metric: str) -> float:
    if metric != "searched":
        return float(_get(row, metric))
    share = row.get("searched") if isinstance(row, Mapping) else getattr(row, "searched", None)
    return float(_get(row, "searches") > 0) if share is None else float(share)  # a share over samples (avg@k)


ALL_DATASETS = "all datasets"  # the dataset label of the group that pools every dataset's questions


def compare_arms(
    arms: Mapping[str, Sequence[Sequence[Row]]],
    metric: str = "em",
    n_boot: int = 2000,
    seed: int = 0,
    key: Callable[[Row], str] | None = None,
) -> tuple[list[ArmScore], list[PairedRow]]:
    """Scores of every arm and the paired difference of every later arm against the first one.

    ``arms[name]`` is a list of runs, each a list of eval rows. Only questions that every run of every
    arm answered are compared. Groups: ``key(row)`` (default the row's question type), per dataset,
    plus ``all`` when a dataset has several, and ``all`` over every question (dataset ``ALL_DATASETS``)
    when there are several datasets.
    """
    if metric not in ROW_METRICS:
        raise ValueError(f"unknown metric '{metric}'; valid: {', '.join(ROW_METRICS)}")
    if len(arms) < 1 or any(len(runs) == 0 for runs in arms.values()):
        raise ValueError("every arm needs at least one run of eval rows")
    key = key or (lambda r: str(_get(r, "group")))
    by_id = {name: [{str(_get(r, "id")): r for r in run} for run in runs] for name, runs in arms.items()}
    tables = [t for runs in by_id.values() for t in runs]
    common = set(tables[0]).intersection(*tables[1:])
    if not common:
        raise ValueError("the arms share no question ids: they were not evaluated on the same questions")
    ref = tables[0]
    groups: dict[tuple[str, str], list[str]] = {}
    for qid in sorted(common):
        ds = str(_get(ref[qid], "dataset"))
        groups.setdefault((ds, key(ref[qid])), []).append(qid)
        groups.setdefault((ds, "all"), []).append(qid)
    datasets = sorted({d for d, _ in groups})
    for ds in datasets:
        if sum(1 for d, _ in groups if d == ds) == 2:  # one real group: "all" repeats it
            del groups[(ds, "all")]
    if len(datasets) > 1:  # several datasets (real sources): "all" over every question as well
        groups[(ALL_DATASETS, "all")] = sorted(common)
    scores: list[ArmScore] = []
    paired: list[PairedRow] = []
    names = list(arms)
    for (ds, group), ids in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] == "all", kv[0][1])):
        mats = {name: np.array([[_value(run[i], metric) for i in ids] for run in runs]) for name, runs in by_id.items()}
        for name in names:
            scores.append(
                ArmScore(ds, group, name, len(ids), mats[name].shape[0], bootstrap_mean(mats[name], n_boot, seed))
            )
        for name in names[1:]:
            diff, fixed, broken = paired_difference(mats[names[0]], mats[name], n_boot, seed)
            paired.append(PairedRow(ds, group, names[0], name, len(ids), diff, fixed, broken))
    return scores, paired


def comparison_tables(
    scores: Sequence[ArmScore], paired: Sequence[PairedRow], metric: str = "em"
) -> list[tuple[list[str], list[list[str]]]]:
    """The comparison as (header, rows) of text cells: each arm's score with its 95 % interval, then the
    paired differences when there are any. Markdown and HTML pages are both written from these."""
    score_header = ["dataset", "group", "arm", "n", "runs", f"{metric} [95 % CI]"]
    score_rows = [[s.dataset, s.group, s.arm, str(s.n), str(s.runs), s.score.text()] for s in scores]
    tables = [(score_header, score_rows)]
    if paired:
        header = ["dataset", "group", "comparison", "n", f"Δ {metric} [95 % CI]", "fixed", "broken"]
        header.append("interval excludes 0")
        rows = [
            [
                p.dataset,
                p.group,
                f"{p.arm} − {p.base}",
                str(p.n),
                p.diff.text(),
                f"{p.fixed:g}",
                f"{p.broken:g}",
                "yes" if p.diff.excludes_zero() else "no",
            ]
            for p in paired
        ]
        tables.append((header, rows))
    return tables


def comparison_markdown(scores: Sequence[ArmScore], paired: Sequence[PairedRow], metric: str = "em") -> str:
    """Two markdown tables: each arm's score with its 95 % interval, then the paired differences."""
    blocks = []
    for header, rows in comparison_tables(scores, paired, metric):
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        blocks.append("\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]))
    return "\n\n".join(blocks) + "\n"


def comparison_json(scores: Sequence[ArmScore], paired: Sequence[PairedRow], metric: str) -> str:
    return json.dumps(
        {"metric": metric, "scores": [asdict(s) for s in scores], "paired": [asdict(p) for p in paired]}, indent=2
    )

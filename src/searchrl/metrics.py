"""The one metrics sink: namespaced scalars to JSONL (always) and TensorBoard (when installed).

Keys are namespaced (``rollout/…``, ``retrieval/…``, ``reward/…``, ``actor/…``, ``critic/…``,
``perf/…``, ``eval/<dataset>/…``, ``watchdog/…``); a key without a namespace is a bug and raises. The
trainer writes ``metrics.jsonl`` through :class:`MetricsSink`; reports, experiments and the demo read it
back with :func:`read_metrics` (so the reader lives beside the writer, outside ``searchrl.trainer``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from searchrl.types import Trajectory

NAMESPACES = ("rollout", "retrieval", "reward", "actor", "critic", "perf", "eval", "sft", "train", "audit", "watchdog")


class MetricsSink:
    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "metrics.jsonl"
        self._fh = self.path.open("a", encoding="utf-8")
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.dir / "tb"))
            except ImportError:  # tensorboard is optional
                self._tb = None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key in metrics:
            if key.split("/", 1)[0] not in NAMESPACES or "/" not in key:
                raise ValueError(f"metric key '{key}' needs a namespace, one of {NAMESPACES}")
        clean = {k: float(v) for k, v in metrics.items()}
        record = {"step": step, **{k: (v if math.isfinite(v) else None) for k, v in clean.items()}}
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for k, v in clean.items():
                if math.isfinite(v):
                    self._tb.add_scalar(k, v, step)

    def text(self, step: int, name: str, text: str, **extra: Any) -> None:
        """Log a sample trajectory (or any text) beside the scalars; ``extra`` goes into the JSONL record."""
        with (self.dir / "samples.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, "name": name, "text": text, **extra}) + "\n")
        if self._tb is not None:
            self._tb.add_text(name, text, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a metrics.jsonl back, keeping the last record per step (a resumed run rewrites steps)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return merge_steps(json.loads(line) for line in lines if line.strip())


def merge_steps(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per step, in step order; a later record of the same step overrides an earlier one."""
    by_step: dict[int, dict[str, Any]] = {}
    for rec in records:
        by_step.setdefault(rec["step"], {}).update(rec)
    return [by_step[s] for s in sorted(by_step)]


def search_waits(trajs: Iterable[Trajectory]) -> list[float]:
    """Seconds each answered search of ``trajs`` waited for its retriever call."""
    return [x.search_wait_s for t in trajs for x in t.turns if x.action == "search" and x.injected]


def search_latency(waits: Sequence[float]) -> dict[str, float]:
    """``retrieval/latency_p50`` and ``retrieval/latency_p99``: percentiles of the seconds each search waited
    for its retriever call (the whole call: a batched call makes every sample in it wait); {} with none."""
    if not waits:
        return {}
    p50, p99 = np.percentile(np.asarray(waits, dtype=np.float64), [50, 99])
    return {"retrieval/latency_p50": float(p50), "retrieval/latency_p99": float(p99)}


def rollout_metrics(trajs: list[Trajectory], rewards: list[float], em: list[float]) -> dict[str, float]:
    """The step's ``reward/…``, ``rollout/…`` and ``retrieval/…`` scalars (means over its trajectories)."""
    n = len(trajs)
    return search_latency(search_waits(trajs)) | {
        "reward/mean": float(np.mean(rewards)),
        "reward/std": float(np.std(rewards)),
        "reward/em": float(np.mean(em)),
        "rollout/searches": sum(t.n_searches for t in trajs) / n,
        "rollout/invalid": sum(t.n_invalid for t in trajs) / n,
        "rollout/answered": sum(t.answer is not None for t in trajs) / n,
        "rollout/truncated": sum(t.finish_reason in ("context", "max_turns") for t in trajs) / n,  # out of budget
        "rollout/response_tokens": sum(len(t.ids) - t.prompt_len for t in trajs) / n,
        "rollout/policy_tokens": sum(t.n_policy_tokens for t in trajs) / n,
        "retrieval/seconds_per_search": sum(x.retrieval_s for t in trajs for x in t.turns if x.action == "search")
        / max(1, sum(t.n_searches for t in trajs)),
    }

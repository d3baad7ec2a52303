"""R1-Searcher's difficulty filter: roll out k samples per question, bin questions by pass rate.

R1-Searcher kept questions its base model solved neither always nor never (stage 1 "medium" and
stage 2 "hard" sets). Here a question's pass rate is the share of its k sampled rollouts whose reward
reaches ``threshold``; bins are half-open ranges over that rate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from searchrl.rollout.backend import SamplingParams
from searchrl.rollout.engine import RolloutEngine, RolloutRequest
from searchrl.types import QAExample, Trajectory
from searchrl.utils import atomic_write_text

DEFAULT_BINS: dict[str, tuple[float, float]] = {
    "easy": (0.75, 1.01),  # solved at least 3 times in 4
    "medium": (0.25, 0.75),
    "hard": (0.0, 0.25),
}


def pass_rates(
    examples: Sequence[QAExample],
    engine: RolloutEngine,
    prompt: Callable[[QAExample], list[int]],
    reward: Callable[[Trajectory, tuple[str, ...]], float],
    *,
    k: int = 4,
    params: SamplingParams | None = None,
    threshold: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
) -> dict[str, float]:
    """Pass rate per example id over ``k`` sampled rollouts."""
    if k < 1:
        raise ValueError("k must be >= 1")
    params = params or SamplingParams(temperature=1.0)
    rates: dict[str, float] = {}
    for s in range(0, len(examples), batch_size):
        chunk = list(examples[s : s + batch_size])
        reqs = [RolloutRequest(ex.id, j, prompt(ex)) for ex in chunk for j in range(k)]
        trajs = engine.run(reqs, params, seed=seed + s)
        for i, ex in enumerate(chunk):
            scores = [reward(t, ex.answers) for t in trajs[i * k : (i + 1) * k]]
            rates[ex.id] = sum(sc >= threshold for sc in scores) / k
    return rates


def bin_examples(
    examples: Sequence[QAExample], rates: dict[str, float], bins: dict[str, tuple[float, float]] = DEFAULT_BINS
) -> dict[str, list[QAExample]]:
    """Examples grouped by the bin their pass rate falls in (``low <= rate < high``)."""
    out: dict[str, list[QAExample]] = {name: [] for name in bins}
    for ex in examples:
        rate = rates[ex.id]
        for name, (low, high) in bins.items():
            if low <= rate < high:
                out[name].append(ex)
                break
    return out


def write_bins(out_dir: str | Path, binned: dict[str, list[QAExample]], rates: dict[str, float]) -> None:
    """One jsonl per bin (``question``, ``golden_answers``, ``id``, ``pass_rate``) in FlashRAG's layout."""
    for name, exs in binned.items():
        lines = [
            json.dumps(
                {
                    "id": ex.id,
                    "question": ex.question,
                    "golden_answers": list(ex.answers),
                    "dataset": ex.dataset,
                    "pass_rate": rates[ex.id],
                    "metadata": asdict(ex)["metadata"],
                }
            )
            for ex in exs
        ]
        atomic_write_text(Path(out_dir) / f"{name}.jsonl", "".join(line + "\n" for line in lines))


def in_band(examples: Sequence[QAExample], rates: dict[str, float], k: int, band: tuple[int, int]) -> list[QAExample]:
    """The examples solved between ``band[0]`` and ``band[1]`` times (inclusive) out of ``k``: with
    ``(1, k - 1)``, every kept question gives a group of k samples with unequal rewards at the start."""
    low, high = band
    return [ex for ex in examples if low <= round(rates[ex.id] * k) <= high]


def population(examples: Sequence[QAExample], rates: dict[str, float], k: int) -> dict[str, dict[int, int]]:
    """How many questions were solved 0..k times out of k, per question type (and ``all``)."""
    out: dict[str, dict[int, int]] = {}
    for ex in examples:
        solved = round(rates[ex.id] * k)
        for key in (str(ex.metadata.get("type", ex.dataset)), "all"):
            out.setdefault(key, dict.fromkeys(range(k + 1), 0))[solved] += 1
    return out

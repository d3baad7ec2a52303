"""Mixing datasets by weight and splitting deterministically.

Splits hash each example id with the seed, so adding examples never moves existing ones between
splits. Mixes sample each source in proportion to its weight without replacement (deterministic from
the seed); ids stay unique because they carry the dataset name (``<dataset>/<native id>``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from searchrl.types import QAExample


def split_of(example_id: str, seed: int, fractions: dict[str, float]) -> str:
    """The split an id falls in; ``fractions`` (e.g. train 0.9, dev 0.1) must sum to 1."""
    if abs(sum(fractions.values()) - 1.0) > 1e-9 or any(f < 0 for f in fractions.values()):
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    u = int(hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest()[:12], 16) / float(1 << 48)
    acc = 0.0
    for name, frac in fractions.items():
        acc += frac
        if u < acc:
            return name
    return next(reversed(fractions))


def split(examples: Sequence[QAExample], seed: int, fractions: dict[str, float]) -> dict[str, list[QAExample]]:
    out: dict[str, list[QAExample]] = {name: [] for name in fractions}
    for ex in examples:
        out[split_of(ex.id, seed, fractions)].append(ex)
    return out


def mix(sources: dict[str, Sequence[QAExample]], weights: dict[str, float], total: int, seed: int) -> list[QAExample]:
    """``total`` examples drawn from the sources in proportion to ``weights`` (capped by each source's size)."""
    if set(weights) != set(sources) or any(w < 0 for w in weights.values()) or not sum(weights.values()):
        raise ValueError("weights must name every source, be non-negative and not all zero")
    rng = random.Random(seed)
    norm = sum(weights.values())
    out: list[QAExample] = []
    for name in sorted(sources):
        want = min(len(sources[name]), round(total * weights[name] / norm))
        out.extend(rng.sample(list(sources[name]), want))
    ids = [ex.id for ex in out]
    if len(set(ids)) != len(ids):
        raise ValueError("example ids collide across sources; give each source its own dataset name")
    rng.shuffle(out)
    return out

"""QA sources by name: ``world:default[:split]`` (the synthetic world) or a jsonl file with ``question``
and ``golden_answers`` (FlashRAG) or ``answer`` (R1-Searcher), one object per line."""

from __future__ import annotations

import json
from pathlib import Path

from searchrl.data.world import SPLITS, World, default_world
from searchrl.types import QAExample


class DataError(ValueError):
    """A QA source that cannot be read; the message names the file, line and field."""


def world_for(name: str) -> World:
    if name != "default":
        raise DataError(f"unknown world '{name}'; available: default (or generate one with `searchrl data world`)")
    return default_world()


def load_source(spec: str, split: str = "train", limit: int | None = None) -> list[QAExample]:
    """Examples of ``spec``; ``world:<name>[:<split>]`` picks a world split (default ``split``)."""
    if spec.startswith("world:"):
        parts = spec.split(":")
        chosen = parts[2] if len(parts) > 2 else split
        if chosen not in SPLITS:
            raise DataError(f"unknown split '{chosen}'; valid: {', '.join(SPLITS)}")
        examples = world_for(parts[1]).questions[chosen]
    else:
        examples = _jsonl(Path(spec))
    return examples[:limit] if limit is not None else examples


def _jsonl(path: Path) -> list[QAExample]:
    if not path.is_file():
        raise DataError(f"QA file not found: {path}")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("question"), str):
            raise DataError(f"{path}:{n}: missing field 'question' (a string)")
        answers = rec.get("golden_answers", rec.get("answer"))
        answers = [answers] if isinstance(answers, str) else answers
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise DataError(f"{path}:{n}: field 'golden_answers'/'answer' must be a non-empty list of strings")
        native = str(rec.get("id", rec.get("idx", n - 1)))
        out.append(
            QAExample(
                f"{path.stem}/{native}", rec["question"], tuple(answers), path.stem, metadata=rec.get("metadata") or {}
            )
        )
    return out

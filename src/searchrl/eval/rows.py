"""Reading finished evaluations back: ``<label>.jsonl`` files of eval rows (one JSON object per question)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["read_arm", "read_rows"]

_NEEDED = ("id", "dataset", "group")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of one eval file; a missing file or a row without id/dataset/group is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"eval rows not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
        missing = [k for k in _NEEDED if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"{path}:{n}: an eval row needs {', '.join(missing)}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no eval rows")
    return rows


def read_arm(spec: str) -> tuple[str, list[list[dict[str, Any]]]]:
    """``a.jsonl`` -> ("a", [rows]); ``label=s0.jsonl,s1.jsonl`` -> ("label", [rows of s0, rows of s1])."""
    label, sep, files = spec.partition("=")
    if not sep:
        return Path(spec).stem, [read_rows(spec)]
    paths = [f for f in files.split(",") if f]
    if not label or not paths:
        raise ValueError(f"arm '{spec}' must look like label=run1.jsonl[,run2.jsonl...]")
    return label, [read_rows(p) for p in paths]

"""Reading finished evaluations back: ``<label>.jsonl`` files of eval rows (one JSON object per question)
and the ``<label>.manifest.json`` beside each (:mod:`searchrl.eval.manifest`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from searchrl.eval.manifest import Manifest, load_manifest

__all__ = ["arm_manifests", "arm_paths", "read_arm", "read_rows"]

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


def arm_paths(spec: str) -> tuple[str, list[Path]]:
    """``a.jsonl`` -> ("a", [a.jsonl]); ``label=s0.jsonl,s1.jsonl`` -> ("label", [s0.jsonl, s1.jsonl])."""
    label, sep, files = spec.partition("=")
    if not sep:
        return Path(spec).stem, [Path(spec)]
    paths = [Path(f) for f in files.split(",") if f]
    if not label or not paths:
        raise ValueError(f"arm '{spec}' must look like label=run1.jsonl[,run2.jsonl...]")
    return label, paths


def read_arm(spec: str) -> tuple[str, list[list[dict[str, Any]]]]:
    """``a.jsonl`` -> ("a", [rows]); ``label=s0.jsonl,s1.jsonl`` -> ("label", [rows of s0, rows of s1])."""
    label, paths = arm_paths(spec)
    return label, [read_rows(p) for p in paths]


def arm_manifests(label: str, paths: Sequence[Path]) -> dict[str, Manifest | None]:
    """The manifest beside each run's rows (None: written before manifests), labelled ``label`` for one
    run and ``label/<file stem>`` for several (``label/<path>`` when their stems repeat)."""
    if len(paths) == 1:
        return {label: load_manifest(paths[0])}
    names = [p.stem for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    return {f"{label}/{n}": load_manifest(p) for n, p in zip(names, paths, strict=True)}

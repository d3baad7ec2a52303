"""QA sources by name: ``world:default[:split]`` (the synthetic world) or any file ``load_qa`` reads."""

from __future__ import annotations

from pathlib import Path

from searchrl.data.qa import DataError
from searchrl.data.world import SPLITS, World, default_world
from searchrl.types import QAExample


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
        examples = _file(Path(spec))
    return examples[:limit] if limit is not None else examples


def _file(path: Path) -> list[QAExample]:
    from searchrl.data.qa import load_qa

    return load_qa(path).examples

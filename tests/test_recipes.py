"""Every recipe file loads into a valid config (unknown keys or bad values would fail here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from searchrl.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = [*sorted((ROOT / "recipes").glob("*.yaml")), ROOT / "src/searchrl/configs/demo.yaml"]


def test_recipes_exist() -> None:
    names = {p.stem for p in RECIPES}
    assert {"search_r1_ppo", "search_r1_grpo", "r1_searcher_stage1", "r1_searcher_stage2", "demo"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.train.mask_retrieved_tokens

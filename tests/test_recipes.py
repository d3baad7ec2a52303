"""Every recipe file loads into a valid config (unknown keys or bad values would fail here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from searchrl.config import load_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = [*sorted((ROOT / "recipes").glob("*.yaml")), ROOT / "src/searchrl/configs/demo.yaml"]


def test_recipes_exist() -> None:
    names = {p.stem for p in RECIPES}
    assert {
        "search_r1_ppo",
        "search_r1_grpo",
        "r1_searcher_stage1",
        "r1_searcher_stage2",
        "r1_searcher_two_stage",
        "demo",
    } <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.train.mask_retrieved_tokens


def test_two_stage_recipe_switches_rewards_at_step_20() -> None:
    cfg = load_config(ROOT / "recipes/r1_searcher_two_stage.yaml")
    assert [(s.reward, s.until_step) for s in cfg.train.reward_schedule] == [
        ("r1_searcher_stage1", 20),
        ("r1_searcher_stage2", None),
    ]
    assert cfg.train.steps > 20

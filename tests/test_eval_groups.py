"""Question types for any QA file: the world's 1hop/2hop/compare, HotpotQA's bridge/comparison,
MuSiQue's hop count (from its ids), else one group per dataset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from searchrl.data.qa import load_qa
from searchrl.data.world import generate_world
from searchrl.eval.run import group_of
from searchrl.types import QAExample


def test_world_types() -> None:
    world = generate_world(seed=3, size="tiny")
    kinds = Counter(group_of(e) for e in world.questions["test"])
    assert set(kinds) == {"1hop", "2hop", "compare"}


def test_real_files_group_by_type_and_hops(raw_data: Path) -> None:
    hotpot = load_qa(raw_data / "hotpotqa/OSU-NLP-Group__HippoRAG/hotpotqa_train.json", limit=200).examples
    assert set(Counter(group_of(e) for e in hotpot)) == {"bridge", "comparison"}
    musique = load_qa(raw_data / "musique/OSU-NLP-Group__HippoRAG/musique_train.json", limit=300).examples
    hops = Counter(group_of(e) for e in musique)  # ids 2hop__, 3hop1__, 3hop2__, 4hop1__, 4hop3__
    assert set(hops) == {"2hop", "3hop", "4hop"}
    bamboogle = next((raw_data / "bamboogle").rglob("*.jsonl"), None) or next((raw_data / "bamboogle").rglob("*"))
    plain = load_qa(bamboogle, limit=5).examples
    assert {group_of(e) for e in plain} == {plain[0].dataset}  # no type: the dataset is the group


def test_ids_that_only_look_like_hops_are_not_hops() -> None:
    assert group_of(QAExample("ds/2hop__1_2", "q", ("a",), "ds")) == "2hop"
    assert group_of(QAExample("ds/3hop2__1_2_3", "q", ("a",), "ds")) == "3hop"
    assert group_of(QAExample("ds/xhop__1", "q", ("a",), "ds")) == "ds"
    assert group_of(QAExample("ds/hop__1", "q", ("a",), "ds")) == "ds"
    assert group_of(QAExample("ds/7", "q", ("a",), "ds", metadata={"type": "bridge"})) == "bridge"

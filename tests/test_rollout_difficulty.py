"""The difficulty filter: pass rates from k scripted rollouts, binning, and the files it writes."""

from __future__ import annotations

import json
from pathlib import Path

from searchrl.data.protocols import PROTOCOLS
from searchrl.rollout.difficulty import bin_examples, pass_rates, write_bins
from searchrl.rollout.engine import RolloutEngine, RolloutLimits
from searchrl.rollout.scripted import ScriptedBackend
from searchrl.types import QAExample, Trajectory


class Empty:
    def search(self, queries, k):  # type: ignore[no-untyped-def]
        return [[] for _ in queries]


def test_pass_rates_and_bins(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    examples = [QAExample(f"d/{i}", f"q{i}", ("yes",), "d") for i in range(3)]
    # rows are (example, sample): example 0 right 4/4, example 1 right 2/4, example 2 right 0/4
    answers = ["yes"] * 4 + ["yes", "no", "yes", "no"] + ["no"] * 4
    backend = ScriptedBackend(smol_tokenizer, [[f"<answer>{a}</answer>"] for a in answers])
    engine = RolloutEngine(backend, Empty(), smol_tokenizer, PROTOCOLS["search_r1"], RolloutLimits())

    def reward(t: Trajectory, golds: tuple[str, ...]) -> float:
        return float(t.answer in golds)

    rates = pass_rates(examples, engine, lambda ex: [1, 2, 3], reward, k=4, batch_size=3)
    assert rates == {"d/0": 1.0, "d/1": 0.5, "d/2": 0.0}
    binned = bin_examples(examples, rates)
    assert [[e.id for e in binned[b]] for b in ("easy", "medium", "hard")] == [["d/0"], ["d/1"], ["d/2"]]
    write_bins(tmp_path, binned, rates)
    row = json.loads((tmp_path / "medium.jsonl").read_text())
    assert row["question"] == "q1" and row["golden_answers"] == ["yes"] and row["pass_rate"] == 0.5

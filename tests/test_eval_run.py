"""Evaluation scoring: EM from the answer tag only; F1/cover-EM fall back to what the policy wrote,
never to injected passages; tables per group."""

from __future__ import annotations

from searchrl.data.protocols import PROTOCOLS
from searchrl.eval.run import evaluate, markdown_table, summarize
from searchrl.rollout.engine import RolloutEngine, RolloutLimits
from searchrl.rollout.scripted import ScriptedBackend
from searchrl.types import Passage, QAExample


class Fixed:
    def search(self, queries, k):  # type: ignore[no-untyped-def]
        return [[Passage("p", "Varnholt", "The answer is Varnholt.", 1.0)] for _ in queries]


EXAMPLES = [
    QAExample("w/0", "Where was Ilse born?", ("Varnholt",), "world", metadata={"type": "1hop"}),
    QAExample("w/1", "Where was Oda born?", ("Tessaly",), "world", metadata={"type": "2hop"}),
    QAExample("w/2", "Where was Ivo born?", ("Oss",), "world", metadata={"type": "2hop"}),
]


def test_agent_scoring(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    scripts = [
        ["<search>Ilse</search>", "<answer>Varnholt</answer>"],  # right, tagged
        ["<search>Oda</search>", "She was born in Tessaly." + smol_tokenizer.eos_token],  # right, untagged
        ["<search>Ivo</search>", "No idea." + smol_tokenizer.eos_token],  # wrong; passages say Varnholt
    ]
    backend = ScriptedBackend(smol_tokenizer, scripts)
    engine = RolloutEngine(backend, Fixed(), smol_tokenizer, PROTOCOLS["search_r1"], RolloutLimits())
    rows = evaluate("agent", EXAMPLES, engine)
    assert [r.em for r in rows] == [1.0, 0.0, 0.0]
    assert [r.cover_em for r in rows] == [1.0, 1.0, 0.0]  # the injected "Varnholt" never counts
    assert [r.searches for r in rows] == [1, 1, 1]
    table = summarize(rows, key=lambda r: r.group)
    assert table["1hop"]["em"] == 1.0 and table["2hop"]["cover_em"] == 0.5 and table["all"]["n"] == 3
    assert "| agent | 2hop | 2 |" in markdown_table({"agent": table})


def test_baselines_cannot_search(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    scripts = [["<search>x</search>", "Varnholt</answer>"], ["<answer>Tessaly</answer>"], ["<answer>no</answer>"]]
    backend = ScriptedBackend(smol_tokenizer, scripts)
    retriever = Fixed()
    engine = RolloutEngine(backend, retriever, smol_tokenizer, PROTOCOLS["search_r1"], RolloutLimits())
    rows = evaluate("rag", EXAMPLES, engine)
    assert [r.searches for r in rows] == [0, 0, 0]
    assert [r.em for r in rows] == [1.0, 1.0, 0.0]  # the refused search led to a forced answer

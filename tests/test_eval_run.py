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


def test_rag_agent_is_the_agents_prompt_with_the_search_made(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """The RAG baseline in the agent's own prompt family (F4b: a plain-text demo): the question searched
    once before the model writes; it cannot search again, and its rows count no search of its own."""
    from searchrl.eval.manifest import prompt_hash
    from searchrl.eval.run import build_prompts
    from searchrl.rollout.prompts import prompt_ids

    demo = PROTOCOLS["r1_searcher_demo_two"]
    ids = build_prompts("rag_agent", EXAMPLES[:1], smol_tokenizer, demo, Fixed(), 3)[0]
    agent = prompt_ids(smol_tokenizer, demo, EXAMPLES[0].question)
    assert ids[: len(agent)] == agent
    tail = smol_tokenizer.decode(ids[len(agent) :])
    assert tail == (
        "<|begin_of_query|> Where was Ilse born? <|end_of_query|>\n\n<|begin_of_documents|>\n"
        "(1) Varnholt\nThe answer is Varnholt.\n<|end_of_documents|>\n\n"
    )
    scripts = [["<|begin_of_query|>x<|end_of_query|>", "Varnholt</answer>"], ["<answer> Tessaly </answer>"]]
    engine = RolloutEngine(ScriptedBackend(smol_tokenizer, scripts), Fixed(), smol_tokenizer, demo, RolloutLimits())
    rows = evaluate("rag_agent", EXAMPLES[:2], engine)
    assert [r.searches for r in rows] == [0, 0] and [r.em for r in rows] == [1.0, 1.0]
    assert len({prompt_hash(m, demo) for m in ("agent", "rag_agent", "rag")}) == 3

"""The behaviour audit (searchrl.audit): each check on hand-written positive and negative trajectories,
built by the real rollout engine from scripted turns (so policy and injected text are split by the
real loss_mask), the batch shares, the search-drift rule, and the wiring into eval rows and tables
and into a training step's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.rollout import GREEDY, make_engine, prompt_ids
from helpers.training import make_trainer
from searchrl.audit import (
    AUDIT_CHECKS,
    SearchDrift,
    answer_without_search,
    audit_batch,
    copied_example,
    copied_passage,
    hallucinated_evidence,
    multiple_answers,
    query_repeated,
    query_repeats_question,
    worked_example,
)
from searchrl.data.protocols import PROTOCOLS
from searchrl.eval.run import evaluate, markdown_table, summarize, write_results
from searchrl.report import write_report
from searchrl.rollout.engine import RolloutRequest
from searchrl.rollout.trace import text_spans
from searchrl.types import QAExample, Trajectory

SR1 = PROTOCOLS["search_r1"]
DEMO = PROTOCOLS["r1_searcher_demo"]
QUESTION = "Where was Ilse Marrow born?"


def roll(tok, script: list[str], protocol: str = "search_r1") -> Trajectory:  # type: ignore[no-untyped-def]
    engine, _, _ = make_engine(tok, [script], protocol=protocol)
    (traj,) = engine.run([RolloutRequest("q", 0, prompt_ids(tok, QUESTION))], GREEDY, seed=0)
    return traj


def test_audit_multiple_answers(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    tok = smol_tokenizer
    nested = roll(tok, ["<answer> Oss <answer> Varnholt </answer>"])
    retried = roll(tok, ["I think <answer> Oss", "<answer> Varnholt </answer>"])  # unclosed, corrected, again
    once = roll(tok, ["<search>Ilse Marrow</search>", "<answer>Varnholt</answer>"])
    assert retried.n_invalid == 1 and retried.answer == "Varnholt"
    assert multiple_answers(text_spans(nested, tok), SR1)
    assert multiple_answers(text_spans(retried, tok), SR1)
    assert not multiple_answers(text_spans(once, tok), SR1)


def test_audit_copied_passage(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    tok = smol_tokenizer
    lifted = "Varnholt is a city founded in 1712 on the river"  # 8 normalized words of passage p1
    copied = roll(tok, ["<search>Varnholt city</search>", f"<answer>{lifted}</answer>"])
    assert copied_passage(copied, text_spans(copied, tok), SR1)
    short = roll(tok, ["<search>Varnholt city</search>", "<answer>Varnholt is a city founded in 1712</answer>"])
    assert not copied_passage(short, text_spans(short, tok), SR1)  # 6 words: under the threshold
    unseen = roll(tok, [f"<answer>{lifted}</answer>"])  # the same words, but nothing was retrieved
    assert not copied_passage(unseen, text_spans(unseen, tok), SR1)
    own = "she was born in a small town near the sea"
    written = roll(tok, ["<search>Varnholt city</search>", f"<answer>{own}</answer>"])
    assert not copied_passage(written, text_spans(written, tok), SR1)


def test_audit_worked_example_of_each_protocol() -> None:
    demo = worked_example(DEMO)
    assert demo is not None and demo.answer == "Rembrandt" and "painting by Rembrandt" in demo.passage
    plain = worked_example(SR1)  # "for example <answer> Lisbon </answer>"; its tags are only named
    assert plain is not None and plain.answer == "Lisbon" and plain.passage == ""


def test_audit_copied_example(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    tok, demo = smol_tokenizer, worked_example(DEMO)

    def answer(text: str, protocol: str = "r1_searcher_demo") -> Trajectory:
        return roll(tok, [f"<answer> {text} </answer>"], protocol)

    assert copied_example(answer("The Night Watch is a painting by Rembrandt"), demo)  # F4's answer
    assert copied_example(answer("Rembrandt"), demo)
    assert copied_example(answer("the Night Watch"), demo)
    assert not copied_example(answer("Rembrandt"), demo, golds=("Rembrandt",))  # really the answer
    assert not copied_example(answer("Varnholt"), demo)
    assert not copied_example(answer("painting"), demo)  # one shared word is no copy
    assert not copied_example(answer("a painting of Varnholt"), demo)
    assert copied_example(answer("Lisbon", "search_r1"), worked_example(SR1))
    assert not copied_example(roll(tok, ["no answer" + tok.eos_token]), demo)


def test_audit_query_repeats_question_or_itself(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    tok = smol_tokenizer
    verbatim = roll(tok, ["<search>where was Ilse Marrow born</search>", "<answer>Varnholt</answer>"])
    rephrased = roll(tok, ["<search>Ilse Marrow birthplace</search>", "<answer>Varnholt</answer>"])
    assert query_repeats_question(verbatim, QUESTION) and not query_repeats_question(rephrased, QUESTION)
    again = roll(tok, ["<search>Ilse Marrow</search>", "<search> ilse marrow. </search>", "<answer>V</answer>"])
    two = roll(tok, ["<search>Ilse Marrow</search>", "<search>Varnholt founded</search>", "<answer>V</answer>"])
    assert query_repeated(again) and not query_repeated(two) and not query_repeated(rephrased)


def test_audit_hallucinated_evidence(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    tok = smol_tokenizer
    block = roll(tok, ["<information> Oss is where she was born </information> <answer>Oss</answer>"])
    header = roll(tok, ['Doc 1(Title: "Oss") She was born in Oss. <answer>Oss</answer>'])
    real = roll(tok, ["<search>Ilse Marrow</search>", "<answer>Varnholt</answer>"])  # injected block: mask 0
    assert "<information>" in real.response_text and 'Doc 1(Title: "' in real.response_text
    assert hallucinated_evidence(text_spans(block, tok), SR1)
    assert hallucinated_evidence(text_spans(header, tok), SR1)
    assert not hallucinated_evidence(text_spans(real, tok), SR1)
    docs = roll(tok, ["<|begin_of_documents|> made up <|end_of_documents|> <answer> Oss </answer>"], "r1_searcher")
    assert hallucinated_evidence(text_spans(docs, tok), PROTOCOLS["r1_searcher"])
    assert not hallucinated_evidence(text_spans(docs, tok), SR1)  # another protocol's tags


def test_audit_answer_without_search(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    tok = smol_tokenizer
    blind = roll(tok, ["<answer>Varnholt</answer>"])
    searched = roll(tok, ["<search>Ilse Marrow</search>", "<answer>Varnholt</answer>"])
    silent = roll(tok, ["I do not know." + tok.eos_token])
    assert answer_without_search(blind, "1hop")  # default: every question needs a search
    assert answer_without_search(blind, "2hop", needs_search={"2hop", "compare"})
    assert not answer_without_search(blind, "1hop", needs_search={"2hop", "compare"})
    assert not answer_without_search(searched, "1hop") and not answer_without_search(silent, "1hop")


def test_audit_batch_shares(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    tok = smol_tokenizer
    trajs = [
        roll(tok, ["<answer> Oss <answer> Varnholt </answer>"]),  # several answers, no search
        roll(tok, ["<search>where was Ilse Marrow born</search>", "<answer>Varnholt</answer>"]),
        roll(tok, ["<search>Ilse Marrow</search>", "<search>ilse marrow</search>", "<answer>Lisbon</answer>"]),
        roll(tok, ["<search>Ilse Marrow</search>", "<answer>Varnholt</answer>"]),  # clean
    ]
    shares = audit_batch(trajs, [QUESTION] * 4, ["1hop"] * 4, SR1, tok, golds=[("Varnholt",)] * 4)
    assert set(shares) == {f"audit/{c}" for c in AUDIT_CHECKS}
    assert shares["audit/multiple_answers"] == 0.25 and shares["audit/answer_without_search"] == 0.25
    assert shares["audit/query_repeats_question"] == 0.25 and shares["audit/query_repeated"] == 0.25
    assert shares["audit/copied_example"] == 0.25  # "Lisbon", search_r1's format example
    assert shares["audit/copied_passage"] == 0.0 and shares["audit/hallucinated_evidence"] == 0.0
    assert audit_batch([], [], [], SR1, tok)["audit/query_repeated"] == 0.0


def test_audit_search_drift_flags_the_one_search_shortcut() -> None:
    warnings: list[str] = []
    drift = SearchDrift(window=3, tolerance=0.05, warn=warnings.append)
    out = [drift.update(s) for s in (1.75, 1.5, 1.0, 1.02, 0.98, 1.0, 1.5)]
    assert [o["audit/searches_collapsed"] for o in out] == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
    assert out[0]["audit/searches_drift"] == 0.0 and out[4]["audit/searches_drift"] == pytest.approx(0.98 - 1.75)
    assert len(warnings) == 1 and "1.75" in warnings[0]  # warned once, when it tripped


@pytest.mark.parametrize(
    "series",
    [
        (1.2, 1.0, 1.0, 1.0, 1.0),  # started at or under 1.3: one search was never a change
        (1.75, 1.1, 1.1, 1.1, 1.1),  # fewer searches, but not exactly one
        (1.75, 1.0, 1.0, 1.5, 1.0),  # never `window` steps in a row at 1.00
        (1.75, 0.5, 0.5, 0.5, 0.5),  # below one: a different failure, not the one-search shortcut
    ],
)
def test_audit_search_drift_stays_quiet(series: tuple[float, ...]) -> None:
    warnings: list[str] = []
    drift = SearchDrift(window=3, warn=warnings.append)
    assert all(drift.update(s)["audit/searches_collapsed"] == 0.0 for s in series) and not warnings


def test_audit_in_eval_rows_and_tables(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tok = smol_tokenizer
    examples = [
        QAExample("w/0", QUESTION, ("Varnholt",), "world", metadata={"type": "1hop"}),
        QAExample("w/1", "Who founded the Quillon Company?", ("Ilse Marrow",), "world", metadata={"type": "2hop"}),
    ]
    scripts = [["<answer>Varnholt</answer>"], ["<search>Quillon Company</search>", "<answer>Ilse Marrow</answer>"]]
    engine, _, _ = make_engine(tok, scripts)
    rows = evaluate("agent", examples, engine)
    assert rows[0].audit["answer_without_search"] and not rows[1].audit["answer_without_search"]
    assert set(rows[0].audit) == set(AUDIT_CHECKS)
    table = summarize(rows, key=lambda r: r.group)
    assert table["1hop"]["audit/answer_without_search"] == 1.0 and table["all"]["audit/answer_without_search"] == 0.5
    write_results(tmp_path, "agent", rows)
    saved = json.loads((tmp_path / "agent.json").read_text())
    assert saved["2hop"]["audit/answer_without_search"] == 0.0
    assert json.loads((tmp_path / "agent.jsonl").read_text().splitlines()[0])["audit"]["answer_without_search"]
    assert "audit" not in markdown_table({"agent": table})  # the markdown table keeps its columns


def test_audit_metrics_of_a_training_step(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer = make_trainer(smol_tokenizer, "grpo", tmp_path / "run", steps=1)
    (m,) = trainer.fit(1)
    assert {f"audit/{c}" for c in AUDIT_CHECKS} <= set(m)
    assert all(0.0 <= m[f"audit/{c}"] <= 1.0 for c in AUDIT_CHECKS)
    assert m["audit/searches_drift"] == 0.0 and m["audit/searches_collapsed"] == 0.0
    logged = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "audit/copied_passage" in logged and "audit/searches_drift" in logged


def test_audit_section_of_the_report(tmp_path: Path) -> None:
    metrics = [
        {"step": 1, "reward/mean": 0.1, "audit/copied_example": 0.5, "audit/searches_collapsed": 0.0},
        {"step": 2, "reward/mean": 0.2, "audit/copied_example": 0.25, "audit/searches_collapsed": 1.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    page = write_report(tmp_path).read_text()
    assert "<h2>Behaviour audit</h2>" in page and "<td>audit/copied_example</td><td>0.250</td>" in page
    assert 'data-metric="audit/searches_collapsed"' in page and page.count('<svg class="chart"') == 3
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward/mean": 0.1}) + "\n")
    assert "Behaviour audit" not in write_report(tmp_path).read_text()


def test_audit_row_reads_back_the_checks_of_a_row_written_without_them(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """Rows written before rows carried the audit get the same flags from their text (spans) alone."""
    from dataclasses import asdict

    from searchrl.audit import audit_row

    examples = [QAExample(f"w/{i}", QUESTION, ("Varnholt",), "world", metadata={"type": "1hop"}) for i in range(4)]
    scripts = [
        ["<search>Ilse Marrow</search>", "<search>Ilse Marrow</search>", "<answer>Varnholt</answer>"],
        ["<answer>Varnholt</answer>"],
        [f"<search>{QUESTION}</search>", "<information>Doc 1(Title: x) y</information><answer>Oss</answer>"],
        [
            "<search>Quillon Company</search>",
            "<answer>Ilse Marrow was born in Varnholt and founded the Quillon Company</answer>",
        ],
    ]
    engine, _, _ = make_engine(smol_tokenizer, scripts)
    rows = evaluate("agent", examples, engine)
    flagged = set()
    for row in rows:
        old = json.loads(json.dumps(asdict(row)))  # as read back from a jsonl file
        old.pop("audit")
        assert audit_row(old, SR1) == row.audit, row.response
        flagged |= {name for name, hit in row.audit.items() if hit}
    assert {"query_repeated", "answer_without_search", "query_repeats_question", "hallucinated_evidence"} <= flagged
    assert "copied_passage" in flagged

"""Rollout engine with a scripted generator, the real SmolLM2 tokenizer and an in-memory retriever.

The invariants checked here are the loss-mask contract of DESIGN.md: ids and mask have equal length;
every token the policy sampled has mask 1 (and they are exactly the tokens the backend handed out, in
order); every token of every ``<information>`` block, corrective message and forced prefix has mask 0.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.rollout import GREEDY, make_engine, prompt_ids
from searchrl.data.protocols import PROTOCOLS
from searchrl.rollout.engine import RolloutLimits, RolloutRequest
from searchrl.rollout.scripted import ScriptedBackend
from searchrl.types import Trajectory


def run(engine, tokenizer, n: int) -> list[Trajectory]:  # type: ignore[no-untyped-def]
    reqs = [RolloutRequest(f"q{i}", i, prompt_ids(tokenizer, f"question number {i}?")) for i in range(n)]
    return engine.run(reqs, GREEDY, seed=0)


def check_invariants(traj: Trajectory, backend: ScriptedBackend, key: int, tokenizer, protocol) -> None:  # type: ignore[no-untyped-def]
    traj.check()
    assert len(traj.ids) == len(traj.loss_mask) == len(traj.logprobs) == len(traj.attention_mask)
    assert traj.loss_mask[: traj.prompt_len] == [0] * traj.prompt_len
    sampled = [t for t, m in zip(traj.ids, traj.loss_mask, strict=True) if m == 1]
    assert sampled == backend.sampled.get(key, [])
    # every token inside an <information> block was injected, never sampled
    head, _, tail = protocol.wrap_information("\x00").partition("\x00")
    pos, text_offsets = 0, []
    for t in traj.ids:
        text_offsets.append(pos)
        pos += len(tokenizer.decode([t]))
    full = "".join(tokenizer.decode([t]) for t in traj.ids)
    start = full.find(head.strip())
    while start >= 0:
        end = full.find(tail.strip(), start)
        assert end >= 0, "an <information> block was left open"
        inside = [i for i, off in enumerate(text_offsets) if start <= off < end + len(tail.strip())]
        assert all(traj.loss_mask[i] == 0 for i in inside)
        start = full.find(head.strip(), end)


def test_two_hop_trajectory(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    scripts = [
        [
            "<think>I need the founder.</think><search>Quillon Company founder</search>",
            "<search>Ilse Marrow born</search>",
            "<think>Varnholt.</think><answer>Varnholt</answer>",
        ]
    ]
    engine, backend, retriever = make_engine(smol_tokenizer, scripts)
    (traj,) = run(engine, smol_tokenizer, 1)
    assert traj.finish_reason == "answer" and traj.answer == "Varnholt"
    assert [t.action for t in traj.turns] == ["search", "search", "answer"]
    assert traj.turns[0].query == "Quillon Company founder"
    assert traj.turns[0].passage_ids[0] in {"p2", "p3"} and len(traj.turns[0].passage_ids) == 3
    assert traj.n_searches == 2 and retriever.calls == [["Quillon Company founder"], ["Ilse Marrow born"]]
    check_invariants(traj, backend, 0, smol_tokenizer, PROTOCOLS["search_r1"])
    assert "Doc 1" in traj.response_text and traj.response_text.count("<information>") == 2
    injected = sum(t.injected for t in traj.turns)
    assert len(traj.ids) - traj.prompt_len == traj.n_policy_tokens + injected


def test_batched_searches_one_call_and_rows_leave(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    scripts = [
        ["<answer>Tessaly</answer>"],
        ["<search>Varnholt river</search>", "<answer>Oss</answer>"],
        ["<search>weavers village</search>", "<answer>Tessaly</answer>"],
    ]
    engine, backend, retriever = make_engine(smol_tokenizer, scripts)
    trajs = run(engine, smol_tokenizer, 3)
    assert retriever.calls == [["Varnholt river", "weavers village"]]  # one batched call for the turn
    assert backend.calls == [[0, 1, 2], [1, 2]]  # the finished row left the batch
    assert [t.answer for t in trajs] == ["Tessaly", "Oss", "Tessaly"]
    for i, t in enumerate(trajs):
        check_invariants(t, backend, i, smol_tokenizer, PROTOCOLS["search_r1"])


def test_invalid_action_gets_masked_corrective_message(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    protocol = PROTOCOLS["search_r1"]
    scripts = [["I think the answer is blue", "<search></search>", "<answer>blue</answer>"]]
    engine, backend, _ = make_engine(smol_tokenizer, scripts, RolloutLimits(max_turns=5))
    (traj,) = run(engine, smol_tokenizer, 1)
    assert [t.action for t in traj.turns] == ["invalid", "invalid", "answer"]
    assert traj.turns[1].invalid_reason
    assert traj.response_text.count(protocol.corrective_message.strip()) == 2
    assert traj.n_invalid == 2 and traj.answer == "blue"
    check_invariants(traj, backend, 0, smol_tokenizer, protocol)


def test_turn_budget_forces_an_answer(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    protocol = PROTOCOLS["search_r1"]
    scripts = [
        ["<search>a</search>", "<search>b</search>", "Varnholt</answer>"],
        ["<search>a</search>", "<search>b</search>", "<search>c</search>"],
    ]
    engine, backend, retriever = make_engine(smol_tokenizer, scripts, RolloutLimits(max_turns=3, max_searches=5))
    traj, stubborn = run(engine, smol_tokenizer, 2)
    assert stubborn.finish_reason == "no_answer" and stubborn.turns[-1].action == "invalid"
    # turns 1-2 search; the budget leaves room for one forced answer turn only
    assert [t.action for t in traj.turns] == ["search", "search", "answer"]
    assert traj.answer == "Varnholt" and traj.finish_reason == "answer"
    assert retriever.calls == [["a", "a"], ["b", "b"]]
    assert protocol.force_answer_prefix in traj.response_text
    check_invariants(traj, backend, 0, smol_tokenizer, protocol)


def test_stop_mode_and_search_budget(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    scripts = [["<search>a</search>", "<search>b</search>", "<answer>x</answer>"]]
    limits = RolloutLimits(max_turns=5, max_searches=1, on_budget="stop")
    engine, backend, retriever = make_engine(smol_tokenizer, scripts, limits)
    (traj,) = run(engine, smol_tokenizer, 1)
    assert traj.finish_reason == "max_turns" and traj.answer is None
    assert len(retriever.calls) == 1 and traj.turns[-1].invalid_reason == "search budget exhausted"
    check_invariants(traj, backend, 0, smol_tokenizer, PROTOCOLS["search_r1"])


def test_context_budget_truncates_passages_and_holds(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    scripts = [["<search>Varnholt</search>", "<search>Ilse</search>", "<answer>Oss</answer>"]]
    limits = RolloutLimits(max_context=120, answer_reserve=16, max_new_tokens=40)
    engine, backend, _ = make_engine(smol_tokenizer, scripts, limits)
    (traj,) = run(engine, smol_tokenizer, 1)
    assert len(traj.ids) <= 120
    assert traj.finish_reason in {"answer", "context"}
    check_invariants(traj, backend, 0, smol_tokenizer, PROTOCOLS["search_r1"])


def test_eos_without_action_ends_without_answer(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    scripts = [["I do not know." + smol_tokenizer.eos_token]]
    engine, _, _ = make_engine(smol_tokenizer, scripts)
    (traj,) = run(engine, smol_tokenizer, 1)
    assert traj.finish_reason == "no_answer" and traj.answer is None
    assert traj.ids[-1] == smol_tokenizer.eos_token_id and traj.loss_mask[-1] == 1


def test_r1_searcher_protocol(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    protocol = PROTOCOLS["r1_searcher"]
    q_open, q_close = "<|begin_of_query|>", "<|end_of_query|>"
    scripts = [[f"Let me search. {q_open}Ilse Marrow{q_close}", "<answer>Varnholt</answer>"]]
    engine, backend, retriever = make_engine(smol_tokenizer, scripts, protocol="r1_searcher")
    (traj,) = run(engine, smol_tokenizer, 1)
    assert retriever.calls == [["Ilse Marrow"]]
    assert "<|begin_of_documents|>" in traj.response_text
    check_invariants(traj, backend, 0, smol_tokenizer, protocol)


FRAGMENTS = st.sampled_from(
    [
        "<search>",
        "</search>",
        "<answer>",
        "</answer>",
        "<think>",
        "</think>",
        "Varnholt",
        " river ",
        "\n",
        "<|im_end|>",
        "",
    ]
)
# policy text never contains an <information> tag here: the invariant below is about injected blocks
TURN_TEXT = st.lists(st.one_of(FRAGMENTS, st.text(max_size=12)), max_size=8).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scripts=st.lists(st.lists(TURN_TEXT, max_size=6), min_size=1, max_size=3), max_turns=st.integers(1, 5))
def test_arbitrary_text_never_breaks_invariants(smol_tokenizer, scripts, max_turns) -> None:  # type: ignore[no-untyped-def]
    limits = RolloutLimits(max_turns=max_turns, max_searches=2, max_context=400, max_new_tokens=48, answer_reserve=8)
    engine, backend, _ = make_engine(smol_tokenizer, scripts, limits)
    trajs = run(engine, smol_tokenizer, len(scripts))
    for i, traj in enumerate(trajs):
        check_invariants(traj, backend, i, smol_tokenizer, PROTOCOLS["search_r1"])
        assert len(traj.ids) <= 400
        assert len(traj.turns) <= max_turns
        assert traj.finish_reason in {"answer", "no_answer", "max_turns", "context"}


def test_limits_validate() -> None:
    with pytest.raises(ValueError):
        RolloutLimits(max_turns=0)


def test_readable_trace_marks_injected_text(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console

    from searchrl.rollout.trace import format_trace

    scripts = [["<search>Ilse Marrow</search>", "<answer>Varnholt</answer>"]]
    engine, _, _ = make_engine(smol_tokenizer, scripts)
    (traj,) = run(engine, smol_tokenizer, 1)
    plain = format_trace(traj, smol_tokenizer)
    assert plain.splitlines()[1] == "[policy] <search>Ilse Marrow</search>"
    assert "[env]\n    <information>" in plain and "[policy] <answer>Varnholt</answer>" in plain
    console = Console(record=True, width=200)
    console.print(format_trace(traj, smol_tokenizer, markup=True))
    assert "[policy] <search>Ilse Marrow</search>" in console.export_text()

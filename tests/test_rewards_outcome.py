"""Outcome rewards: the published values, the format check per protocol, the registry."""

from __future__ import annotations

from typing import get_args

import pytest

from searchrl.data.protocols import R1_SEARCHER, SEARCH_R1, TagProtocol
from searchrl.rewards.outcome import (
    REWARD_FUNCTIONS,
    RewardInput,
    RewardName,
    check_format,
    cover_em_reward,
    em_format_reward,
    em_reward,
    f1_reward,
    r1_searcher_stage1_reward,
    r1_searcher_stage2_reward,
    retrieved_blocks,
    reward_input,
)
from searchrl.types import Passage, Trajectory, Turn

PASSAGES = [Passage("1", "Lisbon", "Lisbon is the capital of Portugal."), Passage("2", "Porto", "Porto is a city.")]


def _search_turn(protocol: TagProtocol, query: str) -> str:
    return (
        "I should look this up. "
        + protocol.format_search(query)
        + protocol.wrap_information(protocol.format_passages(PASSAGES))
    )


def _response(protocol: TagProtocol, n_searches: int, answer: str = "Lisbon") -> str:
    text = "".join(_search_turn(protocol, f"query {i}") for i in range(n_searches))
    return text + "So the answer is " + protocol.format_answer(answer) + "<|im_end|>"


@pytest.mark.parametrize("protocol", [SEARCH_R1, R1_SEARCHER], ids=lambda p: p.name)
def test_check_format_accepts_the_protocols_own_shape(protocol: TagProtocol) -> None:
    for n in (0, 1, 3):
        assert check_format(_response(protocol, n), protocol, n)
    # forced answer after the budget: the prefix is injected right after a passage block
    forced = _search_turn(protocol, "q") + protocol.force_answer_prefix + " Lisbon" + protocol.answer_close
    assert check_format(forced, protocol, 1)


@pytest.mark.parametrize("protocol", [SEARCH_R1, R1_SEARCHER], ids=lambda p: p.name)
def test_check_format_rejects_broken_shapes(protocol: TagProtocol) -> None:
    good = _response(protocol, 1)
    assert not check_format(good, protocol, 2)  # count disagrees with the executed searches
    assert not check_format(_search_turn(protocol, "q"), protocol, 1)  # no answer
    two_answers = good + protocol.format_answer("Porto")
    assert not check_format(two_answers, protocol, 1)
    # documents the policy wrote itself
    fake_docs = protocol.wrap_information("made up") + _response(protocol, 0)
    assert not check_format(fake_docs, protocol, 0)
    # a query without its passage block
    assert not check_format(protocol.format_search("q") + protocol.format_answer("x"), protocol, 1)
    # text between a query and its passages
    bad_gap = protocol.format_search("q") + " hmm " + protocol.wrap_information("d") + protocol.format_answer("x")
    assert not check_format(bad_gap, protocol, 1)
    # unclosed answer
    assert not check_format(protocol.answer_open + " Lisbon", protocol, 0)


def test_tags_inside_passages_are_ignored() -> None:
    p = SEARCH_R1
    docs = p.wrap_information("a page quoting <answer> and </search> literally")
    text = p.format_search("q") + docs + p.format_answer("x")
    assert check_format(text, p, 1)
    assert retrieved_blocks(text, p) == ("a page quoting <answer> and </search> literally",)


def _traj(protocol: TagProtocol, turns: list[Turn], answer: str | None, text: str) -> Trajectory:
    return Trajectory(
        example_id="ds/1",
        sample_index=0,
        ids=[1, 2, 3],
        loss_mask=[0, 1, 1],
        logprobs=[0.0, -1.0, -1.0],
        prompt_len=1,
        turns=turns,
        answer=answer,
        finish_reason="answer" if answer is not None else "no_answer",
        response_text=text,
    )


def test_reward_input_from_trajectory() -> None:
    p = R1_SEARCHER
    turns = [Turn("search", 5, 20, query="query 0"), Turn("answer", 4)]
    inp = reward_input(_traj(p, turns, "Lisbon", _response(p, 1)), ["Lisbon"], p)
    assert inp == RewardInput(
        answer="Lisbon",
        golds=("Lisbon",),
        n_searches=1,
        n_invalid=0,
        format_ok=True,
        retrieved=(p.format_passages(PASSAGES),),
    )
    # an invalid action anywhere breaks the format, even if the text looks fine
    bad = reward_input(_traj(p, [Turn("invalid", 3), *turns], "Lisbon", _response(p, 1)), ["Lisbon"], p)
    assert not bad.format_ok and bad.n_invalid == 1
    none = reward_input(_traj(p, turns[:1], None, _search_turn(p, "q")), ["Lisbon"], p)
    assert not none.format_ok and none.answer is None


def _inp(answer: str | None, searches: int = 1, ok: bool = True, retrieved: tuple[str, ...] = ()) -> RewardInput:
    return RewardInput(answer, ("Lisbon", "Lisboa"), searches, 0, ok, retrieved)


def test_search_r1_em_reward() -> None:
    assert em_reward(_inp("the lisbon")) == 1.0
    assert em_reward(_inp("Lisbon, Portugal")) == 0.0
    assert em_reward(_inp(None)) == 0.0
    assert cover_em_reward(_inp("Lisbon, Portugal")) == 1.0
    assert f1_reward(_inp("Lisbon Portugal")) == pytest.approx(2 / 3)
    assert f1_reward(_inp(None)) == 0.0


def test_search_r1_format_aware_em_values() -> None:
    assert em_format_reward(_inp("Lisbon")) == 1.0
    assert em_format_reward(_inp("Lisbon", ok=False)) == pytest.approx(0.8)
    assert em_format_reward(_inp("Porto")) == pytest.approx(0.2)
    assert em_format_reward(_inp("Porto", retrieved=("Lisbon is a capital",))) == pytest.approx(0.3)
    assert em_format_reward(_inp("Porto", ok=False)) == pytest.approx(0.1)
    assert em_format_reward(_inp(None, ok=False)) == 0.0


def test_r1_searcher_stage1_values() -> None:
    # released reward server: answer ±1 by cover EM, +0.5 retrieval, +0.5 format
    assert r1_searcher_stage1_reward(_inp("It is Lisbon")) == 2.0
    assert r1_searcher_stage1_reward(_inp("Porto")) == 0.0
    assert r1_searcher_stage1_reward(_inp("Porto", searches=0)) == -0.5
    assert r1_searcher_stage1_reward(_inp(None, searches=0, ok=False)) == -1.0
    assert r1_searcher_stage1_reward(_inp("Lisbon", searches=3, ok=False)) == 1.5
    # the paper's stage 1 ignores the answer
    assert r1_searcher_stage1_reward(_inp("Porto"), answer_weight=0.0) == 1.0
    assert r1_searcher_stage1_reward(_inp("Lisbon", searches=0, ok=False), answer_weight=0.0) == 0.0


def test_r1_searcher_stage2_values() -> None:
    assert r1_searcher_stage2_reward(_inp("Lisbon")) == 1.0
    assert r1_searcher_stage2_reward(_inp("Lisbon Portugal")) == pytest.approx(2 / 3)
    assert r1_searcher_stage2_reward(_inp("Lisbon", ok=False)) == -1.0
    assert r1_searcher_stage2_reward(_inp(None, ok=False)) == -2.0
    assert r1_searcher_stage2_reward(_inp("Lisbon", ok=False), format_penalty=1.0) == 0.0


def test_registry_matches_literal_and_every_reward_is_a_float() -> None:
    assert set(REWARD_FUNCTIONS) == set(get_args(RewardName))
    for fn in REWARD_FUNCTIONS.values():
        for inp in (_inp("Lisbon"), _inp(None, 0, False), RewardInput(None, ())):
            assert isinstance(fn(inp), float)


def test_grounded_stage1_pays_retrieval_only_for_a_useful_passage() -> None:
    from searchrl.rewards.outcome import r1_searcher_stage1_grounded_reward as grounded

    placeholder = _inp("Porto", retrieved=("Kanka Drourteim was a painter",))  # searched, found nothing useful
    useful = _inp("Porto", retrieved=("The capital is Lisbon.",))
    assert r1_searcher_stage1_reward(placeholder) == 0.0  # the plain stage 1 pays the placeholder +0.5
    assert grounded(placeholder) == pytest.approx(-0.5)
    assert grounded(useful) == pytest.approx(0.0)
    assert grounded(_inp("Lisbon", retrieved=("Lisbon, at last",))) == pytest.approx(2.0)


def test_stage2_with_em_as_the_answer_reward() -> None:
    from searchrl.rewards.outcome import r1_searcher_stage2_em_reward as stage2_em

    assert stage2_em(_inp("Lisbon")) == 1.0
    assert stage2_em(_inp("Lisbon Portugal")) == 0.0  # F1 would pay 2/3
    assert stage2_em(_inp("Lisbon", ok=False)) == -1.0

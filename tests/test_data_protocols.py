"""Tag protocols: the parser reads only this turn's text, round-trips formatted actions, never raises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from searchrl.data.protocols import PROTOCOLS, Answer, Invalid, Search
from searchrl.types import Passage

NAMES = sorted(PROTOCOLS)
TAGS = [t for p in PROTOCOLS.values() for t in (p.query_open, p.query_close, p.answer_open, p.answer_close)]
plain = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() and not any(t in s for t in TAGS))


@pytest.mark.parametrize("name", NAMES)
@given(text=plain)
def test_round_trip(name: str, text: str) -> None:
    p = PROTOCOLS[name]
    assert p.parse_action("I think. " + p.format_search(text)) == Search(text.strip())
    assert p.parse_action(p.format_answer(text) + " trailing") == Answer(text.strip())


@pytest.mark.parametrize("name", NAMES)
@given(text=st.text(max_size=80))
def test_garbage_never_raises(name: str, text: str) -> None:
    assert isinstance(PROTOCOLS[name].parse_action(text), Search | Answer | Invalid)


def test_first_action_wins_and_reasons() -> None:
    p = PROTOCOLS["search_r1"]
    assert p.parse_action("<search>a</search><answer>b</answer>") == Search("a")
    assert p.parse_action("<answer>b</answer><search>a</search>") == Answer("b")
    assert p.parse_action("<search>  </search>") == Invalid("empty query")
    assert p.parse_action("<search>open") == Invalid("unclosed <search>")
    assert p.parse_action("no tags") == Invalid("no action tag")
    assert p.parse_action("</answer>") == Invalid("closing tag without its opening tag")
    assert PROTOCOLS["r1_searcher"].parse_action("<answer>\\boxed{42}</answer>") == Answer("42")


def test_example_answer_in_prompt_is_not_read() -> None:
    p = PROTOCOLS["search_r1"]
    assert "<answer>" in p.instruction  # the instruction shows an example answer, as Search-R1's does
    assert p.parse_action("<search>who</search>") == Search("who")  # only the generated turn is parsed
    full = p.instruction + "\n<search>x</search>\n<information>..</information>\n<answer>Oss</answer>"
    assert p.extract_answer(full) == "Oss"


def test_passage_formats() -> None:
    docs = [Passage("1", "Varnholt", "A town."), Passage("2", "Oss", "A river.")]
    assert (
        PROTOCOLS["search_r1"].format_passages(docs) == 'Doc 1(Title: "Varnholt") A town.\nDoc 2(Title: "Oss") A river.'
    )
    block = PROTOCOLS["r1_searcher"].wrap_information("x")
    assert block.strip().startswith("<|begin_of_documents|>") and block.strip().endswith("<|end_of_documents|>")


def test_demo_protocol_is_plain_text_and_its_example_is_well_formed(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from searchrl.rollout.prompts import prompt_ids

    demo, chat = PROTOCOLS["r1_searcher_demo"], PROTOCOLS["r1_searcher"]
    assert demo.stop_strings == chat.stop_strings and not demo.chat
    text = smol_tokenizer.decode(prompt_ids(smol_tokenizer, demo, "Where was Oss born?"))
    assert "<|im_start|>" not in text and text.endswith("Question: Where was Oss born?\n")
    assert "<|im_start|>" in smol_tokenizer.decode(prompt_ids(smol_tokenizer, chat, "Where was Oss born?"))
    # the worked example uses the protocol's own tags and passage format, and parses as a search then an answer
    example = demo.instruction.split("\n\nQuestion: ")[1]
    assert demo.parse_action(example) == Search("The Night Watch painter")
    block = demo.wrap_information(demo.format_passages([Passage("x", "The Night Watch", "by Rembrandt")])).strip()
    assert (
        block.splitlines()[:2] == ["<|begin_of_documents|>", "(1) The Night Watch"] and block.splitlines()[1] in example
    )
    assert demo.extract_answer(example) == "Rembrandt"


def test_demo_two_adds_a_second_example_with_another_answer() -> None:
    one, two = PROTOCOLS["r1_searcher_demo"], PROTOCOLS["r1_searcher_demo_two"]
    assert not two.chat and two.stop_strings == one.stop_strings
    first, second = two.instruction.split("\n\nQuestion: ")[1:3]
    assert first == one.instruction.split("\n\nQuestion: ")[1]  # the first example is the demo's
    assert two.parse_action(second) == Search("Marie Curie birthplace") and two.extract_answer(second) == "Warsaw"
    assert two.instruction.endswith("\n\nQuestion: {question}")


def test_config_protocol_names_are_the_registry() -> None:
    from typing import get_args

    from searchrl.config import RolloutConfig
    from searchrl.data.protocols import ProtocolName

    assert set(get_args(ProtocolName)) == set(PROTOCOLS)
    assert RolloutConfig(protocol="r1_searcher_demo_two").protocol == "r1_searcher_demo_two"

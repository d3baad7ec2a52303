"""Answer normalization and metrics: hand-checked cases and hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from searchrl.rewards.normalize import (
    cover_exact_match,
    exact_match,
    f1_score,
    normalize_answer,
    r1_cover_exact_match,
    r1_normalize_answer,
)


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  An   apple,  a day ", "apple day"),
        ("U.S.A.", "usa"),
        ("Theatre of the Absurd", "theatre of absurd"),
        ("rock-n-roll", "rocknroll"),
        ("", ""),
        ("THE", ""),
    ],
)
def test_normalize_answer(raw: str, norm: str) -> None:
    assert normalize_answer(raw) == norm


def test_exact_match_over_aliases() -> None:
    assert exact_match("the Lisbon.", ["Porto", "lisbon"]) == 1.0
    assert exact_match("Lisbon, Portugal", ["Lisbon"]) == 0.0
    assert exact_match("Lisbon", "Lisbon") == 1.0
    assert exact_match("Lisbon", []) == 0.0


def test_cover_exact_match_is_word_span_containment() -> None:
    assert cover_exact_match("It is in Lisbon, Portugal.", ["lisbon portugal"]) == 1.0
    assert cover_exact_match("Portugal's Lisbon", ["lisbon portugal"]) == 0.0  # order matters
    assert cover_exact_match("a party", ["art"]) == 0.0  # no sub-word matches
    assert cover_exact_match("", ["the"]) == 1.0  # both normalize to nothing
    assert cover_exact_match("anything", ["the"]) == 0.0


def test_f1_hand_computed() -> None:
    # prediction "barack obama president" vs gold "barack obama": p = 2/3, r = 1
    assert f1_score("Barack Obama, president", ["Barack Obama"]) == pytest.approx(0.8)
    assert f1_score("obama", ["Barack Obama", "Obama"]) == 1.0
    assert f1_score("paris", ["london"]) == 0.0
    assert f1_score("yes no", ["yes"]) == 0.0  # closed-class answers must match exactly
    assert f1_score("no", ["no"]) == 1.0
    assert f1_score("x", []) == 0.0


# answers built from a few words (articles and closed-class words included) and punctuation
pieces = st.sampled_from(["a", "b", "x", "the", "An", "Yes", "no", "noanswer", ",", ".", "!", "'", "-", " ", " ", " "])
answers = st.lists(pieces, max_size=10).map("".join)
any_text = st.text(max_size=40)


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_normalize_is_idempotent(s: str) -> None:
    once = normalize_answer(s)
    assert normalize_answer(once) == once


@settings(max_examples=300, deadline=None)
@given(answers, st.lists(answers, min_size=1, max_size=3))
def test_metric_implications_and_ranges(pred: str, golds: list[str]) -> None:
    em, cem, f1 = exact_match(pred, golds), cover_exact_match(pred, golds), f1_score(pred, golds)
    assert em in (0.0, 1.0) and cem in (0.0, 1.0)
    assert 0.0 <= f1 <= 1.0
    if em == 1.0:
        assert f1 == 1.0 and cem == 1.0


@settings(max_examples=300, deadline=None)
@given(answers, answers)
def test_symmetry(a: str, b: str) -> None:
    assert exact_match(a, [b]) == exact_match(b, [a])
    assert f1_score(a, [b]) == pytest.approx(f1_score(b, [a]))


@settings(max_examples=200, deadline=None)
@given(any_text)
def test_a_text_matches_itself(s: str) -> None:
    assert exact_match(s, [s]) == 1.0
    assert cover_exact_match(s, [s]) == 1.0
    assert f1_score(s, [s]) == 1.0


# The papers' own metric modes, on the edge cases where they differ from searchrl's word-span cover EM.
@pytest.mark.parametrize(
    ("pred", "golds", "subem", "r1_cover", "ours"),
    [
        ("a party", ["art"], 1.0, 0.0, 0.0),  # subem: a character substring counts
        ("Portugal's Lisbon", ["Lisbon Portugal"], 0.0, 1.0, 0.0),  # r1: "portugal s lisbon"; SQuAD: "portugals"
        ("Portugal, Lisbon", ["Lisbon Portugal"], 0.0, 1.0, 0.0),  # r1: any order
        ("It is in Lisbon, Portugal.", ["lisbon portugal"], 1.0, 1.0, 1.0),
        ("The answer is True", ["yes"], 0.0, 0.0, 0.0),  # bool mapping applies to the whole answer only
        ("True", ["yes"], 0.0, 1.0, 0.0),
        ("False", ["no"], 0.0, 1.0, 0.0),
        ("anything", ["the"], 1.0, 0.0, 0.0),  # gold normalizes to "": subem's "" is in every string
        ("", ["the"], 1.0, 1.0, 1.0),
        ("new york", ["New New York"], 0.0, 1.0, 0.0),  # r1: a repeated gold word needs one occurrence
        ("Lisbon", [], 0.0, 0.0, 0.0),
        ("Porto", ["Lisbon", "porto"], 1.0, 1.0, 1.0),  # best over aliases
    ],
)
def test_paper_metric_modes(pred: str, golds: list[str], subem: float, r1_cover: float, ours: float) -> None:
    from searchrl.rewards.normalize import METRICS

    assert METRICS["subem"](pred, golds) == subem
    assert METRICS["r1_cover_em"](pred, golds) == r1_cover
    assert METRICS["cover_em"](pred, golds) == ours


@given(st.text(max_size=30), st.lists(st.text(max_size=15), min_size=1, max_size=3))
@settings(max_examples=300, deadline=None)
def test_metric_modes_ordering(pred: str, golds: list[str]) -> None:
    """Under SQuAD normalization EM implies word-span cover, which implies subem. R1-Searcher's cover EM
    normalizes differently, so it is ordered only against an EM under its own normalization."""
    from searchrl.rewards.normalize import METRICS

    s = {name: fn(pred, golds) for name, fn in METRICS.items()}
    assert all(v in (0.0, 1.0) for k, v in s.items() if k != "f1")
    if s["em"]:
        assert s["cover_em"] == s["subem"] == 1.0
    if s["cover_em"]:
        assert s["subem"] == 1.0
    if any(r1_normalize_answer(pred) == r1_normalize_answer(g) for g in golds):
        assert s["r1_cover_em"] == 1.0


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("Fox's", "fox s"),  # punctuation becomes a space (SQuAD: "foxs")
        ("Fox\u2019s", "fox s"),  # so do the typographic quotes (SQuAD keeps them)
        ("\u2018quoted\u00b4", "quoted"),
        ("snake_case", "snake case"),
        ("A-ha", "ha"),  # "a" becomes a word of its own, then an article
        ("U.S.A.", "u s"),
        ("The  Eiffel Tower!", "eiffel tower"),
        ("", ""),
    ],
)
def test_r1_normalize_answer(raw: str, norm: str) -> None:
    assert r1_normalize_answer(raw) == norm


@pytest.mark.parametrize(
    ("pred", "golds", "r1_cover", "squad_cover"),
    [
        ("Fox's", ["Fox"], 1.0, 0.0),
        ("Fox\u2019s", ["Fox"], 1.0, 0.0),
        ("snake_case", ["snake case"], 1.0, 0.0),
        ("Jean-Paul Sartre", ["Jean Paul Sartre"], 1.0, 0.0),  # replacing by a space splits the word
        ("the band A-ha", ["aha"], 0.0, 1.0),  # ... and can lose a match SQuAD finds
        ("U.S.A.", ["USA"], 0.0, 1.0),
        ("True", ["yes"], 1.0, 0.0),  # the whole answer "True" / "False" reads as yes / no
        ("no", ["False"], 1.0, 0.0),  # on the gold side too
        ("true", ["yes"], 0.0, 0.0),  # only the exact, capitalised strings
        (" True ", ["yes"], 0.0, 0.0),  # unstripped, as their predictions are stored
        ("True.", ["yes"], 0.0, 0.0),
        ("", ["!!!"], 1.0, 1.0),  # a gold that normalizes to nothing covers only an empty prediction
        ("anything", ["!!!"], 0.0, 0.0),
    ],
)
def test_r1_cover_uses_r1_normalization(pred: str, golds: list[str], r1_cover: float, squad_cover: float) -> None:
    assert r1_cover_exact_match(pred, golds) == r1_cover
    assert cover_exact_match(pred, golds) == squad_cover


@settings(max_examples=200, deadline=None)
@given(any_text)
def test_r1_normalize_is_idempotent_and_self_covering(s: str) -> None:
    once = r1_normalize_answer(s)
    assert r1_normalize_answer(once) == once
    assert r1_cover_exact_match(s, [s]) == 1.0

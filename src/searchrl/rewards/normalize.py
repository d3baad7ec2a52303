"""Answer normalization and the QA metrics built on it: exact match, cover exact match, token F1.

One definition, used by the training rewards and by evaluation alike. Normalization is SQuAD's (the
one Search-R1 scores with): lowercase, delete ASCII punctuation, drop the articles a / an / the,
collapse whitespace. Every metric takes one prediction and one or more gold aliases and returns the
best score over the aliases (0.0 when there is none).

Deliberate deviations from the reference code:

* Cover EM (``cover_em``, searchrl's own) is word-span containment: the normalized gold's token
  sequence must occur contiguously in the normalized prediction's tokens. The papers' own variants
  are here too, exactly as their evaluation code computes them, so that a published table can be
  recomputed from released predictions (:data:`METRICS`, ``searchrl eval --metric``):
  Search-R1's ``subem`` tests a character substring of the normalized strings (so gold "art" covers
  "party", and a gold that normalizes to nothing covers everything); R1-Searcher's cover EM
  (``r1_cover_em``) maps a bare "True"/"False" to "yes"/"no", normalizes with R1-Searcher's own rule
  (:func:`r1_normalize_answer`: punctuation becomes a space instead of vanishing), then accepts when
  every normalized gold word is one of the prediction's words, in any order and any position.
* F1 follows the HotpotQA evaluator (which R1-Searcher uses): when either side normalizes to "yes",
  "no" or "noanswer" and the two differ, F1 is 0, so hedging ("yes no") earns nothing. When both
  sides normalize to nothing, F1 is 1 (they are equal; this keeps EM => F1 = 1).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal

__all__ = [
    "METRICS",
    "MetricFn",
    "MetricName",
    "cover_exact_match",
    "exact_match",
    "f1_score",
    "normalize_answer",
    "r1_cover_exact_match",
    "r1_normalize_answer",
    "substring_exact_match",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_CLOSED_CLASS = frozenset({"yes", "no", "noanswer"})


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lowercase, delete punctuation, drop articles, collapse whitespace."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _golds(golds: str | Sequence[str]) -> tuple[str, ...]:
    return (golds,) if isinstance(golds, str) else tuple(golds)


def exact_match(prediction: str, golds: str | Sequence[str]) -> float:
    """1.0 if the normalized prediction equals some normalized gold, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _golds(golds)))


def _contains_span(tokens: list[str], span: list[str]) -> bool:
    n = len(span)
    return any(tokens[i : i + n] == span for i in range(len(tokens) - n + 1))


def cover_exact_match(prediction: str, golds: str | Sequence[str]) -> float:
    """1.0 if some normalized gold occurs as a contiguous word span of the normalized prediction.

    A gold that normalizes to nothing covers only a prediction that normalizes to nothing (EM).
    """
    pred = normalize_answer(prediction).split()
    for gold in _golds(golds):
        span = normalize_answer(gold).split()
        if (span and _contains_span(pred, span)) or (not span and not pred):
            return 1.0
    return 0.0


def _f1(pred: str, gold: str) -> float:
    if pred != gold and (pred in _CLOSED_CLASS or gold in _CLOSED_CLASS):
        return 0.0
    p, g = pred.split(), gold.split()
    if not p or not g:
        return float(p == g)
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, golds: str | Sequence[str]) -> float:
    """Best token-level F1 (bag of normalized words) of the prediction against the gold aliases."""
    pred = normalize_answer(prediction)
    return max((_f1(pred, normalize_answer(g)) for g in _golds(golds)), default=0.0)


def substring_exact_match(prediction: str, golds: str | Sequence[str]) -> float:
    """Search-R1's ``subem``: 1.0 if some normalized gold is a character substring of the normalized
    prediction ("art" is in "party"; a gold that normalizes to "" is in every prediction)."""
    pred = normalize_answer(prediction)
    return float(any(normalize_answer(g) in pred for g in _golds(golds)))


# R1-Searcher also treats the typographic quotes and the acute accent as punctuation
_R1_PUNCT = str.maketrans(dict.fromkeys(string.punctuation + "\u2018\u2019\u00b4", " "))


def r1_normalize_answer(text: str) -> str:
    """R1-Searcher's normalization: lowercase, replace punctuation by a space, drop articles, collapse
    whitespace.

    It differs from SQuAD's :func:`normalize_answer` in one step: each ASCII punctuation character
    (the underscore included) and each of ‘ ’ ´ becomes a space instead of being deleted, so
    "Fox's" is "fox s" (SQuAD: "foxs"), "snake_case" is "snake case", and since articles go after
    the split, "A-ha" is "ha" and "U.S.A." is "u s" (SQuAD: "aha", "usa").
    """
    text = text.lower().translate(_R1_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _bool_mapping(text: str) -> str:
    # R1-Searcher maps an answer that is exactly "True" / "False" (Python booleans printed as text,
    # case-sensitive, unstripped) onto the yes/no gold words; any other text passes through
    return {"True": "yes", "False": "no"}.get(text, text)


def r1_cover_exact_match(prediction: str, golds: str | Sequence[str]) -> float:
    """R1-Searcher's cover EM (``cover_exact_match_score_1`` in its ``evaluation/metric_calc_rule.py``,
    the number its tables report).

    Both sides go through the True/False mapping and then :func:`r1_normalize_answer`, not SQuAD's
    normalization. 1.0 if every word of some normalized gold is a word of the normalized prediction,
    in any order ("york new" covers "New York"; repeats need one occurrence; "Fox's" covers "Fox").
    A gold that normalizes to nothing covers only a prediction that normalizes to nothing, as in
    their code. No gold at all gives 0.0 (their code raises).
    """
    pred = r1_normalize_answer(_bool_mapping(prediction)).split(" ")
    for gold in _golds(golds):
        if all(w in pred for w in r1_normalize_answer(_bool_mapping(gold)).split(" ")):
            return 1.0
    return 0.0


MetricFn = Callable[[str, str | Sequence[str]], float]
MetricName = Literal["em", "f1", "cover_em", "subem", "r1_cover_em"]

METRICS: dict[str, MetricFn] = {
    "em": exact_match,
    "f1": f1_score,
    "cover_em": cover_exact_match,
    "subem": substring_exact_match,
    "r1_cover_em": r1_cover_exact_match,
}

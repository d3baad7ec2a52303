"""Outcome rewards of a finished trajectory, computed from a small record (:class:`RewardInput`).

Rewards see only what a :class:`RewardInput` holds (the final answer, the gold aliases, counts and a
format verdict), never rollout internals; :func:`reward_input` builds one from a ``Trajectory``.
They are pure: no printing, sampling or logging.

Reward values, as published:

* Search-R1 (Jin et al., 2025): ``em`` = 1 if the final answer exactly matches a gold, else 0.
  Its repository's format-aware variant (``verl/utils/reward_score/qa_em_format.py``): a correct
  answer earns 1 (0.8 with a broken format); a wrong or missing one earns 0.2 for a valid format
  (+0.1 if a gold answer appears in the retrieved passages), 0.1 for an answer with a broken format,
  0 otherwise (``em_format``).
* R1-Searcher (Song et al., 2025), stage 1: +0.5 when the model retrieved at least once, +0.5 for a
  correct format. The paper's stage 1 ignores the answer; the released reward server
  (``train/reward_server_llama_stage1.py``) adds +1 / -1 for a correct / wrong-or-missing answer
  by cover EM, which the design of searchrl follows by default (``answer_weight=0`` gives the paper's).
  Stage 2: answer F1 (0 without an answer), minus 2 when the format is wrong (the paper and
  ``reward_server_qwen_zero.py``; the Llama stage-2 server subtracts 1).
  For its answer-reward ablation (F1 vs EM), ``r1_searcher_stage2_em`` puts EM in place of F1.

Added here, not in either paper:

* ``r1_searcher_stage1_grounded``: stage 1 whose retrieval bonus needs a retrieved passage that
  contains a gold answer (word-span cover EM). A policy that copies the instruction's placeholder
  query (``<|begin_of_query|> keywords <|end_of_query|>``) retrieves nothing useful, and the plain
  stage-1 reward still paid it +0.5; this one does not. Meant for 1-hop questions, where the first
  retrieval can contain the answer.

Deliberate deviations:

* The format verdict is one protocol-generic check (:func:`check_format`) over the protocol's own
  tags plus the rollout's count of invalid actions, not Search-R1's template-specific state machine
  (which also demands ``<think>`` blocks) nor R1-Searcher's tag counts (which also forbid Chinese
  text and pin ``<think>`` counts to its Llama template). ``<think>`` is not checked: neither of
  searchrl's instructions requires it.
* Cover EM is word-span containment (see :mod:`searchrl.rewards.normalize`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from searchrl.rewards.normalize import cover_exact_match, exact_match, f1_score

if TYPE_CHECKING:
    from searchrl.data.protocols import TagProtocol
    from searchrl.types import Trajectory

__all__ = [
    "REWARD_FUNCTIONS",
    "RewardFn",
    "RewardInput",
    "RewardName",
    "check_format",
    "cover_em_reward",
    "em_format_reward",
    "em_reward",
    "f1_reward",
    "r1_searcher_stage1_grounded_reward",
    "r1_searcher_stage1_reward",
    "r1_searcher_stage2_em_reward",
    "r1_searcher_stage2_reward",
    "retrieved_blocks",
    "reward_input",
]


@dataclass(frozen=True, slots=True)
class RewardInput:
    """What a reward may look at.

    ``answer``: the final answer the policy gave (None if it gave none); ``golds``: accepted aliases;
    ``n_searches``: well-formed searches the environment executed; ``n_invalid``: invalid actions;
    ``format_ok``: the protocol format verdict (:func:`check_format` and no invalid action);
    ``retrieved``: the text of each injected passage block, in order.
    """

    answer: str | None
    golds: tuple[str, ...]
    n_searches: int = 0
    n_invalid: int = 0
    format_ok: bool = False
    retrieved: tuple[str, ...] = ()


RewardFn = Callable[[RewardInput], float]


def _tag_pattern(protocol: TagProtocol) -> re.Pattern[str]:
    tags = (
        protocol.query_open,
        protocol.query_close,
        protocol.info_open,
        protocol.info_close,
        protocol.answer_open,
        protocol.answer_close,
    )
    return re.compile("|".join(re.escape(t) for t in sorted(tags, key=len, reverse=True)))


def check_format(response_text: str, protocol: TagProtocol, n_searches: int) -> bool:
    """Whether the response uses the protocol's tags in the only valid order.

    ``response_text`` is everything after the prompt (injected blocks included). Valid: zero or more
    ``query_open … query_close`` each followed (after whitespace only) by one ``info_open … info_close``
    block, then exactly one ``answer_open … answer_close``, then no protocol tag; free text may appear
    between blocks; tags inside a passage block are the retriever's text and are ignored. The number
    of query blocks must equal ``n_searches`` (a block the policy wrote itself fails).
    """
    state, queries, last_end = "free", 0, 0
    allowed = {
        "free": {protocol.query_open: "query", protocol.answer_open: "answer"},
        "query": {protocol.query_close: "after_query"},
        "after_query": {protocol.info_open: "info"},
        "info": {protocol.info_close: "free"},
        "answer": {protocol.answer_close: "done"},
        "done": {},
    }
    for match in _tag_pattern(protocol).finditer(response_text):
        tag = match.group(0)
        if state == "info" and tag != protocol.info_close:
            continue
        if state == "after_query" and response_text[last_end : match.start()].strip():
            return False
        nxt = allowed[state].get(tag)
        if nxt is None:
            return False
        queries += tag == protocol.query_open
        state, last_end = nxt, match.end()
    return state == "done" and queries == n_searches


def retrieved_blocks(response_text: str, protocol: TagProtocol) -> tuple[str, ...]:
    """The bodies of the passage blocks in ``response_text`` (stripped), in order."""
    pattern = re.escape(protocol.info_open) + r"(.*?)" + re.escape(protocol.info_close)
    return tuple(m.strip() for m in re.findall(pattern, response_text, flags=re.DOTALL))


def reward_input(trajectory: Trajectory, golds: Sequence[str], protocol: TagProtocol) -> RewardInput:
    """Build the reward record of a finished trajectory (its ``response_text`` follows ``protocol``)."""
    n_searches, n_invalid = trajectory.n_searches, trajectory.n_invalid
    text = trajectory.response_text
    ok = trajectory.answer is not None and n_invalid == 0 and check_format(text, protocol, n_searches)
    return RewardInput(
        answer=trajectory.answer,
        golds=tuple(golds),
        n_searches=n_searches,
        n_invalid=n_invalid,
        format_ok=ok,
        retrieved=retrieved_blocks(text, protocol),
    )


def em_reward(inp: RewardInput) -> float:
    """Search-R1: 1.0 if the answer exactly matches a gold (SQuAD normalization), else 0.0."""
    return 0.0 if inp.answer is None else exact_match(inp.answer, inp.golds)


def cover_em_reward(inp: RewardInput) -> float:
    """1.0 if a gold occurs as a word span of the answer, else 0.0."""
    return 0.0 if inp.answer is None else cover_exact_match(inp.answer, inp.golds)


def f1_reward(inp: RewardInput) -> float:
    """Token F1 of the answer against the best gold; 0.0 without an answer."""
    return 0.0 if inp.answer is None else f1_score(inp.answer, inp.golds)


def em_format_reward(
    inp: RewardInput, structure: float = 0.2, retrieval: float = 0.1, final_format: float = 0.1
) -> float:
    """Search-R1's format-aware EM (values in the module docstring)."""
    if em_reward(inp) == 1.0:
        return 1.0 if inp.format_ok else 1.0 - structure
    if inp.format_ok:
        hit = any(cover_exact_match(block, inp.golds) for block in inp.retrieved)
        return structure + (retrieval if hit else 0.0)
    return final_format if inp.answer is not None else 0.0


def r1_searcher_stage1_reward(
    inp: RewardInput, retrieval_bonus: float = 0.5, format_bonus: float = 0.5, answer_weight: float = 1.0
) -> float:
    """R1-Searcher stage 1: ±answer_weight by cover EM, +retrieval_bonus if it searched, +format_bonus if well-formed."""
    correct = cover_em_reward(inp) == 1.0
    reward = answer_weight if correct else -answer_weight
    if inp.n_searches >= 1:
        reward += retrieval_bonus
    if inp.format_ok:
        reward += format_bonus
    return reward


def r1_searcher_stage2_reward(inp: RewardInput, format_penalty: float = 2.0) -> float:
    """R1-Searcher stage 2: answer F1 minus ``format_penalty`` when the format is wrong."""
    return f1_reward(inp) - (0.0 if inp.format_ok else format_penalty)


def r1_searcher_stage2_em_reward(inp: RewardInput, format_penalty: float = 2.0) -> float:
    """Stage 2 with EM as the answer reward (R1-Searcher's ablation): EM minus the format penalty."""
    return em_reward(inp) - (0.0 if inp.format_ok else format_penalty)


def r1_searcher_stage1_grounded_reward(
    inp: RewardInput, retrieval_bonus: float = 0.5, format_bonus: float = 0.5, answer_weight: float = 1.0
) -> float:
    """Stage 1 whose retrieval bonus needs a retrieved block that covers a gold answer (see module doc)."""
    grounded = any(cover_exact_match(block, inp.golds) for block in inp.retrieved)
    correct = cover_em_reward(inp) == 1.0
    reward = (answer_weight if correct else -answer_weight) + (retrieval_bonus if grounded else 0.0)
    return reward + (format_bonus if inp.format_ok else 0.0)


RewardName = Literal[
    "em",
    "cover_em",
    "f1",
    "em_format",
    "r1_searcher_stage1",
    "r1_searcher_stage1_grounded",
    "r1_searcher_stage2",
    "r1_searcher_stage2_em",
]

REWARD_FUNCTIONS: dict[str, RewardFn] = {
    "em": em_reward,
    "cover_em": cover_em_reward,
    "f1": f1_reward,
    "em_format": em_format_reward,
    "r1_searcher_stage1": r1_searcher_stage1_reward,
    "r1_searcher_stage2": r1_searcher_stage2_reward,
    "r1_searcher_stage1_grounded": r1_searcher_stage1_grounded_reward,
    "r1_searcher_stage2_em": r1_searcher_stage2_em_reward,
}

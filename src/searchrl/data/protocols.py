"""The tag protocols, in one place: instruction templates, passage formatting, the action parser.

The protocols provided:

* ``search_r1`` — Search-R1: ``<think>…</think>``, ``<search>query</search>``, the environment's
  ``<information>…</information>``, ``<answer>…</answer>``; passages as ``Doc 1(Title: "…") text``.
* ``r1_searcher`` — R1-Searcher: ``<|begin_of_query|>query<|end_of_query|>``, the environment's
  ``<|begin_of_documents|>…<|end_of_documents|>``, ``<answer>…</answer>`` (a ``\\boxed{}`` inside the
  answer is unwrapped).
* ``r1_searcher_demo`` — R1-Searcher's tags, for RL from a model that was never taught them: the
  instruction is fed as plain text (no chat template; R1-Searcher prompts its base models this way)
  and ends with one worked example, on a real-world fact outside every synthetic world, written in
  the protocol's own tags and passage format. It is in-context exploration, not SFT: no weight ever
  sees a gold trajectory. Chosen on the medium world's dev questions (``docs/findings.md``, F4).
* ``r1_searcher_demo_two`` — the same with a second worked example whose answer differs (F4's first
  policy copied the one example's answer): on 64 dev samples of the untrained model, well-formed
  searches 44 against 15, grounded 36 against 8, copied answers 0 against 2 (``scripts/base_rate.py``).

The parser only ever sees the text the policy generated in the current turn, so an example answer in
the instruction (both papers' prompts contain one) can never be mistaken for the model's answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from searchrl.types import Passage


@dataclass(frozen=True)
class Search:
    query: str


@dataclass(frozen=True)
class Answer:
    text: str


@dataclass(frozen=True)
class Invalid:
    reason: str


Action = Search | Answer | Invalid

_BOXED = re.compile(r"^\\boxed\{(.*)\}$", re.DOTALL)


@dataclass(frozen=True)
class TagProtocol:
    """Tags, templates and parsing of one search-agent protocol (see the module docstring)."""

    name: str
    query_open: str
    query_close: str
    info_open: str
    info_close: str
    instruction: str  # {question} is replaced; shown as the user turn (chat) or the whole prompt (base)
    corrective_message: str  # injected (masked) after an invalid action
    passage_style: str  # "search_r1" | "r1_searcher"
    chat: bool = True  # use the tokenizer's chat template (False: the instruction as plain text)
    answer_open: str = "<answer>"
    answer_close: str = "<answer>".replace("<", "</")

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Generation stops when the policy closes a query or an answer."""
        return (self.query_close, self.answer_close)

    @property
    def force_answer_prefix(self) -> str:
        """Injected (masked) when the turn budget is spent, so the next turn can only answer."""
        return f"\n{self.answer_open}"

    def chat_messages(self, question: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.instruction.format(question=question.strip())}]

    def base_prompt(self, question: str) -> str:
        return self.instruction.format(question=question.strip()) + "\n"

    def format_passages(self, passages: Sequence[Passage]) -> str:
        if self.passage_style == "search_r1":
            return "\n".join(f'Doc {i}(Title: "{p.title}") {p.text}' for i, p in enumerate(passages, 1))
        return "\n".join(f"({i}) {p.title}\n{p.text}" for i, p in enumerate(passages, 1))

    def wrap_information(self, text: str) -> str:
        """The whole block the environment appends after a search (tags and newlines included)."""
        return f"\n\n{self.info_open}\n{text}\n{self.info_close}\n\n"

    def format_search(self, query: str) -> str:
        return f"{self.query_open}{query}{self.query_close}"

    def format_answer(self, answer: str) -> str:
        return f"{self.answer_open}{answer}{self.answer_close}"

    def parse_action(self, generated: str) -> Action:
        """The first complete action in this turn's generated text; text after it is ignored."""
        q = generated.find(self.query_open)
        a = generated.find(self.answer_open)
        if q < 0 and a < 0:
            if self.query_close in generated or self.answer_close in generated:
                return Invalid("closing tag without its opening tag")
            return Invalid("no action tag")
        if a < 0 or 0 <= q < a:
            body = _between(generated, q + len(self.query_open), self.query_close)
            if body is None:
                return Invalid(f"unclosed {self.query_open}")
            query = body.strip()
            return Search(query) if query else Invalid("empty query")
        body = _between(generated, a + len(self.answer_open), self.answer_close)
        if body is None:
            return Invalid(f"unclosed {self.answer_open}")
        answer = body.strip()
        boxed = _BOXED.match(answer)
        if boxed:
            answer = boxed.group(1).strip()
        return Answer(answer) if answer else Invalid("empty answer")

    def extract_answer(self, response: str) -> str | None:
        """The last answer in a full response (several turns), or None."""
        end = response.rfind(self.answer_close)
        if end < 0:
            return None
        start = response.rfind(self.answer_open, 0, end)
        if start < 0:
            return None
        action = self.parse_action(response[start : end + len(self.answer_close)])
        return action.text if isinstance(action, Answer) else None


def _between(text: str, start: int, close: str) -> str | None:
    end = text.find(close, start)
    return None if end < 0 else text[start:end]


SEARCH_R1 = TagProtocol(
    name="search_r1",
    query_open="<search>",
    query_close="</search>",
    info_open="<information>",
    info_close="</information>",
    instruction=(
        "Answer the question below. Think inside <think> and </think> whenever you receive new "
        "information. If you are missing knowledge, search for it by writing <search> your query </search>; "
        "the top results will come back between <information> and </information>. You may search several "
        "times. When you know the answer, write only the answer inside <answer> and </answer>, for example "
        "<answer> Lisbon </answer>.\nQuestion: {question}"
    ),
    corrective_message=(
        "\nMy previous action was not valid. To search I must write the query between <search> and "
        "</search>; to answer I must write the answer between <answer> and </answer>. Let me try again.\n"
    ),
    passage_style="search_r1",
)

R1_SEARCHER = TagProtocol(
    name="r1_searcher",
    query_open="<|begin_of_query|>",
    query_close="<|end_of_query|>",
    info_open="<|begin_of_documents|>",
    info_close="<|end_of_documents|>",
    instruction=(
        "Answer the question below. Reason step by step. When you need outside knowledge, write a search "
        "query as <|begin_of_query|> keywords <|end_of_query|>; the retrieved documents will follow between "
        "<|begin_of_documents|> and <|end_of_documents|>. Search as often as you need. Finish with the final "
        "answer inside <answer> and </answer>, e.g. <answer> Lisbon </answer>.\nQuestion: {question}"
    ),
    corrective_message=(
        "\nThat was not a valid step. I search with <|begin_of_query|> query <|end_of_query|> and answer with "
        "<answer> answer </answer>. Let me try again.\n"
    ),
    passage_style="r1_searcher",
)

R1_SEARCHER_DEMO = replace(
    R1_SEARCHER,
    name="r1_searcher_demo",
    chat=False,
    instruction=(
        "Answer each question. Search for the facts you need with <|begin_of_query|> keywords "
        "<|end_of_query|>; the documents found follow between <|begin_of_documents|> and "
        "<|end_of_documents|>. Then give the final answer inside <answer> and </answer>.\n\n"
        "Question: Who painted The Night Watch?\n"
        "<|begin_of_query|> The Night Watch painter <|end_of_query|>\n"
        "<|begin_of_documents|>\n(1) The Night Watch\n"
        "The Night Watch is a painting by Rembrandt, finished in 1642.\n<|end_of_documents|>\n"
        "<answer> Rembrandt </answer>\n\nQuestion: {question}"
    ),
)

_HEAD, _, _FIRST = R1_SEARCHER_DEMO.instruction.partition("\n\n")
R1_SEARCHER_DEMO_TWO = replace(  # chosen on dev for F4's rerun: scripts/base_rate.py, docs/findings.md
    R1_SEARCHER_DEMO,
    name="r1_searcher_demo_two",
    instruction=(
        _HEAD
        + "\n\n"
        + _FIRST.removesuffix("\n\nQuestion: {question}")
        + "\n\nQuestion: In which city was Marie Curie born?\n"
        "<|begin_of_query|> Marie Curie birthplace <|end_of_query|>\n"
        "<|begin_of_documents|>\n(1) Marie Curie\n"
        "Marie Curie was a physicist and chemist, born in Warsaw in 1867.\n<|end_of_documents|>\n"
        "<answer> Warsaw </answer>\n\nQuestion: {question}"
    ),
)

PROTOCOLS: dict[str, TagProtocol] = {
    p.name: p for p in (SEARCH_R1, R1_SEARCHER, R1_SEARCHER_DEMO, R1_SEARCHER_DEMO_TWO)
}
ProtocolName = Literal["search_r1", "r1_searcher", "r1_searcher_demo", "r1_searcher_demo_two"]  # = PROTOCOLS (test)


BASELINE_INSTRUCTIONS: dict[str, str] = {
    "direct": (
        "Answer the question. Write only the answer inside <answer> and </answer>, for example "
        "<answer> Lisbon </answer>.\nQuestion: {question}"
    ),
    "cot": (
        "Answer the question. First think step by step inside <think> and </think>, then write only the "
        "answer inside <answer> and </answer>, for example <answer> Lisbon </answer>.\nQuestion: {question}"
    ),
    "rag": (
        "Answer the question using the documents. Write only the answer inside <answer> and </answer>, for "
        "example <answer> Lisbon </answer>.\nDocuments:\n{documents}\nQuestion: {question}"
    ),
}


def baseline_messages(method: str, question: str, documents: str = "") -> list[dict[str, str]]:
    """Chat messages of a no-search baseline (``direct``, ``cot``, ``rag``); answers use ``<answer>`` tags."""
    template = BASELINE_INSTRUCTIONS[method]
    return [{"role": "user", "content": template.format(question=question.strip(), documents=documents)}]

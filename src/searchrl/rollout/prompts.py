"""Turning a question into prompt token ids with a tag protocol's instruction (chat or base model)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from searchrl.data.protocols import TagProtocol


def chat_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of chat ``messages`` followed by the assistant's generation prompt."""
    enc: Any = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = enc["input_ids"] if hasattr(enc, "keys") else enc  # a BatchEncoding in transformers >= 5
    return [int(i) for i in ids]


def prompt_ids(tokenizer: PreTrainedTokenizerBase, protocol: TagProtocol, question: str) -> list[int]:
    """Token ids of the prompt; the chat template is used when the tokenizer has one and the protocol wants it."""
    if protocol.chat and getattr(tokenizer, "chat_template", None):
        return chat_ids(tokenizer, protocol.chat_messages(question))
    return list(tokenizer(protocol.base_prompt(question), add_special_tokens=True)["input_ids"])

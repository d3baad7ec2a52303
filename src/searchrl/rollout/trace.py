"""Readable traces of trajectories: policy text and injected text told apart, turn by turn."""

from __future__ import annotations

from typing import Any

from searchrl.types import Trajectory


def spans(traj: Trajectory) -> list[tuple[bool, list[int]]]:
    """The response cut into maximal runs of (sampled by the policy?, token ids)."""
    out: list[tuple[bool, list[int]]] = []
    for tok, m in zip(traj.ids[traj.prompt_len :], traj.loss_mask[traj.prompt_len :], strict=True):
        if out and out[-1][0] == bool(m):
            out[-1][1].append(tok)
        else:
            out.append((bool(m), [tok]))
    return out


def text_spans(traj: Trajectory, tokenizer: Any) -> list[tuple[bool, str]]:
    """:func:`spans` decoded (special tokens kept, so the viewer shows exactly what the model saw)."""
    return [(sampled, str(tokenizer.decode(ids, skip_special_tokens=False))) for sampled, ids in spans(traj)]


def format_trace(traj: Trajectory, tokenizer: Any, markup: bool = False) -> str:
    """Policy text as is; injected text indented under a ``[env]`` marker (dim when ``markup``)."""
    lines = [
        f"# {traj.example_id} (sample {traj.sample_index}): finish={traj.finish_reason}, "
        f"searches={traj.n_searches}, answer={traj.answer!r}"
    ]
    from rich.markup import escape

    for sampled, ids in spans(traj):
        text = str(tokenizer.decode(ids, skip_special_tokens=False)).strip("\n")
        text = escape(text) if markup else text
        if sampled:
            lines.append(f"\\[policy] {text}" if markup else f"[policy] {text}")
        else:
            body = "\n".join("    " + line for line in text.splitlines())
            lines.append(f"[dim]\\[env]\n{body}[/dim]" if markup else f"[env]\n{body}")
    return "\n".join(lines)

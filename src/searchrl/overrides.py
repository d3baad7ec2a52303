"""Dotted overrides (``train.lr=1e-4``) applied to a config tree, and the error every config problem raises.

Kept apart from :mod:`searchrl.config` because they know nothing of its sections: an override is a path of
keys and a YAML scalar, checked against the sections only when the tree becomes a ``Config``.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["ConfigError", "apply_overrides", "parse_override"]


class ConfigError(ValueError):
    """A config file or override that cannot be turned into a valid :class:`searchrl.config.Config`."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"retrieval.topk=5"`` -> (["retrieval", "topk"], 5). Values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override '{text}' has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML ({exc})") from exc
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each dotted override applied in order."""
    out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data)) or {}
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out

"""``build_rollout``: the one place a config becomes a rollout engine (protocol, budgets, sync or async)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from searchrl.data.protocols import PROTOCOLS
from searchrl.rollout.async_engine import AsyncRolloutEngine
from searchrl.rollout.engine import RolloutEngine, RolloutLimits

if TYPE_CHECKING:
    from searchrl.config import Config
    from searchrl.retrieval.base import Retriever
    from searchrl.rollout.backend import GeneratorBackend

__all__ = ["build_rollout"]


def build_rollout(cfg: Config, backend: GeneratorBackend, retriever: Retriever, tokenizer: Any) -> RolloutEngine:
    """The engine of ``cfg.rollout`` over ``backend``: the configured tag protocol and budgets
    (:meth:`RolloutLimits.from_config`); asynchronous when the backend generates one sample at a time
    (``generate_one``), so its samples advance independently."""
    protocol = PROTOCOLS[cfg.rollout.protocol]
    limits = RolloutLimits.from_config(cfg)
    engine_cls = AsyncRolloutEngine if callable(getattr(backend, "generate_one", None)) else RolloutEngine
    return engine_cls(backend, retriever, tokenizer, protocol, limits)

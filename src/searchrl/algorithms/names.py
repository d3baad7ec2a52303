"""The names each registry of RL math accepts, one ``Literal`` per registry.

``searchrl.config`` types its fields with these ``Literal`` types, so a typo fails at load time listing
the valid names; the registries themselves (name -> pure function) are filled by decorators on the
functions: ``ADVANTAGE_ESTIMATORS`` (``@register_adv_est``) in :mod:`searchrl.algorithms.advantages`,
``POLICY_LOSSES`` (``@register_policy_loss``) and ``KL_ESTIMATORS`` (``@register_kl``) in
:mod:`searchrl.algorithms.losses`; a test pins each registry's keys to its ``Literal``. This module
imports nothing but ``typing``, so loading a config never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar, get_args

__all__ = [
    "AGG_MODES",
    "ALGORITHMS",
    "KL_ESTIMATOR_NAMES",
    "NO_KL_IN_REWARD",
    "POLICY_LOSS_NAMES",
    "AggMode",
    "AlgorithmName",
    "KLEstimatorName",
    "PolicyLossName",
    "registrar",
]

# train.algorithm, and the key of its advantage estimator (ppo: GAE over a critic's values)
AlgorithmName = Literal["ppo", "grpo", "dr_grpo", "reinforce_pp", "reinforce_pp_baseline", "rloo"]
PolicyLossName = Literal["ppo_clip", "pg"]
KLEstimatorName = Literal["k1", "k2", "k3"]
AggMode = Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]

ALGORITHMS: tuple[AlgorithmName, ...] = get_args(AlgorithmName)
POLICY_LOSS_NAMES: tuple[PolicyLossName, ...] = get_args(PolicyLossName)
KL_ESTIMATOR_NAMES: tuple[KLEstimatorName, ...] = get_args(KLEstimatorName)
AGG_MODES: tuple[AggMode, ...] = get_args(AggMode)

# estimators of the outcome alone: their signature has no ``kl_coef`` (a test pins this against the functions)
NO_KL_IN_REWARD: tuple[AlgorithmName, ...] = ("grpo", "dr_grpo", "rloo")


_F = TypeVar("_F", bound=Callable[..., object])


def registrar(table: dict[str, _F], kind: str) -> Callable[[str], Callable[[_F], _F]]:
    """The ``@register_…(name)`` decorator of one registry: it files a function under ``name`` in
    ``table`` and refuses a name registered twice."""

    def register(name: str) -> Callable[[_F], _F]:
        def add(fn: _F) -> _F:
            if name in table:
                raise ValueError(f"{kind} {name!r} is registered twice")
            table[name] = fn
            return fn

        return add

    return register

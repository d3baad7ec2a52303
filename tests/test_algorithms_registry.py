"""Registries: keys equal the Literal names; every estimator runs by name through ``estimate_advantages``."""

from __future__ import annotations

import inspect
from typing import Any, get_args

import pytest
import torch

from searchrl.algorithms import advantages as adv
from searchrl.algorithms.advantages import ADVANTAGE_ESTIMATORS, estimate_advantages
from searchrl.algorithms.losses import KL_ESTIMATORS, POLICY_LOSSES
from searchrl.algorithms.masked import masked_whiten
from searchrl.algorithms.names import (
    AGG_MODES,
    NO_KL_IN_REWARD,
    AggMode,
    AlgorithmName,
    KLEstimatorName,
    PolicyLossName,
)


def test_registry_keys_equal_literal_names() -> None:
    assert set(ADVANTAGE_ESTIMATORS) == set(get_args(AlgorithmName))
    assert set(POLICY_LOSSES) == set(get_args(PolicyLossName))
    assert set(KL_ESTIMATORS) == set(get_args(KLEstimatorName))
    assert set(AGG_MODES) == set(get_args(AggMode))


def _batch() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[0, 1, 1, 0, 1], [0, 1, 0, 1, 1], [0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    return {
        "rewards": torch.tensor([1.0, 0.0, 0.5, 1.0]),
        "loss_mask": mask,
        "group": torch.tensor([0, 0, 1, 1]),
        "values": torch.randn(4, 5, generator=g),
        "kl": torch.rand(4, 5, generator=g),
    }


@pytest.mark.parametrize("name", sorted(ADVANTAGE_ESTIMATORS))
def test_every_estimator_runs_and_respects_the_mask(name: str) -> None:
    batch = _batch()
    a, r = estimate_advantages(name, **batch)
    assert a.shape == r.shape == (4, 5)
    assert (a[batch["loss_mask"] == 0] == 0).all() and torch.isfinite(a).all()


def test_registry_entries_delegate_to_the_pure_functions() -> None:
    b = _batch()
    m, rw, grp = b["loss_mask"], b["rewards"], b["group"]
    a, r = estimate_advantages("ppo", **b, kl_coef=0.05, gamma=0.9, lam=0.8)
    raw, ret = adv.gae_unwhitened(adv.token_rewards(rw, m, b["kl"], 0.05), b["values"], m, 0.9, 0.8)
    torch.testing.assert_close(a, masked_whiten(raw, m))
    torch.testing.assert_close(r, ret)  # critic targets stay unwhitened
    a, _ = estimate_advantages("dr_grpo", **b)
    torch.testing.assert_close(a, adv.grpo(rw, grp, m, scale_by_std=False)[0])
    a, _ = estimate_advantages("reinforce_pp_baseline", **b, kl_coef=0.01)
    torch.testing.assert_close(a, adv.reinforce_pp_baseline(rw, grp, m, b["kl"], 0.01)[0])


def test_meaningless_combinations_fail_loudly() -> None:
    b = _batch()
    b_no_values = {k: v for k, v in b.items() if k != "values"}
    with pytest.raises(ValueError, match="critic"):
        estimate_advantages("ppo", **b_no_values)
    for name in ("grpo", "dr_grpo", "rloo"):
        with pytest.raises(ValueError, match="KL"):
            estimate_advantages(name, **b, kl_coef=0.001)


def test_no_kl_in_reward_names_the_estimators_without_a_kl_term() -> None:
    """The config rejects KL in the reward for exactly the estimators whose signature has no kl_coef."""
    without = {name for name, fn in ADVANTAGE_ESTIMATORS.items() if "kl_coef" not in inspect.signature(fn).parameters}
    assert without == set(NO_KL_IN_REWARD)

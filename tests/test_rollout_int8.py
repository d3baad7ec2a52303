"""rollout.quantize=int8: the sampler's int8 copy is the merged policy, rebuilt when the weights change and never
the trained policy itself; its log-probs are at temperature 1; the update's importance weights are the tempered,
capped ratio on sampled tokens only, and equal a per-token weight on the clipped loss; the config pairs the two."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.training import EXAMPLES, NoSearch, low_half_reward
from searchrl.algorithms.losses import POLICY_LOSSES
from searchrl.config import ConfigError, load_config
from searchrl.models import tiny_model
from searchrl.rollout.backend import SamplingParams
from searchrl.rollout.build import build_sampler
from searchrl.rollout.hf import pick_tokens
from searchrl.rollout.int8 import Int8Generator, weights_version
from searchrl.trainer.batch import collate
from searchrl.trainer.loop import Trainer
from searchrl.trainer.lora import add_lora
from searchrl.trainer.update import PolicyUpdate
from searchrl.types import Trajectory


def lora_policy(tok):  # type: ignore[no-untyped-def]
    model = tiny_model(tok, layers=2, hidden=64, heads=4, seed=0)
    with torch.no_grad():  # peaked next-token distributions, like a trained LM's
        model.get_output_embeddings().weight.mul_(30.0)
    policy = add_lora(model, 4, 8, seed=0)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # non-zero adapters, so the copy must merge them to match
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return policy


def test_int8_sampler_samples_from_a_merged_int8_copy_rebuilt_when_weights_change(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    policy = lora_policy(smol_tokenizer)
    sampler = Int8Generator(policy, smol_tokenizer)
    ctx = smol_tokenizer("Where was Kanka Drourteim born?")["input_ids"]
    params = SamplingParams(temperature=0.5)
    out = sampler.generate([0], [ctx], [4], [], params, seed=0)[0]
    assert sampler.rebuilds == 1 and sampler.model is not policy
    kinds = {type(m).__module__ for m in sampler.model.modules() if "Linear" in type(m).__name__}
    assert kinds and all("quantized" in k for k in kinds)  # every linear layer int8, no adapter left
    assert any(p.requires_grad for p in policy.parameters())  # the trained policy untouched
    with torch.no_grad():
        full = torch.softmax(policy(input_ids=torch.tensor([ctx])).logits[0, -1].float(), -1)
        quant = torch.softmax(sampler.model(input_ids=torch.tensor([ctx])).logits[0, -1].float(), -1)
    assert 0.5 * float((full - quant).abs().sum()) < 0.05  # the merged policy, up to int8 rounding (total variation)
    assert sampler.raw_logprobs and len(out.logprobs) == len(out.token_ids) == 4  # temperature-1 log-probs:
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    ids, raw = pick_tokens(logits, params, torch.Generator().manual_seed(0), raw=True)
    _, tempered = pick_tokens(logits, params, torch.Generator().manual_seed(0))
    assert float(raw[0]) == pytest.approx(float(torch.log_softmax(logits, -1)[0, ids[0]]))
    assert float(tempered[0]) == pytest.approx(float(torch.log_softmax(logits / 0.5, -1)[0, ids[0]]))
    sampler.reset()
    sampler.generate([0], [ctx], [2], [], params, seed=1)
    assert sampler.rebuilds == 1  # same weights: the same copy
    before = weights_version(policy)
    opt = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.1)
    policy(input_ids=torch.tensor([ctx])).logits.sum().backward()
    opt.step()
    assert weights_version(policy) != before
    sampler.reset()
    sampler.generate([0], [ctx], [2], [], params, seed=1)
    assert sampler.rebuilds == 2


def test_tis_weights_are_the_tempered_capped_ratio_on_sampled_tokens_only(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    # one row: prompt (2 tokens), 2 sampled tokens, 1 injected token, 1 sampled token
    lps = [0.0, 0.0, -1.0, -2.0, 0.0, -0.5]
    traj = Trajectory("q", 0, [5, 6, 7, 8, 9, 10], [0, 0, 1, 1, 0, 1], lps, 2, [], "x", "stop")
    unmasked = collate([traj], [1.0], [0], 0, mask_retrieved=False)  # the ablation: the injected token is trained
    assert unmasked.sampled_logprobs.tolist() == [[0.0, -1.0, -2.0, 0.0, -0.5]]
    cfg = load_config(None, ["rollout.quantize=int8", "train.tis_cap=2.0"])
    update = PolicyUpdate(cfg.train, None, None, None, None, kl_in_loss=False, norm_len=64, temperature=0.5)
    old = torch.tensor([[0.0, -0.9, -2.6, -3.0, 0.0]])
    adv = torch.full((1, 5), 2.0)
    scaled, stats = update.sampler_weights(adv, old, unmasked)
    w = [1.0, min(2.0, float(torch.exp(torch.tensor(0.1 / 0.5)))), float(torch.exp(torch.tensor(-0.6 / 0.5))), 1.0, 2.0]
    assert scaled[0].tolist() == pytest.approx([2.0 * x for x in w], rel=1e-6)  # injected and prompt: weight 1
    assert stats["actor/tis_capped"] == pytest.approx(1 / 3)  # exp(0.5 / 0.5) > 2 on the last token
    same, _ = update.sampler_weights(adv, unmasked.sampled_logprobs, unmasked)
    assert torch.equal(same, adv)  # a sampler with the trained weights: no correction at all


@pytest.mark.parametrize("dual_clip", [None, 3.0])
def test_a_weight_on_the_advantage_is_that_weight_on_each_tokens_clipped_loss(dual_clip: float | None) -> None:
    gen = torch.Generator().manual_seed(0)
    new, old = torch.randn(1, 64, generator=gen), torch.randn(1, 64, generator=gen)  # ratios far outside the clip
    adv, w = torch.randn(1, 64, generator=gen), torch.rand(1, 64, generator=gen) * 2
    loss = POLICY_LOSSES["ppo_clip"]
    for t in range(64):  # one token at a time: the loss is that token's
        mask = torch.zeros(1, 64)
        mask[0, t] = 1
        weighted = loss(new, old, adv * w, mask, dual_clip=dual_clip).loss
        assert float(weighted) == pytest.approx(float(w[0, t] * loss(new, old, adv, mask, dual_clip=dual_clip).loss))


def test_config_pairs_int8_rollouts_with_the_importance_weight_cap(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"train\.tis_cap"):
        load_config(None, ["rollout.quantize=int8"])
    with pytest.raises(ConfigError, match=r"train\.tis_cap"):
        load_config(None, ["train.tis_cap=2"])
    with pytest.raises(ConfigError, match=r"rollout\.quantize"):
        load_config(None, ["rollout.quantize=int4", "train.tis_cap=2"])
    model = tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0)
    cfg = load_config(None, ["rollout.quantize=int8", "train.tis_cap=2"])
    assert isinstance(build_sampler(cfg, model, smol_tokenizer), Int8Generator)
    assert not isinstance(build_sampler(load_config(None), model, smol_tokenizer), Int8Generator)


def test_a_training_run_with_int8_rollouts_logs_the_importance_weights(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    overrides = ["train.lora_r=4", "train.steps=2", "train.prompts_per_step=2", "rollout.group_size=4"]
    overrides += ["rollout.max_turns=1", "rollout.max_new_tokens=6", "train.kl_coef=0", "rollout.temperature=0.8"]
    overrides += ["rollout.quantize=int8", "train.tis_cap=2", "train.checkpoint_every=1", f"output_dir={tmp_path}"]
    cfg = load_config(None, overrides)
    model = tiny_model(smol_tokenizer, layers=2, hidden=64, heads=4, seed=0)
    trainer = Trainer(
        cfg, model, smol_tokenizer, NoSearch(), EXAMPLES, tmp_path, reward_fn=low_half_reward(len(smol_tokenizer))
    )
    sampler = trainer.engine.backend
    assert isinstance(sampler, Int8Generator)
    history = trainer.fit()
    assert sampler.rebuilds == 2  # once per step: each step's rollout after the previous step's update
    for m in history:
        assert 0.5 < m["actor/tis_weight"] < 2.0 and 0.0 <= m["actor/tis_capped"] < 0.5

"""lora_layers: adapters on the top N blocks only give the same gradients as adapters everywhere for the
same adapters (the lower ones at B = 0 change nothing), train fewer tensors, and survive a save and load."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from helpers.training import EXAMPLES, NoSearch, low_half_reward
from searchrl.config import load_config, save_config
from searchrl.models import load_policy, tiny_model
from searchrl.trainer.checkpoint import load_trained_policy
from searchrl.trainer.loop import Trainer
from searchrl.trainer.lora import add_lora
from tolerances import GRAD_REL_TO_MAX


def test_lora_layers_gradients_equal_full_lora_for_the_same_adapters(smol_tokenizer) -> None:  # type: ignore[no-untyped-def]
    base = tiny_model(smol_tokenizer, layers=3, hidden=32, heads=2, seed=0)
    full = add_lora(copy.deepcopy(base), 4, 8, seed=0)
    top = add_lora(copy.deepcopy(base), 4, 8, seed=0, layers=1)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a non-trivial top-block adapter, the same in both; full's lower adapters keep B = 0
        for name, p in full.named_parameters():
            if "lora_B" in name and ".layers.2." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        top_params = dict(top.named_parameters())
        for name, p in full.named_parameters():
            if "lora_" in name and ".layers.2." in name:
                top_params[name].copy_(p)
    trainable = [n for n, p in top.named_parameters() if p.requires_grad]
    assert trainable and all(".layers.2." in n for n in trainable)
    ids = torch.randint(0, len(smol_tokenizer), (2, 12), generator=gen)
    for model in (full, top):
        logp = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), -1)
        logp.gather(-1, ids[:, 1:, None]).sum().backward()
    grads = {n: p.grad for n, p in full.named_parameters() if p.requires_grad and ".layers.2." in n}
    scale = max(float(g.abs().max()) for g in grads.values())
    assert scale > 0
    for name, g in grads.items():
        torch.testing.assert_close(top_params[name].grad, g, rtol=0, atol=GRAD_REL_TO_MAX * scale)


def test_lora_layers_run_saves_and_loads(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model_dir, run = tmp_path / "model", tmp_path / "run"
    tiny_model(smol_tokenizer, layers=2, hidden=32, heads=2, seed=0).save_pretrained(model_dir)
    smol_tokenizer.save_pretrained(model_dir)
    overrides = ["train.lora_r=4", "train.lora_layers=1", "train.steps=1", "train.prompts_per_step=2"]
    overrides += ["rollout.group_size=2", "rollout.max_turns=1", "rollout.max_new_tokens=4", "train.kl_coef=0"]
    cfg = load_config(None, [*overrides, f"model.path={model_dir}", f"output_dir={run}"])
    save_config(cfg, run)
    model, tok = load_policy(cfg.model.path)
    trainer = Trainer(cfg, model, tok, NoSearch(), EXAMPLES, run, reward_fn=low_half_reward(len(tok)))
    trainer.fit()
    _, policy, _, step = load_trained_policy(run)
    loaded = dict(policy.named_parameters())
    trained = {n: p for n, p in trainer.policy.named_parameters() if p.requires_grad}
    assert step == 1 and trained and all(".layers.1." in n for n in trained)
    for name, p in trained.items():
        assert loaded[name].detach().equal(p.detach()), name
    with pytest.raises(ValueError, match="lora_layers=5"):
        add_lora(tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0), 4, 8, seed=0, layers=5)


def test_lora_layers_starts_from_a_full_lora_warm_start_through_its_merged_export(  # type: ignore[no-untyped-def]
    smol_tokenizer, tmp_path: Path
) -> None:
    """An arm with adapters on the top block only cannot load a warm start adapted in every block: it starts
    from that warm start exported merged (model.path), with fresh adapters, and computes the same policy."""
    from searchrl.experiment.runner import Experiment
    from searchrl.trainer.checkpoint import TrainState, save_checkpoint

    model_dir, warm, run = tmp_path / "model", tmp_path / "warm", tmp_path / "run"
    tiny_model(smol_tokenizer, layers=2, hidden=32, heads=2, seed=0).save_pretrained(model_dir)
    smol_tokenizer.save_pretrained(model_dir)
    common = [f"model.path={model_dir}", "train.lora_r=4", "train.lora_alpha=8"]
    wcfg = load_config(None, [*common, f"output_dir={warm}"])
    save_config(wcfg, warm)
    model, _ = load_policy(wcfg.model.path)
    policy = add_lora(model, 4, 8, wcfg.seed)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a trained warm start: every block's adapter moved
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    opt = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.0)
    ckpt = save_checkpoint(warm, TrainState(step=0), {"policy": policy}, {"policy": opt})

    same = load_config(None, [*common, f"output_dir={run}"])
    assert Experiment.fitted_start(same, ckpt) == (same, ckpt)  # same layout: load the checkpoint as before
    arm = load_config(None, [*common, "train.lora_layers=1", f"output_dir={run}"])
    fitted, start = Experiment.fitted_start(arm, ckpt)
    merged = Path(fitted.model.path)
    assert start is None and merged == warm / "merged-000000" and (merged / "config.json").is_file()
    stamp = (merged / "model.safetensors").stat().st_mtime_ns
    assert Experiment.fitted_start(arm, ckpt)[0].model.path == fitted.model.path  # exported once, reused
    assert (merged / "model.safetensors").stat().st_mtime_ns == stamp

    base, _ = load_policy(fitted.model.path)
    top = add_lora(base, 4, 8, fitted.seed, fitted.train.lora_layers)
    assert all(".layers.1." in n for n, p in top.named_parameters() if p.requires_grad)
    ids = torch.randint(0, len(smol_tokenizer), (1, 10), generator=gen)
    raw, _ = load_policy(str(model_dir))
    with torch.no_grad():
        want, got, untrained = policy(input_ids=ids).logits, top(input_ids=ids).logits, raw(input_ids=ids).logits
    tol = GRAD_REL_TO_MAX * float(want.abs().max())
    assert float((want - got).abs().max()) <= tol
    assert float((want - untrained).abs().max()) > 100 * tol  # the warm start's adapters did change the policy

"""TRL's GRPOTrainer driven by searchrl's rollout, mask and rewards (trl==1.16.0, CPU, tiny model).

Covers: the pin and the rollout_func / env_mask contract (a later TRL that changes them fails here);
the config mapping and its rejections; a 2-step GRPO run through our rollout with the HF backend;
exactly zero gradient from TRL's loss (policy, KL and entropy terms) at tokens the environment injected.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

from searchrl.config import load_config
from searchrl.engines.trl import TRL_PIN, build_grpo_trainer, grpo_args, rollout_fields
from searchrl.rollout.scripted import ScriptedBackend
from searchrl.types import QAExample

trl = pytest.importorskip("trl", reason="the TRL engine needs the trl extra: pip install 'searchrl[trl]'")

EXAMPLES = [
    QAExample("toy/0", "Who founded the Quillon Company?", ("Ilse Marrow",), "toy"),
    QAExample("toy/1", "Where was Ilse Marrow born?", ("Varnholt",), "toy"),
]
SCRIPTS = [  # per rollout row: some search and answer right, some answer wrong at once
    ["<search> Quillon Company founder </search>", "<answer> Ilse Marrow </answer>"],
    ["<answer> Tessaly </answer>"],
    ["<search> Ilse Marrow born </search>", "<answer> Varnholt </answer>"],
    ["<answer> nobody </answer>"],
]


def cfg_for(tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(
        None,
        [
            f"output_dir={tmp_path / 'run'}",
            "train.algorithm=grpo",
            "train.steps=2",
            "train.prompts_per_step=2",
            "rollout.group_size=2",
            "train.mini_batch=4",
            "train.micro_batch=2",
            "train.lora_r=0",
            "train.kl_coef=0",
            "train.lr=0.01",
            "rollout.max_turns=3",
            "rollout.max_new_tokens=8",
            "rollout.max_context=512",
            *extra,
        ],
    )


def test_pinned_trl_keeps_the_rollout_func_contract() -> None:
    """If a later TRL renames rollout_func or stops reading env_mask, this fails and names what moved."""
    from trl import GRPOTrainer

    assert trl.__version__ == TRL_PIN, (
        f"searchrl.engines.trl was written against trl {TRL_PIN}, found {trl.__version__}"
    )
    params = inspect.signature(GRPOTrainer.__init__).parameters
    assert "rollout_func" in params and "environment_factory" in params
    source = inspect.getsource(GRPOTrainer._generate)
    assert 'extra_fields.pop("env_mask"' in source, "TRL no longer takes env_mask from rollout_func's output"
    for key in ("prompt_ids", "completion_ids", "logprobs"):
        assert f'"{key}"' in source, f"rollout_func's required key {key} moved"
    loss_source = inspect.getsource(GRPOTrainer._compute_loss)
    assert 'completion_mask * inputs["tool_mask"]' in loss_source, "TRL's loss no longer multiplies in the env mask"


def test_config_maps_onto_grpo_config_and_rejects_what_trl_cannot_do(tmp_path: Path) -> None:
    args = grpo_args(cfg_for(tmp_path, "train.kl_coef=0.01", "train.epochs=2"), world=1)
    assert (args["beta"], args["num_iterations"], args["num_generations"]) == (0.01, 2, 2)
    assert (args["generation_batch_size"], args["per_device_train_batch_size"]) == (4, 2)
    assert args["gradient_accumulation_steps"] == 2 and args["max_steps"] == 2 * 1 * 2
    assert args["loss_type"] == "dapo" and args["scale_rewards"] == "group"
    dr = grpo_args(cfg_for(tmp_path, "train.algorithm=dr_grpo", "train.loss_agg=seq-mean-token-sum-norm"))
    assert (dr["loss_type"], dr["scale_rewards"]) == ("dr_grpo", "none")
    assert (
        grpo_args(cfg_for(tmp_path, "train.mini_batch=4", "train.micro_batch=1"), world=2)[
            "gradient_accumulation_steps"
        ]
        == 2
    )
    rejected = {
        "train.algorithm=ppo": "train.algorithm",
        "train.algorithm=reinforce_pp_baseline": "train.algorithm",
        "train.loss_agg=seq-mean-token-sum": "train.loss_agg",
        "train.policy_loss=pg": "train.policy_loss",
        "train.clip_ratio_c=2": "train.clip_ratio_c",
        "train.dynamic_sampling=true": "train.dynamic_sampling",
        "train.kl_estimator=k1": "train.kl_estimator",
        "train.mini_batch=3": "train.mini_batch",
        "rollout.group_size=1": "rollout.group_size",
        "trl.vllm=server": "trl.vllm",
    }
    for override, field in rejected.items():
        extra = (override, "train.kl_coef=0.01") if "kl_estimator" in override else (override,)
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            grpo_args(cfg_for(tmp_path, *extra))
    with pytest.raises(ValueError, match=r"train\.log_kl"):  # TRL has no reference with beta 0, so no KL to log
        grpo_args(cfg_for(tmp_path, "train.log_kl=true", "train.kl_coef=0"))
    assert grpo_args(cfg_for(tmp_path, "train.log_kl=true", "train.kl_coef=0.01"))["beta"] == 0.01


def test_rollout_fields_cut_after_the_prompt_and_honour_the_ablation(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from helpers.rollout import make_engine, prompt_ids
    from searchrl.rollout.backend import SamplingParams
    from searchrl.rollout.engine import RolloutRequest

    engine, _, _ = make_engine(smol_tokenizer, SCRIPTS[:1])
    traj = engine.run([RolloutRequest("a", 0, prompt_ids(smol_tokenizer, "q"))], SamplingParams(greedy=True), 0)[0]
    out = rollout_fields([traj])
    n = traj.prompt_len
    assert out["prompt_ids"][0] + out["completion_ids"][0] == traj.ids
    assert out["env_mask"][0] == traj.loss_mask[n:] and 0 in out["env_mask"][0] and out["searches"] == [1]
    assert len(out["logprobs"][0]) == len(out["completion_ids"][0])
    assert rollout_fields([traj], mask_retrieved=False)["env_mask"][0] == [1] * (len(traj.ids) - n)


def test_two_grpo_steps_through_our_rollout(smol_tokenizer, tiny_model_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """HF sampling with a tiny random model: it writes invalid actions, so corrective messages are injected."""
    from transformers import AutoModelForCausalLM

    from helpers.rollout import CORPUS, KeywordRetriever
    from helpers.training import low_half_reward
    from searchrl.engines.trl import train_with_trl

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = build_grpo_trainer(
        cfg_for(tmp_path),
        model,
        smol_tokenizer,
        KeywordRetriever(CORPUS),
        EXAMPLES,
        reward_fn=low_half_reward(len(smol_tokenizer)),
    )
    seen: list[dict] = []  # type: ignore[type-arg]
    rollout = trainer.rollout_func
    trainer.rollout_func = lambda prompts, t: seen.append(rollout(prompts, t)) or seen[-1]
    history = train_with_trl(trainer, tmp_path / "run")
    assert trainer.state.global_step == 2 and len(seen) == 2  # one generation batch per searchrl step
    steps = [h for h in history if "reward" in h]
    assert len(steps) == 2
    for out, h in zip(seen, steps, strict=True):
        assert len(out["completion_ids"]) == 4  # 2 prompts x 2 samples on this process
        assert any(0 in m for m in out["env_mask"]), "no injected tokens: the test would not exercise env_mask"
        policy_tokens = [sum(m) for m in out["env_mask"]]  # TRL counts env_mask=1 tokens as the completion
        assert h["completions/mean_length"] == pytest.approx(sum(policy_tokens) / 4)
        assert "rollout/searches" in h
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed, "two GRPO steps left every weight unchanged"
    assert (tmp_path / "run" / "trl_metrics.jsonl").is_file()


def _hidden_grads(smol_tokenizer, cfg):  # type: ignore[no-untyped-def]
    """(|d loss / d final hidden| per completion token [B, C], TRL's tool_mask, completion_mask) of one batch."""
    from helpers.rollout import CORPUS, KeywordRetriever
    from searchrl.models import tiny_model

    model = tiny_model(smol_tokenizer, layers=1, hidden=32, heads=2, seed=0)
    backend = lambda t: ScriptedBackend(smol_tokenizer, SCRIPTS)  # noqa: E731
    trainer = build_grpo_trainer(cfg, model, smol_tokenizer, KeywordRetriever(CORPUS), EXAMPLES, backend=backend)
    rows = [{"prompt": ex.question, "answers": list(ex.answers), "example_id": ex.id} for ex in EXAMPLES]
    trainer.model.train()
    batch = trainer._generate_and_score_completions([dict(r) for r in rows for _ in range(2)])  # TRL writes into each
    assert (batch["advantages"] != 0).all()
    captured = {}

    def keep_hidden(_m, _i, out):  # type: ignore[no-untyped-def]
        out.retain_grad()
        captured["hidden"] = out

    # TRL fuses the LM head (no logits tensor exists), so watch the final hidden states: row t feeds only
    # the log-prob and entropy of token t + 1, so its gradient is zero iff the loss ignores that token.
    trainer.current_gradient_accumulation_steps = 1  # set by TRL's training loop, which this test bypasses
    handle = trainer.model.get_base_model().model.norm.register_forward_hook(keep_hidden)
    trainer.compute_loss(trainer.model, batch).backward()
    handle.remove()
    c = batch["completion_ids"].shape[1]
    grad = captured["hidden"].grad[:, -(c + 1) : -1].abs().sum(-1)  # row predicting completion token k
    return grad, batch["tool_mask"], batch["completion_mask"]


def test_trl_loss_puts_zero_gradient_on_injected_tokens(smol_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Policy, KL (beta > 0, LoRA reference) and entropy terms: exactly 0 at env_mask = 0, nonzero elsewhere;
    the ablation (mask_retrieved_tokens=false) trains on the same injected tokens."""
    extra = ("train.lora_r=4", "train.kl_coef=0.05", "train.entropy_coef=0.01", "train.reward=em")
    extra += ("rollout.max_new_tokens=24",)
    grad, env, real = _hidden_grads(smol_tokenizer, cfg_for(tmp_path, *extra))
    injected = (env == 0) & (real == 1)
    assert injected.sum() > 20  # the <information> blocks of two searches
    assert torch.all(grad[injected] == 0), "TRL's loss sends gradient into injected tokens"
    assert torch.all(grad[(env == 1) & (real == 1)] > 0)
    grad_off, env_off, _ = _hidden_grads(smol_tokenizer, cfg_for(tmp_path, *extra, "train.mask_retrieved_tokens=false"))
    assert torch.all(env_off[real == 1] == 1) and torch.all(grad_off[injected] > 0)


def test_cli_rejects_what_trl_cannot_do_naming_the_field() -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "searchrl.cli", "train", "--engine", "trl", "train.algorithm=ppo"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "train.algorithm=ppo" in res.stderr and "grpo" in res.stderr


def test_cli_trains_with_trl(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`searchrl train --engine trl` end to end: one step on the world, TRL's log written."""
    import subprocess
    import sys

    out = tmp_path / "run"
    args = [f"model.path={tiny_model_dir}", f"output_dir={out}", "data.train=world:default", "train.steps=1"]
    args += ["train.prompts_per_step=2", "rollout.group_size=2", "train.mini_batch=4", "train.micro_batch=2"]
    args += ["train.lora_r=0", "rollout.max_new_tokens=6", "rollout.max_turns=2"]
    cmd = [sys.executable, "-m", "searchrl.cli", "train", "--engine", "trl", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    records = (out / "trl_metrics.jsonl").read_text().splitlines()
    assert any('"reward"' in r for r in records) and (out / "config.yaml").is_file()

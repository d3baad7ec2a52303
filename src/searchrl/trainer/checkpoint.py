"""Atomic checkpoints: trainable weights (safetensors), optimizer, scheduler, RNG, data position.

A checkpoint is a folder ``ckpt-<step>`` written under a temporary name and renamed into place, then
``latest`` (a small text file, also replaced atomically) points at it. A run killed at any moment
leaves either the previous checkpoint or the new one, never a half-written one. Pruning keeps the newest
``keep``, step 0 and any step the caller protects (the collapse watchdog's last passed checkpoint);
:func:`rewind` makes an earlier checkpoint the latest again and discards the ones after it.
:func:`load_trained_policy` rebuilds a run's policy (its config, base model, adapter, latest weights).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from searchrl.trainer.lora import add_lora
from searchrl.utils import atomic_dir, atomic_write_text

if TYPE_CHECKING:
    from searchrl.config import Config


@dataclass
class TrainState:
    """Everything besides weights that a resumed run needs to continue identically."""

    step: int = 0
    data_position: int = 0  # prompts consumed so far
    extra: dict[str, Any] | None = None


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters that require grad (the LoRA adapter, or everything for a full fine-tune)."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """The folder of step ``step``'s checkpoint (step 0: the policy RL started from, always kept)."""
    return Path(run_dir) / f"ckpt-{step:06d}"


def save_checkpoint(
    run_dir: str | Path,
    state: TrainState,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    scheduler: Any | None = None,
    generator: torch.Generator | None = None,
    keep: int = 2,
    protect: Collection[int] = (),
) -> Path:
    """Write ``run_dir/ckpt-<step>`` atomically, point ``latest`` at it, keep the newest ``keep``, step 0
    (the policy RL started from, e.g. a warm start, stays comparable with every later step) and the steps
    in ``protect``."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    final = checkpoint_dir(run_dir, state.step)
    with atomic_dir(final) as tmp:
        for name, module in modules.items():
            save_file(trainable_state(module), str(tmp / f"{name}.safetensors"))
        torch.save(
            {
                "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": rng_state(),
                "generator": generator.get_state() if generator is not None else None,
            },
            tmp / "trainer.pt",
        )
        (tmp / "state.json").write_text(
            json.dumps({"step": state.step, "data_position": state.data_position, "extra": state.extra or {}})
        )
    atomic_write_text(run_dir / "latest", final.name)
    kept = {checkpoint_dir(run_dir, s).name for s in (0, *protect)}
    for old in sorted(run_dir.glob("ckpt-*"))[:-keep]:
        if old.name not in kept:
            shutil.rmtree(old, ignore_errors=True)
    return final


def rewind(run_dir: str | Path, step: int) -> Path:
    """Point ``latest`` at step ``step``'s checkpoint again and delete every later one (a rollback: the
    later ones hold the weights it threw away, and must neither be resumed from nor crowd out pruning)."""
    run_dir = Path(run_dir)
    target = checkpoint_dir(run_dir, step)
    if not (target / "state.json").is_file():
        raise FileNotFoundError(f"cannot rewind to {target}: no such checkpoint")
    atomic_write_text(run_dir / "latest", target.name)
    for later in sorted(run_dir.glob("ckpt-*")):
        if later.name > target.name:
            shutil.rmtree(later, ignore_errors=True)
    return target


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    pointer = Path(run_dir) / "latest"
    if not pointer.is_file():
        return None
    path = Path(run_dir) / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def load_weights(path: str | Path, name: str, module: torch.nn.Module) -> None:
    """Copy ``path/<name>.safetensors`` into ``module``'s parameters of the same names."""
    from safetensors.torch import load_file

    file = Path(path) / f"{name}.safetensors"
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {path} has no {file.name}")
    weights = load_file(str(file))
    params = dict(module.named_parameters())
    missing = set(weights) - set(params)
    if missing:
        raise ValueError(f"checkpoint {path} has weights this model lacks: {sorted(missing)[:3]}")
    with torch.no_grad():
        for n, w in weights.items():
            params[n].copy_(w)


def load_checkpoint(
    path: str | Path,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    scheduler: Any | None = None,
    generator: torch.Generator | None = None,
) -> TrainState:
    """Restore weights, optimizer, scheduler and RNG from ``path``; returns the saved TrainState."""
    path = Path(path)
    for name, module in modules.items():
        load_weights(path, name, module)
    blob = torch.load(path / "trainer.pt", weights_only=False)
    for name, opt in optimizers.items():
        opt.load_state_dict(blob["optimizers"][name])
    if scheduler is not None and blob["scheduler"] is not None:
        scheduler.load_state_dict(blob["scheduler"])
    set_rng_state(blob["rng"])
    if generator is not None and blob["generator"] is not None:
        generator.set_state(blob["generator"])
    meta = json.loads((path / "state.json").read_text())
    return TrainState(step=meta["step"], data_position=meta["data_position"], extra=meta.get("extra") or None)


def trainable_layout(cfg: Any) -> tuple[str, int, int, int]:
    """What a run's saved policy tensors fit: the base model, and the LoRA rank, alpha and adapted blocks
    (0s for a full fine-tune). A checkpoint loads into a run with the same layout; alpha changes no shape
    but changes the function, so it counts too."""
    t = cfg.train
    return (str(cfg.model.path), t.lora_r, t.lora_alpha if t.lora_r else 0, t.lora_layers if t.lora_r else 0)


def load_trained_policy(run_dir: str | Path, overrides: list[str] | None = None) -> tuple[Config, Any, Any, int]:
    """The policy of a run folder: its saved config (plus ``overrides``), the base model, the LoRA adapter
    (if the run used one) and the weights of its latest checkpoint. Returns (config, policy, tokenizer, step)."""
    from searchrl.config import load_config
    from searchrl.models import load_policy

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml)")
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet (no 'latest' pointer)")
    cfg = load_config(run_dir / "config.yaml", overrides)
    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    policy = (
        add_lora(model, cfg.train.lora_r, cfg.train.lora_alpha, cfg.seed, cfg.train.lora_layers)
        if cfg.train.lora_r > 0
        else model
    )
    load_weights(ckpt, "policy", policy)
    policy.eval()
    step = int(json.loads((ckpt / "state.json").read_text())["step"])
    return cfg, policy, tok, step

"""Writing one checkpoint of a run as a Hugging Face folder.

* merged (default): the base model with the LoRA merged in (peft ``merge_and_unload``), or the whole
  model when the run trained every parameter (``train.lora_r=0``), saved with ``save_pretrained``
  (safetensors) together with the tokenizer and the generation config;
* adapter: peft's own folder (``adapter_config.json`` + ``adapter_model.safetensors``), its
  ``base_model_name_or_path`` set to the resolved base folder, plus the tokenizer.

Both get the model card and the two sidecar files of :mod:`searchrl.export.card`. The policy is the
one :func:`load_trained_policy` builds (so the export is the run's policy by construction); ``--step``
then loads that checkpoint's weights over it (every checkpoint holds all trainable tensors). The folder
is written under a temporary name and renamed into place: a failed export leaves nothing behind.
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from searchrl.config import load_config
from searchrl.export.card import CardInputs, held_out_tables, protocol_record, sft_record, write_card_files
from searchrl.models import resolve_model_path
from searchrl.trainer.checkpoint import checkpoint_dir, latest_checkpoint, load_trained_policy, load_weights
from searchrl.utils import atomic_dir


class ExportError(ValueError):
    """A request that cannot be exported (the message is one line, meant for the user)."""


@dataclass(frozen=True)
class ExportResult:
    out: Path
    step: int  # the exported checkpoint's training step
    merged: bool  # False: a PEFT adapter folder
    size_bytes: int  # all files in ``out``


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    step: int | None = None,
    merged: bool = True,
    force: bool = False,
    overrides: list[str] | None = None,
) -> ExportResult:
    """Export checkpoint ``step`` (default: the latest) of ``run_dir`` into ``out``; ``overrides`` apply to
    the run's saved config (e.g. ``model.path=`` when its base model moved)."""
    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / "config.yaml").is_file():
        raise ExportError(f"{run_dir} is not a run folder (no config.yaml)")
    check_output(run_dir, out, force)
    ckpt = pick_checkpoint(run_dir, step)
    cfg = load_config(run_dir / "config.yaml", overrides)
    if not merged and cfg.train.lora_r == 0:
        raise ExportError(f"{run_dir} trained every parameter (train.lora_r=0): it has no adapter; export it merged")
    cfg, policy, tok, _ = load_trained_policy(run_dir, overrides)
    load_weights(ckpt, "policy", policy)  # the latest again, or the --step checkpoint
    exported = int(json.loads((ckpt / "state.json").read_text())["step"])
    resolved = resolve_model_path(cfg.model.path, cfg.model.cache_dir)
    card = CardInputs(
        run_name=run_dir.resolve().name,
        step=exported,
        merged=merged,
        cfg=cfg,
        base_model={"model_path": cfg.model.path, "resolved_path": _absolute(resolved)},
        protocol=protocol_record(cfg.rollout.protocol, tok),
        tables=held_out_tables(run_dir),
        sft_examples=sft_record(run_dir, cfg),
    )
    with atomic_dir(out) as tmp:
        if merged:
            write_merged(policy, tok, tmp, lora=cfg.train.lora_r > 0)
        else:
            write_adapter(policy, tok, tmp, card.base_model["resolved_path"])
        write_card_files(tmp, card)
        size = publishable(tmp)
    return ExportResult(out=out, step=exported, merged=merged, size_bytes=size)


def merged_start(ckpt: str | Path) -> Path:
    """Checkpoint ``ckpt`` exported merged into ``<run>/merged-<step>/`` once (reused after): a model folder
    that ``model.path`` names, so a run whose trainable layout differs (``train.lora_layers`` over a warm
    start adapted in every block, another rank, a full fine-tune) starts from exactly that policy with
    fresh adapters of its own."""
    ckpt = Path(ckpt)
    step = int(json.loads((ckpt / "state.json").read_text())["step"])
    out = ckpt.parent / f"merged-{step:06d}"
    with open(ckpt.parent / f".merged-{step:06d}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two arms (or processes) starting there export it once
        if not (out / "config.json").is_file():
            export_run(ckpt.parent, out, step=step, merged=True, force=True)
    return out


def check_output(run_dir: Path, out: Path, force: bool) -> None:
    """Refuse an output that is a file, a non-empty folder (unless ``force``), or the run folder (or one
    that contains it: ``force`` would replace the run)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out} is not empty; pass --force to replace it")
    if out.resolve() == run_dir.resolve() or out.resolve() in run_dir.resolve().parents:
        raise ExportError(f"--out {out} would replace the run folder {run_dir}")


def pick_checkpoint(run_dir: Path, step: int | None) -> Path:
    """The checkpoint folder of ``step``, or the one ``latest`` points at."""
    if step is None:
        latest = latest_checkpoint(run_dir)
        if latest is None:
            raise ExportError(f"{run_dir} has no checkpoint yet (no 'latest' pointer to a ckpt-* folder)")
        return latest
    ckpt = checkpoint_dir(run_dir, step)
    if not (ckpt / "state.json").is_file():
        saved = sorted(int(json.loads((p / "state.json").read_text())["step"]) for p in _checkpoints(run_dir))
        listed = ", ".join(map(str, saved)) or "none"
        raise ExportError(f"{run_dir} has no checkpoint of step {step} (saved steps: {listed})")
    return ckpt


def _checkpoints(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.glob("ckpt-*") if (p / "state.json").is_file()]


def write_merged(policy: Any, tokenizer: Any, folder: Path, lora: bool) -> None:
    """Whole weights (LoRA merged in when ``lora``) + config + generation config + tokenizer."""
    model = policy.merge_and_unload() if lora else policy
    model.save_pretrained(folder)  # safetensors; writes generation_config.json too
    tokenizer.save_pretrained(folder)


def write_adapter(policy: Any, tokenizer: Any, folder: Path, base: str) -> None:
    """peft's adapter folder; ``base`` (the resolved base model) goes into ``adapter_config.json``."""
    for adapter in policy.peft_config.values():
        adapter.base_model_name_or_path = base
    policy.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def publishable(folder: Path) -> int:
    """Make ``folder`` readable by others (temporary folders and files are created owner-only): folders
    0755, files 0644. Returns the total size of its files in bytes."""
    size = 0
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
        size += path.stat().st_size if path.is_file() else 0
    return size


def _absolute(path: Path | str) -> str:
    """A local folder as an absolute path; a hub id unchanged."""
    return str(Path(path).resolve()) if Path(path).is_dir() else str(path)

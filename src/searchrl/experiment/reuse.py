"""Runs another experiment folder already has: copied, not trained again.

An experiment often shares arms with another one (F2's masked arm is F1's GRPO arm), and its test run
trains seed 0 exactly as its dev calibration did (training never reads the held-out split). ``reuse:``
in an experiment file names such folders; ``searchrl experiment`` also looks in the calibration folder
(``<name>_dev`` beside the output folder) when it runs on test. A run is copied only when it is the run
this experiment would train:

* the same world (or real data), warm start settings, RL question types and shared config; for the arm,
  which must start from the base model or the warm start: the same init, steps, overrides and curriculum
  flag, and the same curriculum settings when it uses one;
* the run's own ``config.yaml`` equal to the config this arm x seed trains with (its folder and base model
  path aside), so a source whose file was edited after its runs finished cannot pass;
* the same warm start checkpoint, byte for byte (a missing warm start is copied from the first source
  whose settings match; one trained here that differs blocks reuse);
* its training finished (its last checkpoint is at the arm's step count, or the watchdog stopped it);
* nothing of it begun here (such a run resumes its own checkpoints).

Its greedy held-out rows come along only when the held-out set and the evaluation method are the same too
(``held_out.samples`` aside: avg@k rows are computed here when the source has none); otherwise the trained
run is evaluated here. A copy is made in a temporary folder and renamed, so a
cut-off copy never looks finished. ``reused_from.json`` in the run folder says where it came from; the
source's own timing is kept as ``timing.source.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from pydantic import ValidationError

from searchrl.config import ConfigError, load_config
from searchrl.experiment.spec import Arm, ExperimentSpec
from searchrl.trainer.checkpoint import latest_checkpoint
from searchrl.utils import atomic_dir, atomic_write_text, file_fingerprint

SHARED = ("world", "data", "warm_start", "rl_types", "config")
EVAL_FILES = ("eval", "report.html", "timing.json")


def load_source(folder: Path) -> ExperimentSpec | None:
    """The spec another experiment folder ran (its ``spec.yaml``), or None when it has none or an invalid one."""
    try:
        data = yaml.safe_load((folder / "spec.yaml").read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("data") is not None:
            data.pop("world", None)  # written with every field by runners before 2026-12-06
        if isinstance(data, dict) and isinstance(data.get("config"), dict):  # saved before sparse was the default:
            retrieval = data["config"].setdefault("retrieval", {})  # the runner built numba, whatever it said
            if isinstance(retrieval, dict):
                retrieval.setdefault("bm25_engine", "numba")
        return ExperimentSpec.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError):
        return None


def same_warm_start(mine: ExperimentSpec, theirs: ExperimentSpec) -> bool:
    return all(getattr(mine, f) == getattr(theirs, f) for f in ("world", "data", "warm_start", "config"))


def why_not_same_training(mine: ExperimentSpec, theirs: ExperimentSpec, arm: str) -> str | None:
    """None when ``theirs`` trains arm ``arm`` exactly as ``mine`` does; else the first difference."""
    for field in SHARED:
        if getattr(mine, field) != getattr(theirs, field):
            return f"its {field} differs"
    a = mine.arm(arm)
    b = next((x for x in theirs.arms if x.name == arm), None)
    if b is None:
        return f"it has no arm '{arm}'"
    if a.init not in ("base", "warm_start"):  # the parent run's weights would need the same check
        return f"arm '{arm}' starts from another arm"
    if (a.init, a.steps, a.overrides, a.curriculum) != (b.init, b.steps, b.overrides, b.curriculum):
        return f"its arm '{arm}' differs"
    if a.curriculum and mine.curriculum != theirs.curriculum:
        return "its curriculum differs"
    return None


def same_config(mine: ExperimentSpec, arm: Arm, seed: int, run: Path) -> bool:
    """Whether the run's own ``config.yaml`` is the config this arm x seed trains with (its folder and the
    base model's path aside: a merged start lives in the source's folder)."""
    try:  # read back through today's Config: a field added since takes its default in both
        theirs = load_config(run / "config.yaml").model_dump(mode="json")
    except (OSError, ValueError, ConfigError):
        return False
    ours = mine.arm_config(arm, seed, run).model_dump(mode="json")
    for tree in (ours, theirs):
        tree.pop("output_dir", None)
        tree["model"].pop("path", None)
    return ours == theirs


def fingerprint(folder: Path) -> str | None:
    """sha256 of the policy weights of ``folder``'s first checkpoint (the warm start's only one)."""
    ckpt = folder / "ckpt-000000" / "policy.safetensors"
    return file_fingerprint(ckpt) if ckpt.is_file() else None


def finished_warm_start(folder: Path) -> bool:
    return (folder / "sft.json").is_file() and latest_checkpoint(folder) is not None


def copy_warm_start(out: Path, spec: ExperimentSpec, sources: list[Path]) -> Path | None:
    """Copy a matching finished warm start into ``out/warm_start`` when this experiment has none yet."""
    if finished_warm_start(out / "warm_start"):
        return None
    for src in sources:
        theirs = load_source(src)
        if theirs is not None and same_warm_start(spec, theirs) and finished_warm_start(src / "warm_start"):
            with atomic_dir(out / "warm_start") as tmp:  # all or nothing; replaces an unfinished one
                shutil.copytree(src / "warm_start", tmp, dirs_exist_ok=True)
            return src
    return None


def copy_run(out: Path, spec: ExperimentSpec, arm: Arm, seed: int, sources: list[Path]) -> dict[str, object] | None:
    """Copy arm x seed's finished run from a source that trained it identically, preferring one whose
    held-out rows can be kept; the record written to ``reused_from.json``, or None when no source has it."""
    for need_rows in (True, False):
        for src in sources:
            record = _copy_from(out, spec, arm, seed, src, need_rows)
            if record is not None:
                return record
    return None


def _copy_from(
    out: Path, spec: ExperimentSpec, arm: Arm, seed: int, src: Path, need_rows: bool
) -> dict[str, object] | None:
    theirs = load_source(src)
    if theirs is None or why_not_same_training(spec, theirs, arm.name) is not None:
        return None
    run = src / "arms" / arm.name / f"seed{seed}"
    if not same_config(spec, arm, seed, run):
        return None
    rows = run / "eval" / "heldout.jsonl"
    greedy = {"samples": 0}  # the greedy rows do not depend on k: a run with avg@k added keeps them
    same_held_out = theirs.held_out.model_copy(update=greedy) == spec.held_out.model_copy(update=greedy)
    keep_rows = same_held_out and theirs.arm(arm.name).method == arm.method and rows.is_file()
    if need_rows != keep_rows:
        return None
    if arm.steps > 0:  # finished training: its last checkpoint at the arm's step count, or stopped by the watchdog
        ckpt = latest_checkpoint(run)
        done = ckpt is not None and ckpt.name.endswith(f"{arm.steps:06d}")
        if not (done or (ckpt is not None and (run / "watchdog_stop.txt").is_file())):
            return None
    elif not keep_rows:
        return None  # nothing trained: only its rows would be worth copying
    if spec.warm_start is not None and fingerprint(out / "warm_start") != fingerprint(src / "warm_start"):
        return None
    here = out / "arms" / arm.name / f"seed{seed}"
    if here.exists() and any(here.iterdir()):
        return None  # begun here: it resumes its own checkpoints
    skip: tuple[str, ...] = () if keep_rows else EVAL_FILES
    if keep_rows and theirs.held_out.samples != spec.held_out.samples:  # avg@k rows of another k: made here
        skip = tuple(f"sampled{ext}" for ext in (".jsonl", ".json", ".manifest.json"))
    record: dict[str, object] = {"from": str(run), "held_out_rows": keep_rows}
    with atomic_dir(here) as tmp:  # all or nothing: a cut-off copy never looks finished
        shutil.copytree(run, tmp, dirs_exist_ok=True, ignore=lambda _d, names: [n for n in names if n in skip])
        if not keep_rows and (run / "timing.json").is_file():
            shutil.copyfile(run / "timing.json", tmp / "timing.source.json")
        atomic_write_text(tmp / "reused_from.json", json.dumps(record, indent=1))
    return record


def copy_curriculum(out: Path, spec: ExperimentSpec, label: str, start: Path | None, sources: list[Path]) -> bool:
    """Copy the curriculum record ``curriculum/<label>.json`` of a source with the same curriculum settings,
    RL questions and starting policy (the base model, or the warm start byte for byte), its ``start``
    rewritten to ours."""
    if label not in ("warm_start", "base"):
        return False
    for src in sources:
        theirs = load_source(src)
        path = src / "curriculum" / f"{label}.json"
        if theirs is None or not path.is_file() or theirs.curriculum != spec.curriculum:
            continue
        if any(getattr(spec, f) != getattr(theirs, f) for f in SHARED):
            continue
        if label == "warm_start" and fingerprint(out / "warm_start") != fingerprint(src / "warm_start"):
            continue
        record = json.loads(path.read_text())
        record.update(start=str(start), copied_from=str(path))
        atomic_write_text(out / "curriculum" / f"{label}.json", json.dumps(record, indent=1))
        return True
    return False

"""An experiment as a file: arms x seeds on a synthetic world, a held-out set, and the claims to judge.

```yaml
name: f1_f2_f3
world: {seed: 1, size: medium}          # generated, indexed with BM25 (or `data:`, real questions, below)
held_out: {split: test, per_type: {2hop: 100}}
seeds: [0, 1, 2]
config: {...}                            # a searchrl config tree shared by every arm (as in recipes/)
warm_start: {per_type: {1hop: 16, 2hop: 40}}   # one LoRA SFT on gold trajectories, shared by arms
rl_types: [2hop]                         # RL trains on these training-question types
curriculum: {candidates: 256, k: 4, band: [1, 3]}   # optional; arms opt in with `curriculum: true`
arms:
  - {name: warm, init: warm_start, steps: 0}
  - {name: grpo, init: warm_start, steps: 4}
  - {name: unmasked, init: warm_start, steps: 4, overrides: [train.mask_retrieved_tokens=false]}
claims:
  - {id: F1, before: warm, after: grpo, metric: em, direction: greater}
```

``data:`` replaces the world with real questions over the corpora their passages come from
(``searchrl.data.real``): ``{sources: [{label, questions, corpus}], splits: {train, dev, test}}``; the
question types are the sources' labels.

An arm starts from the base model, the shared warm start, or another arm's final checkpoint of the
same seed (``init: <arm name>``, e.g. R1-Searcher's stage 2 from stage 1). An arm with ``steps: 0``
that starts from the base model or the warm start is deterministic (greedy evaluation), so it runs
once, not once per seed; with ``held_out.samples`` its avg@k rows come from that one run (seed 0), paired
with every seed of the arm it is compared with. Unknown keys are errors, as in the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from searchrl.config import Config, ConfigError, apply_overrides, config_from_dict
from searchrl.data.world import SIZES
from searchrl.eval.run import Method
from searchrl.retrieval.bm25_engines import DEFAULT_BM25_ENGINE

__all__ = ["Arm", "Claim", "Curriculum", "DataSource", "ExperimentSpec", "RealData", "load_spec"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorldSpec(_Strict):
    seed: int = Field(1, description="World generator seed.")
    size: str = Field("medium", description=f"World size: {', '.join(SIZES)}.")


class DataSource(_Strict):
    label: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Question type its questions are grouped under.")
    questions: str = Field(description="QA file (searchrl.data.qa formats); relative to the current folder.")
    corpus: str = Field(description="The corpus its supporting passages come from (searchrl.retrieval.corpus).")


class RealData(_Strict):
    """Real questions over their own corpora instead of a generated world (searchrl.data.real)."""

    sources: list[DataSource] = Field(min_length=1)
    splits: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.3, "dev": 0.2, "test": 0.5},
        description="Fractions per split, cut by a hash of the question id (test first, then dev).",
    )


class HeldOut(_Strict):
    split: Literal["train", "dev", "test"] = Field("test", description="Split the held-out questions come from.")
    per_type: dict[str, int] = Field(description="Questions per type, e.g. {2hop: 100} (the first n of the split).")
    calibration_per_type: dict[str, int] | None = Field(
        None, description="per_type of the dev calibration when dev is smaller than the split (real data)."
    )
    samples: int = Field(
        0,
        ge=0,
        description="k > 0: also k sampled answers per question at the arm's rollout.temperature "
        "(avg@k rows, eval/sampled.jsonl), for claims with `decoding: sampled`.",
    )


class WarmStart(_Strict):
    per_type: dict[str, int] = Field(description="Gold trajectories per training-question type for the LoRA SFT.")


class Curriculum(_Strict):
    """R1-Searcher's data selection from the policy RL starts from: sample ``k`` rollouts per candidate
    training question and keep those solved ``band`` times (inclusive). Computed once per starting
    checkpoint and cached in ``OUT/curriculum/``; every arm and seed that starts there reuses it."""

    candidates: int = Field(256, ge=1, description="Training questions tried (the first n after a fixed shuffle).")
    per_type: dict[str, int] = Field(
        default_factory=dict,
        description=(
            "Candidates per question type instead of `candidates` (e.g. {1hop: 48, 2hop: 96}), so that a type "
            "the policy rarely solves still reaches the band."
        ),
    )
    k: int = Field(4, ge=2, description="Samples per candidate, at rollout.temperature.")
    band: tuple[int, int] = Field((1, 3), description="Kept success counts, inclusive (1..k-1: mixed groups).")
    seed: int = Field(0, description="Seed of the shuffle and the samples (not the run's: shared by seeds).")

    @model_validator(mode="after")
    def _band(self) -> Curriculum:
        if not 0 <= self.band[0] <= self.band[1] <= self.k:
            raise ValueError(f"curriculum.band {self.band} must satisfy 0 <= low <= high <= k ({self.k})")
        return self


class Arm(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Folder-safe label.")
    init: str = Field("warm_start", description="base | warm_start | the name of an earlier arm.")
    steps: int = Field(0, ge=0, description="RL steps (0 = evaluate the starting policy only).")
    method: Method = Field("agent", description="How it is evaluated (searchrl.eval.run.METHODS).")
    overrides: list[str] = Field(default_factory=list, description="Dotted config overrides of this arm.")
    curriculum: bool = Field(False, description="Train on the spec's curriculum (needs `curriculum:`).")


class Claim(_Strict):
    id: str = Field(description="Short id, e.g. F1.")
    title: str = Field("", description="What the paper claims, in one line.")
    paper: str = Field("", description="The paper's number, as text.")
    before: str = Field(description="The arm the claim improves on.")
    after: str = Field(description="The arm that should be better.")
    metric: str = Field("em", description="Held-out metric (searchrl.eval.paired.ROW_METRICS).")
    group: str = Field("all", description="Question type the verdict is read from ('all' = every type).")
    direction: Literal["greater", "less"] = Field("greater", description="Expected sign of after - before.")
    decoding: Literal["greedy", "sampled"] = Field(
        "greedy", description="Read the greedy rows, or the avg@k rows of held_out.samples."
    )


class ExperimentSpec(_Strict):
    name: str
    world: WorldSpec = Field(default_factory=WorldSpec)
    data: RealData | None = Field(None, description="Real questions and corpora; replaces `world`.")
    held_out: HeldOut
    seeds: list[int] = Field(min_length=1)
    config: dict[str, Any] = Field(default_factory=dict, description="Config tree shared by every arm.")
    warm_start: WarmStart | None = None
    rl_types: list[str] = Field(default_factory=lambda: ["2hop"])
    curriculum: Curriculum | None = None
    arms: list[Arm] = Field(min_length=1)
    claims: list[Claim] = Field(default_factory=list)
    bootstrap: int = Field(2000, ge=100, description="Bootstrap resamples.")
    reuse: list[str] = Field(
        default_factory=list,
        description="Other experiments' output folders whose identical finished runs are copied "
        "(searchrl.experiment.reuse); a calibration also looks in each one's `_dev` folder.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        if self.data is not None and "world" in self.model_fields_set:
            raise ValueError("give either `world` (a generated world) or `data` (real questions), not both")
        if self.world.size not in SIZES:
            raise ValueError(f"world.size '{self.world.size}' is not one of {', '.join(SIZES)}")
        if self.data is not None:  # the question types are the sources' labels
            labels = {src.label for src in self.data.sources}
            named = {
                "held_out.per_type": set(self.held_out.per_type),
                "rl_types": set(self.rl_types),
                "warm_start.per_type": set(self.warm_start.per_type) if self.warm_start else set(),
            }
            for where, kinds in named.items():
                if kinds - labels:
                    raise ValueError(f"{where} names {sorted(kinds - labels)}; the data's labels are {sorted(labels)}")
        seen: set[str] = set()
        for arm in self.arms:
            if arm.name in seen or arm.name in ("base", "warm_start"):
                raise ValueError(f"arm name '{arm.name}' is repeated or reserved")
            if arm.init not in ("base", "warm_start") and arm.init not in seen:
                raise ValueError(f"arm '{arm.name}' starts from '{arm.init}', which is not an earlier arm")
            if arm.curriculum and (self.curriculum is None or arm.steps == 0):
                raise ValueError(f"arm '{arm.name}' asks for the curriculum, but the spec has none or it has no RL")
            if arm.init == "warm_start" and self.warm_start is None:
                raise ValueError(f"arm '{arm.name}' starts from the warm start, but the spec has no warm_start")
            seen.add(arm.name)
        for claim in self.claims:
            for name in (claim.before, claim.after):
                if name not in seen:
                    raise ValueError(f"claim {claim.id} names arm '{name}', which the spec does not have")
            if claim.decoding == "sampled" and not self.held_out.samples:
                raise ValueError(f"claim {claim.id} reads sampled answers; set held_out.samples (k > 0)")
        retrieval = self.config.get("retrieval")
        if retrieval is None or isinstance(retrieval, dict):  # stated in spec.yaml: reuse.load_source reads it
            self.config = {**self.config, "retrieval": {"bm25_engine": DEFAULT_BM25_ENGINE, **(retrieval or {})}}
        return self

    def for_calibration(self) -> ExperimentSpec:
        """The same experiment on the dev split with the first seed: where settings are picked."""
        per_type = self.held_out.calibration_per_type or self.held_out.per_type
        held = self.held_out.model_copy(update={"split": "dev", "per_type": per_type})
        reuse = [f"{p}_dev" for p in self.reuse] + self.reuse  # their calibrations first: same held-out rows
        update = {"name": f"{self.name}_dev", "held_out": held, "seeds": self.seeds[:1], "reuse": reuse}
        return self.model_copy(update=update)

    def reuse_sources(self, out: Path) -> list[Path]:
        """Where :mod:`searchrl.experiment.reuse` looks for finished runs: the ``reuse`` folders and, for a
        run on test, this experiment's own calibration beside ``out`` (its seed 0 trains the same)."""
        theirs = [Path(p) for p in self.reuse]  # a calibration's list already starts with their `_dev` folders
        if not self.name.endswith("_dev"):
            theirs += [out.parent / f"{self.name}_dev", *(Path(f"{p}_dev") for p in self.reuse)]
        unique = {p.resolve(): p for p in reversed(theirs)}  # first occurrence wins
        return [p for p in theirs if unique.get(p.resolve()) is p and p.resolve() != out.resolve()]

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def deterministic(self, arm: Arm) -> bool:
        """An arm whose result does not depend on the seed: no RL, from a seed-independent start."""
        return arm.steps == 0 and (arm.init in ("base", "warm_start") or self.deterministic(self.arm(arm.init)))

    def arm_seeds(self, arm: Arm) -> list[int]:
        return self.seeds[:1] if self.deterministic(arm) else list(self.seeds)

    def arm_config(self, arm: Arm, seed: int, run_dir: Path) -> Config:
        """The shared config, then the arm's overrides, then the seed, run folder and step count."""
        data = apply_overrides(self.config, arm.overrides)
        data = apply_overrides(data, [f"seed={seed}", f"output_dir={run_dir}", f"train.steps={arm.steps}"])
        return config_from_dict(data)


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate an experiment file; every problem is a :class:`ConfigError` naming it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"experiment file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        spec = ExperimentSpec.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(x) for x in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{p}: invalid experiment:\n" + "\n".join(lines)) from None
    engine = config_from_dict(spec.config).retrieval.bm25_engine
    for arm in spec.arms:  # every arm's config must load (typos in overrides fail here, not an hour in)
        cfg = spec.arm_config(arm, spec.seeds[0], Path("unused"))
        if cfg.retrieval.bm25_engine != engine:  # one index serves every arm
            raise ConfigError(f"{p}: arm '{arm.name}' overrides retrieval.bm25_engine; set it in config instead")
    return spec

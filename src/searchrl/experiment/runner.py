"""Run an experiment file: one warm start, then every arm x seed (RL, then a greedy held-out eval).

Layout of the output folder (every piece is a resume point; running the same command again skips
what is finished and continues an interrupted RL run from its last checkpoint):

```
OUT/spec.yaml                  the experiment as run
OUT/warm_start/                the shared LoRA SFT (config.yaml, ckpt-000000, sft.json)
OUT/arms/<arm>/seed<s>/        a run folder (config.yaml, metrics.jsonl, checkpoints, report.html)
OUT/arms/<arm>/seed<s>/eval/heldout.jsonl   one row per held-out question (searchrl.eval.run.EvalRow)
OUT/arms/<arm>/seed<s>/eval/heldout.manifest.json   what produced them (searchrl.eval.manifest)
OUT/arms/<arm>/seed<s>/eval/sampled.jsonl   with held_out.samples = k: avg@k rows, one per question
OUT/findings.md, OUT/findings.html, OUT/curves/*.svg, OUT/summary.json
```

Committed results keep the rows, metrics and reports, never the checkpoints. In a fresh checkout a missing
warm start is trained again, and so is a finished run that a later arm starts from (``retrained.txt``).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from searchrl.config import Config, apply_overrides, config_from_dict, load_config, save_config
from searchrl.data.real import RealSource, real_world
from searchrl.data.world import World, generate_world
from searchrl.eval.manifest import eval_manifest
from searchrl.eval.run import evaluate, write_results
from searchrl.experiment.reuse import copy_curriculum, copy_run, copy_warm_start
from searchrl.experiment.spec import Arm, ExperimentSpec
from searchrl.export.folder import merged_start
from searchrl.models import load_policy
from searchrl.retrieval.bm25 import BM25Retriever
from searchrl.rewards.trajectory import named_reward
from searchrl.rollout.backend import SamplingParams
from searchrl.rollout.build import build_rollout
from searchrl.rollout.difficulty import in_band, pass_rates, population
from searchrl.rollout.hf import HFGenerator
from searchrl.rollout.prompts import prompt_ids
from searchrl.trainer.checkpoint import latest_checkpoint, load_trained_policy, load_weights, trainable_layout
from searchrl.trainer.loop import Trainer
from searchrl.trainer.sft import GoldTrajectory, warm_start
from searchrl.trainer.watchdog import WatchdogError
from searchrl.types import QAExample
from searchrl.utils import atomic_write_text

__all__ = ["Experiment", "run_dir_of"]

Log = Callable[[str], None]


def pick(examples: list[QAExample], kind: str, n: int) -> list[QAExample]:
    chosen = [e for e in examples if e.metadata.get("type") == kind][:n]
    if len(chosen) < n:
        raise ValueError(f"the world has {len(chosen)} '{kind}' questions in this split, the spec asks for {n}")
    return chosen


def run_dir_of(out: Path, arm: str, seed: int) -> Path:
    return out / "arms" / arm / f"seed{seed}"


@dataclass
class Experiment:
    """The objects every run of an experiment shares: the world, its BM25 index, the question sets."""

    spec: ExperimentSpec
    out: Path
    world: World
    retriever: BM25Retriever
    held_out: list[QAExample]
    log: Log
    sources: list[Path]  # other experiment folders whose identical finished runs are copied (reuse.py)

    @classmethod
    def prepare(cls, spec: ExperimentSpec, out: str | Path, log: Log = print) -> Experiment:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        saved = spec.model_dump(mode="json", exclude={"world"} if spec.data is not None else None)
        atomic_write_text(out / "spec.yaml", yaml.safe_dump(saved, sort_keys=False))
        if spec.data is None:
            world = generate_world(spec.world.seed, spec.world.size)  # type: ignore[arg-type]
            where = f"world seed {spec.world.seed} {spec.world.size}"
        else:
            sources = [RealSource(s.label, Path(s.questions), Path(s.corpus)) for s in spec.data.sources]
            world, report = real_world(sources, spec.data.splits)
            atomic_write_text(out / "data.json", json.dumps(asdict(report), indent=1))
            where = f"real data {report.kept} ({report.dropped} dropped: passages not in the corpus)"
        split = world.questions[spec.held_out.split]
        held = [e for kind, n in spec.held_out.per_type.items() for e in pick(split, kind, n)]
        log(f"{where}: {len(world.passages)} passages; held-out {len(held)}")
        bm25 = BM25Retriever.build(world.passages, engine=config_from_dict(spec.config).retrieval.bm25_engine)
        return cls(spec, out, world, bm25, held, log, spec.reuse_sources(out))

    # -- question sets ------------------------------------------------------------------------------
    def warm_golds(self) -> list[GoldTrajectory]:
        if self.spec.warm_start is None:
            return []
        train = self.world.questions["train"]
        chosen = [e for kind, n in self.spec.warm_start.per_type.items() for e in pick(train, kind, n)]
        return [
            GoldTrajectory(e.id, e.question, self.world.gold[e.id].queries, self.world.gold[e.id].answer)
            for e in chosen
        ]

    def rl_examples(self) -> list[QAExample]:
        """Training questions of the RL types that the warm start did not imitate."""
        seen = {g.example_id for g in self.warm_golds()}
        kinds = set(self.spec.rl_types)
        return [e for e in self.world.questions["train"] if e.id not in seen and e.metadata.get("type") in kinds]

    def train_examples(self, arm: Arm, seed: int) -> list[QAExample]:
        """What an arm's RL trains on: :meth:`rl_examples`, or the curriculum of its starting policy."""
        if not arm.curriculum:
            return self.rl_examples()
        return self.curriculum_of(self.start_checkpoint(arm, seed))

    def curriculum_of(self, start: Path | None) -> list[QAExample]:
        """The spec's curriculum band from the policy at ``start`` (None = the base model), cached in
        ``OUT/curriculum/<start>.json`` with each candidate's pass rate and the band's population."""
        cur = self.spec.curriculum
        assert cur is not None  # the spec checks that arms with `curriculum: true` have one
        label = "base" if start is None else "__".join(start.parent.relative_to(self.out).parts)
        path = self.out / "curriculum" / f"{label}.json"
        pool = {e.id: e for e in self.rl_examples()}
        if not path.is_file() and copy_curriculum(self.out, self.spec, label, start, self.sources):
            self.log(f"curriculum from {label}: copied ({json.loads(path.read_text())['copied_from']})")
        if path.is_file():
            saved = json.loads(path.read_text())
            same = type(cur).model_validate(saved["settings"]) == cur  # a record from before a new field: defaults
            if same and saved.get("start") == str(start):
                return [pool[i] for i in saved["kept"]]
        shuffled = list(pool.values())
        random.Random(cur.seed).shuffle(shuffled)
        if cur.per_type:
            candidates = [e for kind, n in cur.per_type.items() for e in pick(shuffled, kind, n)]
        else:
            candidates = shuffled[: cur.candidates]
        cfg = self.base_config(self.out / "curriculum")
        if start is None:
            policy, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
        else:
            _, policy, tok, _ = load_trained_policy(start.parent)
        engine = build_rollout(cfg, HFGenerator(policy, tok), self.retriever, tok)
        r = cfg.rollout
        t0 = time.perf_counter()
        rates = pass_rates(
            candidates,
            engine,
            lambda ex: prompt_ids(tok, engine.protocol, ex.question),
            named_reward(cfg.train.reward, engine.protocol),
            k=cur.k,
            params=SamplingParams(temperature=r.temperature, top_p=r.top_p, top_k=r.top_k),
            seed=cur.seed,
        )
        kept = in_band(candidates, rates, cur.k, cur.band)
        record = {
            "start": str(start),
            "settings": cur.model_dump(mode="json"),
            "seconds": time.perf_counter() - t0,
            "population": population(candidates, rates, cur.k),
            "kept_per_type": dict(Counter(str(e.metadata.get("type")) for e in kept)),
            "kept": [e.id for e in kept],
            "rates": rates,
        }
        atomic_write_text(path, json.dumps(record, indent=1))
        self.log(
            f"curriculum from {label}: {len(kept)} of {len(candidates)} questions solved {cur.band[0]}..{cur.band[1]}"
            f" of {cur.k} times ({record['kept_per_type']}; {record['seconds']:.0f} s)"
        )
        if not kept:
            raise ValueError(f"the curriculum from {label} kept no question; widen curriculum.band")
        return kept

    # -- stages ------------------------------------------------------------------------------------
    def base_config(self, run_dir: Path) -> Config:
        return config_from_dict(apply_overrides(self.spec.config, [f"output_dir={run_dir}", "train.steps=0"]))

    def warm_start(self) -> Path:
        """The shared SFT warm start (checkpoint 0 of ``OUT/warm_start``); done once, then reused."""
        wdir = self.out / "warm_start"
        if (wdir / "sft.json").is_file() and latest_checkpoint(wdir) is not None:
            return wdir
        cfg = self.base_config(wdir)
        save_config(cfg, wdir)
        model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
        trainer = Trainer(cfg, model, tok, self.retriever, self.rl_examples(), wdir)
        t0 = time.perf_counter()
        losses, n_golds = warm_start(trainer, self.warm_golds(), self.retriever)
        seconds = time.perf_counter() - t0
        atomic_write_text(wdir / "sft.json", json.dumps({"losses": losses, "examples": n_golds, "seconds": seconds}))
        self.log(f"warm start: {n_golds} gold trajectories, loss {losses[0]:.3f} -> {losses[-1]:.3f} ({seconds:.0f} s)")
        return wdir

    def start_checkpoint(self, arm: Arm, seed: int) -> Path | None:
        """The checkpoint an arm's RL starts from (None = the base model)."""
        if arm.init == "base":
            return None
        if arm.init == "warm_start":
            src = self.out / "warm_start"
        else:
            parent = self.spec.arm(arm.init)
            parent_seed = self.spec.arm_seeds(parent)[0] if self.spec.deterministic(parent) else seed
            src = run_dir_of(self.out, parent.name, parent_seed)
            if latest_checkpoint(src) is None and parent.steps > 0 and (src / "eval/heldout.jsonl").is_file():
                # a finished parent whose checkpoints are gone (a fresh checkout keeps only committed rows): train
                # it again with its own config and seed; its held-out rows stay those of the first training
                self.log(f"{parent.name} seed {parent_seed}: rows but no checkpoint; training it again for {arm.name}")
                self.policy_for(parent, parent_seed, src)
                atomic_write_text(src / "retrained.txt", f"checkpoints trained again as the start of {arm.name}\n")
        ckpt = latest_checkpoint(src)
        if ckpt is None:
            raise ValueError(
                f"arm '{arm.name}' starts from {src}, which has no checkpoint (an arm without RL from the base?)"
            )
        return ckpt

    @staticmethod
    def fitted_start(cfg: Config, start: Path | None) -> tuple[Config, Path | None]:
        """(config, checkpoint to load) for RL from ``start``. When the start's trainable tensors do not fit
        the arm (another LoRA rank, alpha or set of adapted blocks: ``train.lora_layers`` over a warm start
        adapted in every block), the arm starts from the start exported merged (its ``model.path``) with
        fresh adapters of its own (B = 0: the start's policy up to float rounding), and loads nothing."""
        if start is None or trainable_layout(load_config(start.parent / "config.yaml")) == trainable_layout(cfg):
            return cfg, start
        data = cfg.model_dump(mode="json")
        data["model"]["path"] = str(merged_start(start).resolve())
        return config_from_dict(data), None

    def rl_config(self, arm: Arm, seed: int, run_dir: Path) -> tuple[Config, Path | None]:
        """The arm's config and the checkpoint its RL loads. A run that has checkpoints keeps the base model
        its config.yaml names (a merged start stays the one it was trained on) and loads nothing: it resumes."""
        cfg = self.spec.arm_config(arm, seed, run_dir)
        saved = run_dir / "config.yaml"
        if latest_checkpoint(run_dir) is not None and saved.is_file():
            data = cfg.model_dump(mode="json")
            data["model"]["path"] = load_config(saved).model.path
            return config_from_dict(data), None
        return self.fitted_start(cfg, self.start_checkpoint(arm, seed))

    def policy_for(self, arm: Arm, seed: int, run_dir: Path) -> tuple[Config, Any, Any]:
        """Train the arm (or resume it) and return (config, policy, tokenizer) for its evaluation. A run the
        watchdog stopped (``watchdog_stop.txt``) resumes at the checkpoint it restored and trains no more."""
        if arm.steps == 0:
            cfg = self.spec.arm_config(arm, seed, run_dir)
            save_config(cfg, run_dir)
            start = self.start_checkpoint(arm, seed)
            if start is None:
                model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
                return cfg, model, tok
            _, policy, tok, _ = load_trained_policy(start.parent)
            return cfg, policy, tok
        cfg, start = self.rl_config(arm, seed, run_dir)
        save_config(cfg, run_dir)
        examples = self.train_examples(arm, seed)
        model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
        trainer = Trainer(cfg, model, tok, self.retriever, examples, run_dir)
        if trainer.resume():
            self.log(f"{arm.name} seed {seed}: resumed at RL step {trainer.state.step}")
        else:
            if start is not None:  # None: the base model, or a merged start already in model.path
                load_weights(start, "policy", trainer.policy)
            trainer.save()  # checkpoint 0: the policy RL starts from
        stopped = run_dir / "watchdog_stop.txt"
        if stopped.is_file():
            self.log(f"{arm.name} seed {seed}: the watchdog stopped it before ({stopped.read_text().strip()})")
            return cfg, trainer.policy, tok
        try:
            trainer.fit(
                arm.steps,
                progress=lambda s, n, m: self.log(
                    f"{arm.name} seed {seed}: step {s}/{n} reward {m['reward/mean']:.2f} "
                    f"searches {m['rollout/searches']:.2f} ({m['perf/time_step']:.0f} s)"
                ),
            )
        except WatchdogError as exc:  # the policy is back at its last passed checkpoint: that is what is evaluated
            atomic_write_text(stopped, f"{exc}\n")
            self.log(f"{arm.name} seed {seed}: stopped at step {trainer.state.step} ({exc}); evaluating it there")
        return cfg, trainer.policy, tok

    def run_arm(self, arm: Arm, seed: int) -> Path:
        """Train and evaluate one arm x seed unless its held-out rows exist already."""
        run_dir = run_dir_of(self.out, arm.name, seed)
        rows_path, sampled_path = run_dir / "eval" / "heldout.jsonl", run_dir / "eval" / "sampled.jsonl"
        k = self.spec.held_out.samples

        def finished() -> bool:  # the greedy rows, and the avg@k rows when the spec asks for them
            return rows_path.is_file() and (not k or sampled_path.is_file())

        if finished():
            return rows_path
        if not (run_dir / "reused_from.json").is_file():
            reused = copy_run(self.out, self.spec, arm, seed, self.sources)
            if reused is not None:
                self.log(
                    f"{arm.name} seed {seed}: copied from {reused['from']} (held-out rows: {reused['held_out_rows']})"
                )
                if finished():
                    return rows_path
        run_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        cfg, policy, tok = self.policy_for(arm, seed, run_dir)
        t_train = time.perf_counter() - t0
        engine = build_rollout(cfg, HFGenerator(policy, tok), self.retriever, tok)
        # the policy evaluated: the run's last checkpoint after RL, else the checkpoint the arm starts from
        ckpt = latest_checkpoint(run_dir) if arm.steps > 0 else self.start_checkpoint(arm, seed)
        t_sampled = 0.0
        if k and not sampled_path.is_file():  # avg@k at the training temperature
            temp, t1 = cfg.rollout.temperature, time.perf_counter()
            sampled = evaluate(arm.method, self.held_out, engine, samples=k, temperature=temp, seed=seed)
            decoding = f"avg@{k} t={temp:g}"
            manifest = eval_manifest(cfg, arm.method, self.held_out, [self.retriever], ckpt, decoding)
            write_results(run_dir / "eval", "sampled", sampled, manifest=manifest)
            t_sampled = time.perf_counter() - t1
            if rows_path.is_file():  # the greedy rows came with a copied run: its timing gets the sampled seconds
                timing = (
                    json.loads((run_dir / "timing.json").read_text()) if (run_dir / "timing.json").is_file() else {}
                )
                atomic_write_text(run_dir / "timing.json", json.dumps({**timing, "sampled_eval_s": t_sampled}))
                return rows_path
        waits: dict[str, list[float]] = {}
        rows = evaluate(arm.method, self.held_out, engine, waits=waits)
        manifest = eval_manifest(cfg, arm.method, self.held_out, [self.retriever], ckpt)
        table = write_results(run_dir / "eval", "heldout", rows, manifest=manifest, waits=waits)
        timing = {"train_s": t_train, "eval_s": time.perf_counter() - t0 - t_train - t_sampled}
        if t_sampled:
            timing["sampled_eval_s"] = t_sampled
        atomic_write_text(run_dir / "timing.json", json.dumps(timing))
        em = ", ".join(f"{g} {m['em']:.2f}" for g, m in table.items())
        self.log(
            f"{arm.name} seed {seed}: held-out EM {em} (train {timing['train_s']:.0f} s, eval {timing['eval_s']:.0f} s)"
        )
        return rows_path

    def run(self, only: list[str] | None = None) -> None:
        """Every arm x seed in file order (seed-major within an arm); ``only`` limits it to some arms."""
        if any(a.init == "warm_start" for a in self.spec.arms):
            src = copy_warm_start(self.out, self.spec, self.sources)
            if src is not None:
                self.log(f"warm start: copied from {src} (the same settings)")
            self.warm_start()
        for arm in self.spec.arms:
            if only and arm.name not in only:
                continue
            for seed in self.spec.arm_seeds(arm):
                self.run_arm(arm, seed)

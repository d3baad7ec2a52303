"""RL sample efficiency, one run: informative samples per CPU-second, today's defaults vs each feature vs all.

    .venv/bin/python benchmarks/rl_efficiency.py [--spec recipes/experiments/search_r1_f1_efficient.yaml]
        [--out runs/bench/rl_efficiency] [--steps 2] [--settings today,dynamic_sampling,...]

Every setting starts from the same warm start (the experiment file's: the demo's 16 1-hop + 40 2-hop gold
trajectories, LoRA SFT, on its world) and runs ``--steps`` GRPO steps of the file's config (F1's: 8 prompts
x 4 samples, 1-hop and 2-hop mixed), seed 0, alone on the CPU. Pointing ``--out`` at an experiment folder
reuses its warm start and curriculum. Per setting it prints:

* seconds per step (wall) and CPU seconds per step (user + system of this process, all threads);
* the informative fraction: groups with unequal rewards / groups generated;
* informative samples per CPU-second: the samples of the groups with a non-zero advantage that the
  update trains on, divided by every CPU second of the steps, wasted rollouts included. The
  curriculum's own rollouts count too: its recorded seconds (wall, x the process's CPU/wall ratio of
  the run's steps) shared out over ``--curriculum-share`` RL steps, default 36 = the 3 seeds x 12 steps
  of an experiment arm that reuses one curriculum;
* the update's seconds per trained row, and per informative sample.

The settings: ``today`` (the defaults), ``dynamic_sampling`` (cap 4x prompts), ``curriculum`` (the spec's
band from the warm start), ``shared_prompt`` (with micro-batches of one group), ``lora_layers`` (adapters on
the top ``--lora-layers`` blocks, fresh, over the warm start exported merged: Experiment.fitted_start),
``all``, and ``lean`` (curriculum + ``lora_layers``: ``all`` without the two features that cost more than they
gave on this 2-core CPU). The last lines are the ratios the issue asks for, for ``all`` and for ``lean``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import yaml

from searchrl.config import save_config
from searchrl.experiment.runner import Experiment, run_dir_of
from searchrl.experiment.spec import Arm, ExperimentSpec
from searchrl.models import load_policy
from searchrl.trainer.checkpoint import load_weights
from searchrl.trainer.loop import Trainer


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def settings(lora_layers: int, group_size: int) -> dict[str, tuple[bool, list[str]]]:
    """name -> (curriculum, overrides)."""
    dyn = ["train.dynamic_sampling=true"]
    shared = ["train.shared_prompt=true", f"train.micro_batch={group_size}"]
    layers = [f"train.lora_layers={lora_layers}"]
    return {
        "today": (False, []),
        "dynamic_sampling": (False, dyn),
        "curriculum": (True, []),
        "shared_prompt": (False, shared),
        "lora_layers": (False, layers),
        "all": (True, dyn + shared + layers),
        "lean": (True, layers),  # the features that paid on this CPU alone: curriculum + lora_layers
    }


def run_setting(exp: Experiment, name: str, curriculum: bool, overrides: list[str], steps: int) -> dict[str, float]:
    arm = Arm(name=f"bench_{name}", init="warm_start", steps=steps, overrides=overrides, curriculum=curriculum)
    run_dir = run_dir_of(exp.out, arm.name, 0)
    # lora_layers over the full-LoRA warm start: its merged export with fresh top-block adapters
    cfg, start = exp.fitted_start(exp.spec.arm_config(arm, 0, run_dir), exp.start_checkpoint(arm, 0))
    save_config(cfg, run_dir)
    examples = exp.train_examples(arm, 0)
    model, tok = load_policy(cfg.model.path, cfg.model.dtype, cfg.model.cache_dir)
    trainer = Trainer(cfg, model, tok, exp.retriever, examples, run_dir)
    if start is not None:
        load_weights(start, "policy", trainer.policy)
    g = cfg.rollout.group_size
    wall = cpu = informative = generated = kept_groups = update_s = trained_rows = rollout_s = logprobs_s = 0.0
    for _ in range(steps):
        c0, t0 = cpu_seconds(), time.perf_counter()
        m = trainer.step()
        cpu += cpu_seconds() - c0
        wall += time.perf_counter() - t0
        informative += m["rollout/groups_kept"] * g
        generated += m["rollout/groups_generated"]
        kept_groups += m["rollout/groups_kept"]
        update_s += m["perf/time_update"]
        rollout_s += m["perf/time_rollout"]
        logprobs_s += m["perf/time_logprobs"]
        trained_rows += m["rollout/rows_trained"]
        print(
            f"  {name}: step {trainer.state.step} {m['perf/time_step']:.0f} s, kept {m['rollout/groups_kept']:.0f}"
            f" of {m['rollout/groups_generated']:.0f} groups, reward {m['reward/mean']:.2f}",
            flush=True,
        )
    curriculum_s = 0.0
    if curriculum:
        record = json.loads((exp.out / "curriculum" / "warm_start.json").read_text())
        curriculum_s = record["seconds"] * (cpu / wall)  # wall seconds when it ran, as CPU seconds
    return {
        "steps": steps,
        "wall_s_per_step": wall / steps,
        "cpu_s_per_step": cpu / steps,
        "rollout_s_per_step": rollout_s / steps,
        "logprobs_s_per_step": logprobs_s / steps,  # the no-grad old log-prob (and reference) passes
        "update_s_per_step": update_s / steps,
        "curriculum_cpu_s": curriculum_s,
        "informative_fraction": kept_groups / generated if generated else 0.0,
        "informative_samples": informative,
        "update_s_per_sample": update_s / trained_rows if trained_rows else float("nan"),
        "update_s_per_informative": update_s / informative if informative else float("nan"),
        "cpu_s": cpu,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="recipes/experiments/search_r1_f1_efficient.yaml")
    ap.add_argument("--out", default="runs/bench/rl_efficiency")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--lora-layers", type=int, default=10)
    ap.add_argument("--curriculum-share", type=int, default=36)
    ap.add_argument("--settings", default="today,dynamic_sampling,curriculum,shared_prompt,lora_layers,all")
    args = ap.parse_args()
    spec = ExperimentSpec.model_validate(yaml.safe_load(Path(args.spec).read_text()))
    exp = Experiment.prepare(spec, args.out)
    exp.warm_start()
    table = settings(args.lora_layers, int(spec.config["rollout"]["group_size"]))
    results: dict[str, dict[str, float]] = {}
    for name in args.settings.split(","):
        curriculum, overrides = table[name]
        r = run_setting(exp, name, curriculum, overrides, args.steps)
        share = r["curriculum_cpu_s"] / args.curriculum_share * r["steps"]
        r["informative_per_cpu_s"] = r["informative_samples"] / (r["cpu_s"] + share)
        results[name] = r
        print(f"  {name}: {json.dumps({k: round(v, 4) for k, v in r.items()})}", flush=True)
        Path(args.out, "rl_efficiency.json").write_text(json.dumps(results, indent=1))  # each setting as it ends
    print(
        "\n| setting | s/step (wall) | rollout / old log-probs / update s per step | CPU s/step | informative fraction "
        "| informative samples / CPU-s | update s / sample | update s / informative sample |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['wall_s_per_step']:.0f} | {r['rollout_s_per_step']:.0f} / {r['logprobs_s_per_step']:.0f}"
            f" / {r['update_s_per_step']:.0f} | {r['cpu_s_per_step']:.0f} | {r['informative_fraction']:.2f} "
            f"| {r['informative_per_cpu_s']:.4f} | {r['update_s_per_sample']:.2f} | {r['update_s_per_informative']:.2f} |"
        )
    for name in ("all", "lean"):
        if "today" not in results or name not in results:
            continue
        today, best = results["today"], results[name]
        if today["informative_per_cpu_s"] > 0:
            ratio = best["informative_per_cpu_s"] / today["informative_per_cpu_s"]
            what = "all features" if name == "all" else "lean: curriculum + lora_layers"
            print(f"RL efficiency ratio ({what} ÷ today): {ratio:.2f}")
        print(
            f"update seconds per sample ({name} ÷ today): {best['update_s_per_sample'] / today['update_s_per_sample']:.2f};"
            f" per informative sample: {best['update_s_per_informative'] / today['update_s_per_informative']:.2f}"
        )


if __name__ == "__main__":
    main()

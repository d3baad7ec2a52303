"""The findings page of an experiment folder: claims with verdicts, held-out results with intervals,
learning curves (SVG), instability signals and the CPU each run took. Written from whatever runs are
finished, so a partial experiment gives a partial (and labelled) page."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from searchrl.eval.paired import ArmScore, PairedRow, compare_arms, comparison_markdown
from searchrl.eval.rows import read_rows
from searchrl.experiment.curves import svg_lines
from searchrl.experiment.runner import run_dir_of
from searchrl.experiment.spec import Claim, ExperimentSpec
from searchrl.trainer.metrics import read_metrics
from searchrl.utils import atomic_write_text

__all__ = ["CURVES", "Verdict", "verdict", "write_findings"]

CURVES = {
    "reward/mean": "train reward (sampled)",
    "rollout/searches": "searches per rollout",
    "rollout/response_tokens": "response length (tokens)",
    "actor/kl": "KL to the reference",
    "actor/entropy": "policy entropy",
}


@dataclass(frozen=True)
class Verdict:
    claim: str
    metric: str
    group: str
    n: int
    seeds: int  # runs of the 'after' arm
    diff: float
    low: float
    high: float
    verdict: str  # reproduced | not reproduced | inconclusive | not run


def verdict(row: PairedRow, direction: str) -> str:
    """Reproduced when the interval excludes 0 on the paper's side; opposite side: not reproduced."""
    if not row.diff.excludes_zero():
        return "inconclusive"
    right = row.diff.low > 0 if direction == "greater" else row.diff.high < 0
    return "reproduced" if right else "not reproduced"


def finished_runs(spec: ExperimentSpec, out: Path) -> dict[str, list[Path]]:
    """Run folders with held-out rows, per arm (arms with none are left out)."""
    runs: dict[str, list[Path]] = {}
    for arm in spec.arms:
        done = [
            d
            for s in spec.arm_seeds(arm)
            if (d := run_dir_of(out, arm.name, s)) and (d / "eval/heldout.jsonl").is_file()
        ]
        if done:
            runs[arm.name] = done
    return runs


def judge_claim(claim: Claim, runs: dict[str, list[Path]], n_boot: int) -> tuple[Verdict, PairedRow | None]:
    if claim.before not in runs or claim.after not in runs:
        return Verdict(
            claim.id, claim.metric, claim.group, 0, 0, float("nan"), float("nan"), float("nan"), "not run"
        ), None
    arms = {name: [read_rows(d / "eval/heldout.jsonl") for d in runs[name]] for name in (claim.before, claim.after)}
    _, paired = compare_arms(arms, metric=claim.metric, n_boot=n_boot)
    row = next((p for p in paired if p.group == claim.group), paired[-1])
    v = verdict(row, claim.direction)
    return Verdict(
        claim.id, claim.metric, row.group, row.n, len(runs[claim.after]), row.diff.mean, row.diff.low, row.diff.high, v
    ), row


def _history(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    return read_metrics(path) if path.is_file() else []


def instability(name: str, runs: list[Path]) -> dict[str, float]:
    """Per arm (mean over seeds): last-step KL, response length, the training reward's step-to-step std
    (std of consecutive differences), and the share of held-out answers that never closed an answer tag."""
    hist = [_history(r) for r in runs]
    out: dict[str, float] = {}
    for key, label in (("actor/kl", "last KL"), ("rollout/response_tokens", "last response tokens")):
        last = [h[-1][key] for h in hist if h and h[-1].get(key) is not None]
        if last:
            out[label] = float(np.mean(last))
    jumps = [np.std(np.diff([r["reward/mean"] or 0.0 for r in h])) for h in hist if len(h) > 2]
    if jumps:
        out["reward step-to-step std"] = float(np.mean(jumps))
    rows = [read_rows(r / "eval/heldout.jsonl") for r in runs]
    out["held-out no answer"] = float(np.mean([np.mean([x["answer"] is None for x in rs]) for rs in rows]))
    return out


def _fmt(v: float) -> str:
    return "–" if v != v else f"{v:+.3f}"  # NaN: not run


def write_findings(spec: ExperimentSpec, out: str | Path) -> Path:
    out = Path(out)
    runs = finished_runs(spec, out)
    verdicts = [judge_claim(c, runs, spec.bootstrap)[0] for c in spec.claims]
    lines = [f"# Findings: {spec.name}", ""]
    lines += [
        f"World seed {spec.world.seed}, size {spec.world.size}; held-out: {spec.held_out.split} split, "
        + ", ".join(f"{n} {k}" for k, n in spec.held_out.per_type.items())
        + f"; seeds {spec.seeds}; greedy evaluation; 95 % intervals by a {spec.bootstrap}-resample bootstrap over "
        "questions and seeds (paired over questions).",
        "",
        "| claim | paper | metric (group) | ours: after − before | 95 % CI | seeds | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c, v in zip(spec.claims, verdicts, strict=True):
        lines.append(
            f"| {c.id} {c.title} | {c.paper} | {v.metric} ({v.group}) | {c.after} − {c.before}: {_fmt(v.diff)} "
            f"| [{_fmt(v.low)}, {_fmt(v.high)}] | {v.seeds} | {v.verdict} |"
        )
    lines += [
        "",
        "## Arms",
        "",
        "| arm | starts from | RL steps | overrides | runs finished |",
        "|---|---|---|---|---|",
    ]
    for arm in spec.arms:
        lines.append(
            f"| {arm.name} | {arm.init} | {arm.steps} | {' '.join(arm.overrides) or '–'} "
            f"| {len(runs.get(arm.name, []))} / {len(spec.arm_seeds(arm))} |"
        )
    scores: list[ArmScore] = []
    paired: list[PairedRow] = []
    if runs:
        arms = {name: [read_rows(d / "eval/heldout.jsonl") for d in ds] for name, ds in runs.items()}
        for metric in ("em", "f1"):
            scores, paired = compare_arms(arms, metric=metric, n_boot=spec.bootstrap)
            lines += ["", f"## Held-out {metric} (every arm against '{next(iter(arms))}')", ""]
            lines.append(comparison_markdown(scores, paired, metric))
    lines += ["## Learning curves", ""]
    (out / "curves").mkdir(exist_ok=True)
    for key, title in CURVES.items():
        series = {
            name: [[(float(r["step"]), float(r[key])) for r in _history(d) if r.get(key) is not None] for d in ds]
            for name, ds in runs.items()
            if any(_history(d) for d in ds)
        }
        fname = key.replace("/", "_") + ".svg"
        atomic_write_text(out / "curves" / fname, svg_lines(title, series))
        lines.append(f"![{title}](curves/{fname})")
    lines += ["", "## Instability signals (mean over seeds)", ""]
    signals = {name: instability(name, ds) for name, ds in runs.items()}
    keys = sorted({k for s in signals.values() for k in s})
    lines += ["| arm | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [
        f"| {n} | " + " | ".join(f"{s[k]:.3f}" if k in s else "–" for k in keys) + " |" for n, s in signals.items()
    ]
    lines += ["", "## CPU per run", "", "| arm | seed | RL + load (s) | held-out eval (s) |", "|---|---|---|---|"]
    for name, ds in runs.items():
        for d in ds:
            t = json.loads((d / "timing.json").read_text()) if (d / "timing.json").is_file() else {}
            lines.append(
                f"| {name} | {d.name} | {t.get('train_s', float('nan')):.0f} | {t.get('eval_s', float('nan')):.0f} |"
            )
    page = out / "findings.md"
    atomic_write_text(page, "\n".join(lines) + "\n")
    summary = {
        "verdicts": [asdict(v) for v in verdicts],
        "signals": signals,
        "runs": {k: len(v) for k, v in runs.items()},
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return page

"""The findings page of an experiment folder: claims with verdicts, held-out results with intervals,
learning curves (SVG), instability signals and the CPU each run took. Written from whatever runs are
finished, so a partial experiment gives a partial (and labelled) page. The content is one list of
:class:`~searchrl.experiment.sections.Section`, written as markdown and as a self-contained HTML page."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from searchrl.audit import AUDIT_CHECKS, audit_row
from searchrl.config import RolloutConfig
from searchrl.data.protocols import PROTOCOLS, TagProtocol
from searchrl.eval.manifest import NO_MANIFEST, Manifest, differences, load_manifest, manifest_table
from searchrl.eval.paired import PairedRow, compare_arms, comparison_tables
from searchrl.eval.rows import read_rows
from searchrl.experiment.curves import svg_lines
from searchrl.experiment.runner import run_dir_of
from searchrl.experiment.sections import Cell, Figure, Link, Section, Table, to_html, to_markdown
from searchrl.experiment.spec import Claim, ExperimentSpec
from searchrl.metrics import read_metrics
from searchrl.utils import atomic_write_text

__all__ = ["CURVES", "Verdict", "verdict", "write_findings"]

CURVES = {
    "reward/mean": "train reward (sampled)",
    "rollout/searches": "searches per rollout",
    "rollout/response_tokens": "response length (tokens)",
    "actor/kl": "KL to the reference",
    "actor/entropy": "policy entropy",
    "actor/injected_logprob": "log-prob of the injected text, per token",
    "audit/searches_drift": "searches per sample minus the first step's",
    "rollout/informative_fraction": "groups with unequal rewards / groups generated",
    "watchdog/trips": "collapse-watchdog trips so far (each one a rollback)",
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
    verdict: str  # reproduced | not reproduced | inconclusive | not run | refused: settings differ
    differences: tuple[str, ...] = ()  # why a comparison was refused (searchrl.eval.manifest.differences)


MIN_SEEDS = 3  # a verdict over fewer training seeds is printed as preliminary


def verdict(row: PairedRow, direction: str, seeds: int = MIN_SEEDS) -> str:
    """Reproduced when the interval excludes 0 on the paper's side; opposite side: not reproduced.
    With fewer than :data:`MIN_SEEDS` seeds of the 'after' arm the verdict is marked preliminary."""
    if not row.diff.excludes_zero():
        call = "inconclusive"
    else:
        right = row.diff.low > 0 if direction == "greater" else row.diff.high < 0
        call = "reproduced" if right else "not reproduced"
    return call if seeds >= MIN_SEEDS else f"preliminary ({seeds} seed{'s' if seeds != 1 else ''}): {call}"


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


def run_manifests(
    runs: dict[str, list[Path]], names: Iterable[str], rows: str = "eval/heldout.jsonl"
) -> dict[str, Manifest | None]:
    """The manifest beside each run's held-out rows (None: written before manifests), as ``<arm>/<seed>``."""
    return {f"{n}/{d.name}": load_manifest(d / rows) for n in names for d in runs[n]}


def rows_file(claim: Claim) -> str:
    """Where a claim's rows are: the greedy answers, or the avg@k rows of ``held_out.samples``."""
    return "eval/sampled.jsonl" if claim.decoding == "sampled" else "eval/heldout.jsonl"


def judge_claim(claim: Claim, runs: dict[str, list[Path]], n_boot: int) -> tuple[Verdict, PairedRow | None]:
    """The claim's verdict; "not run" without rows of both arms, refused when their settings differ."""
    nan = float("nan")
    path = rows_file(claim)
    label = claim.metric if claim.decoding == "greedy" else f"{claim.metric}, sampled"
    runs = {name: [d for d in ds if (d / path).is_file()] for name, ds in runs.items()}
    if not runs.get(claim.before) or not runs.get(claim.after):
        return Verdict(claim.id, label, claim.group, 0, 0, nan, nan, nan, "not run"), None
    diffs = differences(run_manifests(runs, (claim.before, claim.after), path), claim.metric)
    if diffs:
        seeds = len(runs[claim.after])
        refused = "refused: settings differ (see Settings)"
        return Verdict(claim.id, label, claim.group, 0, seeds, nan, nan, nan, refused, tuple(diffs)), None
    arms = {name: [read_rows(d / path) for d in runs[name]] for name in (claim.before, claim.after)}
    _, paired = compare_arms(arms, metric=claim.metric, n_boot=n_boot)
    row = next((p for p in paired if p.group == claim.group), None)
    if row is None and claim.group == "all" and len(paired) == 1:
        row = paired[0]  # one group of one dataset: it is every question ("all" is not repeated)
    if row is None:  # never another group's verdict in its place
        groups = sorted({p.group for p in paired})
        refused = f"refused: no group '{claim.group}' in the held-out rows ({', '.join(groups)})"
        return Verdict(claim.id, label, claim.group, 0, len(runs[claim.after]), nan, nan, nan, refused), None
    v = verdict(row, claim.direction, len(runs[claim.after]))
    return Verdict(
        claim.id, label, row.group, row.n, len(runs[claim.after]), row.diff.mean, row.diff.low, row.diff.high, v
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


def _where(spec: ExperimentSpec) -> str:
    if spec.data is None:
        return f"World seed {spec.world.seed}, size {spec.world.size}"
    sources = ", ".join(
        f"{s.label} (`{Path(s.questions).name}` over `{Path(s.corpus).name}`)" for s in spec.data.sources
    )
    return f"Real questions: {sources}, split by id {spec.data.splits}"


def _decoding(spec: ExperimentSpec) -> str:
    k = spec.held_out.samples
    if not k:
        return "greedy evaluation"
    return f"greedy evaluation, and avg@{k} at each arm's rollout temperature (claims marked sampled)"


def claims_section(spec: ExperimentSpec, verdicts: list[Verdict]) -> Section:
    """The lead: what was run, and each claim with its paired difference, interval and verdict."""
    text = (
        _where(spec)
        + f"; held-out: {spec.held_out.split} split, "
        + ", ".join(f"{n} {k}" for k, n in spec.held_out.per_type.items())
        + f"; seeds {spec.seeds}; {_decoding(spec)}; 95 % intervals by a {spec.bootstrap}-resample bootstrap over "
        "questions and seeds (paired over questions)."
    )
    header = ["claim", "paper", "metric (group)", "ours: after − before", "95 % CI", "seeds", "verdict"]
    rows = [
        [
            f"{c.id} {c.title}",
            c.paper,
            f"{v.metric} ({v.group})",
            f"{c.after} − {c.before}: {_fmt(v.diff)}",
            f"[{_fmt(v.low)}, {_fmt(v.high)}]",
            str(v.seeds),
            v.verdict,
        ]
        for c, v in zip(spec.claims, verdicts, strict=True)
    ]
    return Section("", text, [Table(header, rows)])


def arms_section(spec: ExperimentSpec, runs: dict[str, list[Path]]) -> Section:
    header = ["arm", "starts from", "RL steps", "overrides", "runs finished"]
    rows = [
        [
            arm.name,
            arm.init,
            str(arm.steps),
            " ".join(arm.overrides) or "–",
            f"{len(runs.get(arm.name, []))} / {len(spec.arm_seeds(arm))}",
        ]
        for arm in spec.arms
    ]
    return Section("Arms", tables=[Table(header, rows)])


def heldout_sections(spec: ExperimentSpec, runs: dict[str, list[Path]]) -> list[Section]:
    """Per metric: every arm's score with its interval, then each arm paired against the first one; only
    the differences when the runs' manifests disagree on retrieval, the metric or the questions."""
    if not runs:
        return []
    arms = {name: [read_rows(d / "eval/heldout.jsonl") for d in ds] for name, ds in runs.items()}
    manifests = run_manifests(runs, runs)
    sections = []
    for metric in ("em", "f1"):
        diffs = differences(manifests, metric)
        if diffs:
            text = "Not compared: the arms' held-out rows were produced with different settings."
            sections.append(
                Section(f"Held-out {metric}", text, [Table(["setting: value (runs)"], [[d] for d in diffs])])
            )
            continue
        scores, paired = compare_arms(arms, metric=metric, n_boot=spec.bootstrap)
        tables = [Table(h, r) for h, r in comparison_tables(scores, paired, metric)]
        sections.append(Section(f"Held-out {metric} (every arm against '{next(iter(arms))}')", tables=tables))
    return sections


def settings_section(runs: dict[str, list[Path]]) -> Section:
    """What produced each run's held-out rows (searchrl.eval.manifest), and whether the arms may be compared."""
    manifests = run_manifests(runs, runs)
    if not manifests:
        return Section("Settings", "No finished runs.")
    diffs = list(dict.fromkeys(d for metric in ("em", "f1") for d in differences(manifests, metric)))
    unchecked = [label for label, m in manifests.items() if m is None]
    text = (
        "Settings differ: " + "; ".join(diffs) + "."
        if diffs
        else "Every run with a manifest shares corpus, index, retriever, metric normalization and question set."
    )
    if unchecked:
        text += f" {NO_MANIFEST}: {', '.join(unchecked)} (not checked)."
    return Section("Settings", text, [Table(*manifest_table(manifests))])


def curves_section(out: Path, runs: dict[str, list[Path]]) -> Section:
    """One chart per :data:`CURVES` key (one line per arm x seed), also written to ``OUT/curves/``."""
    (out / "curves").mkdir(exist_ok=True)
    histories = {name: [_history(d) for d in ds] for name, ds in runs.items()}
    figures = []
    for key, title in CURVES.items():
        series = {
            name: [[(float(r["step"]), float(r[key])) for r in h if r.get(key) is not None] for h in hs]
            for name, hs in histories.items()
            if any(hs)
        }
        path = "curves/" + key.replace("/", "_") + ".svg"
        svg = svg_lines(title, series)
        atomic_write_text(out / path, svg)
        figures.append(Figure(title, path, svg))
    return Section("Learning curves", figures=figures)


def signals_section(signals: dict[str, dict[str, float]]) -> Section:
    keys = sorted({k for s in signals.values() for k in s})
    rows = [[n] + [f"{s[k]:.3f}" if k in s else "–" for k in keys] for n, s in signals.items()]
    return Section("Instability signals (mean over seeds)", tables=[Table(["arm", *keys], rows)])


def run_protocol(run: Path) -> TagProtocol | None:
    """The tag protocol a run used, from its config.yaml (only that key is read: a config an older version
    wrote need not validate); None without a config."""
    config = run / "config.yaml"
    if not config.is_file():
        return None
    rollout = (yaml.safe_load(config.read_text()) or {}).get("rollout") or {}
    return PROTOCOLS.get(rollout.get("protocol") or RolloutConfig().protocol)


def audited(rows: list[dict[str, Any]], protocol: TagProtocol | None) -> tuple[list[dict[str, bool]], int]:
    """Each held-out row's behaviour audit, and how many were read back from the row's text because the
    row was written before rows carried one (:func:`searchrl.audit.audit_row`); rows with neither the
    audit nor their text (or without the run's protocol) are left out."""
    flags, late = [], 0
    for r in rows:
        if r.get("audit"):
            flags.append(r["audit"])
        elif protocol is not None and "spans" in r:
            flags.append(audit_row(r, protocol))
            late += 1
    return flags, late


def audit_section(runs: dict[str, list[Path]]) -> Section:
    """Per arm, over every seed's held-out rows: searches per question and the share each audit check flags."""
    table: list[list[Cell]] = []
    late = 0
    for name, ds in runs.items():
        flags: list[dict[str, bool]] = []
        searches: list[float] = []
        for d in ds:
            rows = read_rows(d / "eval/heldout.jsonl")
            f, n = audited(rows, run_protocol(d))
            flags, late = flags + f, late + n
            searches += [r["searches"] for r in rows if "searches" in r]
        shares = [f"{np.mean([f.get(c, False) for f in flags]):.3f}" if flags else "–" for c in AUDIT_CHECKS]
        table.append([name, str(len(flags)), f"{np.mean(searches):.2f}" if searches else "–", *shares])
    text = "Shares of held-out answers (every seed) that each check of searchrl.audit flags."
    if late:
        text += f" {late} rows were written before rows carried the audit and are audited here from their text."
    header = ["arm", "rows audited", "searches", *AUDIT_CHECKS]
    return Section("Behaviour audit (held-out)", text, [Table(header, table)])


def cpu_section(out: Path, runs: dict[str, list[Path]]) -> Section:
    """Seconds per run, and a link to the run's own report.html where one was written."""
    rows: list[list[Cell]] = []
    for name, ds in runs.items():
        for d in ds:
            t = json.loads((d / "timing.json").read_text()) if (d / "timing.json").is_file() else {}
            report = d / "report.html"
            link: Cell = Link("report", report.relative_to(out).as_posix()) if report.is_file() else "–"
            copied = "–"
            if (d / "reused_from.json").is_file():  # searchrl.experiment.reuse
                rec = json.loads((d / "reused_from.json").read_text())
                what = "run and rows" if rec.get("held_out_rows") else "training"
                copied = f"{what} from {'/'.join(Path(rec['from']).parts[-4:])}"
            train, held = f"{t.get('train_s', float('nan')):.0f}", f"{t.get('eval_s', float('nan')):.0f}"
            if "sampled_eval_s" in t:  # held_out.samples: the avg@k answers, timed apart
                held += f" + {t['sampled_eval_s']:.0f} sampled"
            rows.append([name, d.name, train, held, copied, link])
    header = ["arm", "seed", "RL + load (s)", "held-out eval (s)", "copied", "run report"]
    return Section("CPU per run", tables=[Table(header, rows)])


def write_run_reports(spec: ExperimentSpec, out: str | Path) -> list[Path]:
    """Each finished arm x seed run gets its own ``report.html`` (curves, results, trajectories) if it has
    none yet; the findings page links them. Returns the pages written."""
    from searchrl.report import write_report

    written = []
    for runs in finished_runs(spec, Path(out)).values():
        for run in runs:
            if not (run / "report.html").is_file():
                written.append(write_report(run))
    return written


def write_findings(spec: ExperimentSpec, out: str | Path) -> Path:
    """``OUT/findings.md`` and ``OUT/findings.html`` (the same sections), ``OUT/summary.json`` and the
    SVG curves under ``OUT/curves/``, from the runs finished so far. Returns the markdown page's path."""
    out = Path(out)
    runs = finished_runs(spec, out)
    verdicts = [judge_claim(c, runs, spec.bootstrap)[0] for c in spec.claims]
    signals = {name: instability(name, ds) for name, ds in runs.items()}
    sections = [
        claims_section(spec, verdicts),
        arms_section(spec, runs),
        settings_section(runs),
        *heldout_sections(spec, runs),
        curves_section(out, runs),
        signals_section(signals),
        audit_section(runs),
        cpu_section(out, runs),
    ]
    title = f"Findings: {spec.name}"
    page = out / "findings.md"
    atomic_write_text(page, to_markdown(title, sections))
    atomic_write_text(out / "findings.html", to_html(title, sections))
    summary = {
        "verdicts": [asdict(v) for v in verdicts],
        "signals": signals,
        "runs": {k: len(v) for k, v in runs.items()},
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return page

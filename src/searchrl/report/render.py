"""The run page itself: the config header, the training curves, the evaluation tables, the viewer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from searchrl.eval.manifest import Manifest, manifest_table
from searchrl.report.load import RunData, load_run
from searchrl.report.page import esc, fmt, html_page, is_number, svg_chart
from searchrl.report.viewer import VIEWER_JS, viewer_html
from searchrl.utils import atomic_write_text

PLOT_KEYS = (
    "reward/mean",
    "reward/em",
    "rollout/searches",
    "rollout/response_tokens",
    "rollout/policy_tokens",
    "actor/approx_kl",
    "actor/kl",
    "actor/clip_frac",
    "actor/entropy",
    "perf/time_step",
    "perf/time_rollout",
)
AUDIT_PREFIX = "audit/"
CONFIG_KEYS = (
    "model.path",
    "train.algorithm",
    "train.reward",
    "train.steps",
    "train.prompts_per_step",
    "rollout.group_size",
    "rollout.protocol",
    "rollout.max_turns",
    "retrieval.kind",
    "train.lora_r",
    "train.lr",
    "train.kl_coef",
    "data.train",
    "seed",
)
TABLE_COLUMNS = (  # (metric key, header, format)
    ("n", "n", ".0f"),
    ("em", "EM", ".3f"),
    ("f1", "F1", ".3f"),
    ("cover_em", "cover-EM", ".3f"),
    ("searches", "searches", ".2f"),
    ("answered", "answered", ".2f"),
    ("judge", "judge", ".3f"),  # only when an LLM judge was asked (empty cell otherwise)
)


def dotted(cfg: dict[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def header_html(data: RunData) -> str:
    rows = [(k, dotted(data.config, k)) for k in CONFIG_KEYS]
    cfg = "".join(f"<span><b>{esc(k)}</b> {esc(v)}</span>" for k, v in rows if v is not None)
    timings = data.summary.get("timings_s")
    times = ""
    if isinstance(timings, dict):
        times = ", ".join(f"{esc(k)} {fmt(v, '.1f')} s" for k, v in timings.items())
        times = f"<p><b>timings:</b> {times}</p>"
    full = f"<details><summary>full config.yaml</summary><pre>{esc(data.config_text)}</pre></details>"
    warn = "".join(f"<li>{esc(w)}</li>" for w in data.warnings)
    return (
        f"<h1>Run {esc(data.name)}</h1>"
        + (f'<div class="warn" id="warnings"><b>warnings</b><ul>{warn}</ul></div>' if warn else "")
        + (f'<div class="kv">{cfg}</div>{full}' if cfg else "<p>no config.yaml</p>")
        + times
        + manifests_html(data.manifests)
    )


def manifests_html(manifests: dict[str, Manifest | None]) -> str:
    """What produced each evaluation's rows (searchrl.eval.manifest; hashes shortened); "" without rows."""
    if not manifests:
        return ""
    header, rows = manifest_table(manifests)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<p><b>evaluation manifests</b></p><table id="manifests"><tr>{head}</tr>{body}</table>'


def plot_keys(history: list[dict[str, Any]]) -> list[str]:
    """Every charted key: the training curves, then the behaviour audit's (``audit/…``)."""
    present = {k for rec in history for k, v in rec.items() if is_number(v)}
    kl = sorted(k for k in present if k.startswith(("kl", "actor/kl")) and k not in PLOT_KEYS)
    audit = sorted(k for k in present if k.startswith(AUDIT_PREFIX))
    return [k for k in (*PLOT_KEYS, *kl, *audit) if k in present]


def charts_html(history: list[dict[str, Any]], keys: list[str]) -> str:
    charts = [svg_chart(k, [(float(r["step"]), float(r[k])) for r in history if is_number(r.get(k))]) for k in keys]
    return f'<div class="charts">{"".join(charts)}</div>'


def curves_html(history: list[dict[str, Any]] | None) -> str:
    keys = [k for k in plot_keys(history or []) if not k.startswith(AUDIT_PREFIX)]
    if not history or not keys:
        return "<h2>Training</h2><p>no training metrics</p>"
    return f"<h2>Training</h2><p>{len(history)} steps logged</p>{charts_html(history, keys)}"


def audit_html(history: list[dict[str, Any]] | None) -> str:
    """The behaviour audit (searchrl.audit): each metric's last logged value and its curve; "" without any."""
    keys = [k for k in plot_keys(history or []) if k.startswith(AUDIT_PREFIX)]
    if not history or not keys:
        return ""
    last = {k: next(r[k] for r in reversed(history) if is_number(r.get(k))) for k in keys}
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{fmt(v, '.3f')}</td></tr>" for k, v in last.items())
    return (
        "<h2>Behaviour audit</h2><p>share of a step's samples each check flags; searches drift and collapse "
        f'(searchrl.audit)</p><table id="audit"><tr><th>metric</th><th>last step</th></tr>{rows}</table>'
        + charts_html(history, keys)
    )


def best_em(tables: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The best EM per group, only where methods differ (a lone or tied-everywhere value is no 'best')."""
    ems: dict[str, list[float]] = {}
    for table in tables.values():
        for group, m in table.items():
            if isinstance(m, dict) and is_number(m.get("em")):
                ems.setdefault(group, []).append(float(m["em"]))
    return {g: max(v) for g, v in ems.items() if max(v) > min(v)}


def result_row(
    label: str, group: str, m: dict[str, Any], best: dict[str, float], columns: tuple[tuple[str, str, str], ...]
) -> str:
    cells = []
    for key, _, spec in columns:
        hit = key == "em" and group in best and m.get(key) == best[group]
        cells.append(f"<td{' class=best' if hit else ''}>{fmt(m.get(key), spec)}</td>")
    return f'<tr class="result"><td>{esc(label)}</td><td>{esc(group)}</td>{"".join(cells)}</tr>'


def results_html(tables: dict[str, dict[str, Any]]) -> str:
    if not tables:
        return "<h2>Evaluation</h2><p>no evaluation results</p>"
    best = best_em(tables)
    judged = any(isinstance(m, dict) and "judge" in m for t in tables.values() for m in t.values())
    columns = tuple(c for c in TABLE_COLUMNS if judged or c[0] != "judge")
    head = "".join(f"<th>{name}</th>" for _, name, _ in columns)
    rows = [
        result_row(label, g, m, best, columns)
        for label, t in tables.items()
        for g, m in t.items()
        if isinstance(m, dict)
    ]
    return f'<h2>Evaluation</h2><table id="results"><tr><th>method</th><th>group</th>{head}</tr>{"".join(rows)}</table>'


def paired_html(summary: dict[str, Any]) -> str:
    """The run's paired comparison (summary.json ``paired``: one row per question group), if it has one."""
    rows = [p for p in summary.get("paired") or [] if isinstance(p, dict) and is_number(p.get("diff"))]
    if not rows:
        return ""
    cells = "".join(
        f'<tr class="paired"><td>{esc(p.get("group"))}</td><td>{fmt(p["diff"], "+.3f")}</td>'
        f"<td>[{fmt(p.get('low'), '+.3f')}, {fmt(p.get('high'), '+.3f')}]</td>"
        f"<td>{esc(p.get('fixed'))} / {esc(p.get('broken'))}</td></tr>"
        for p in rows
    )
    title = esc(summary.get("paired_title") or "paired comparison")
    return (
        f"<h2>Paired comparison</h2><p>{title}: the same held-out questions, 95 % bootstrap interval</p>"
        f'<table id="paired"><tr><th>group</th><th>difference</th><th>95 % CI</th><th>fixed / broken</th></tr>'
        f"{cells}</table>"
    )


def render_report(run: Path) -> str:
    data = load_run(run)
    body = header_html(data) + paired_html(data.summary) + curves_html(data.history) + audit_html(data.history)
    body += results_html(data.tables)
    body += viewer_html(data.examples)
    return html_page(f"searchrl report: {data.name}", body, VIEWER_JS)


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the run's report (default ``RUN_DIR/report.html``) and return its path."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist or is not a directory")
    dest = Path(out) if out is not None else run / "report.html"
    atomic_write_text(dest, render_report(run))
    return dest

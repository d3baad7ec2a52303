"""A run folder as one static HTML page: config, training curves, evaluation tables, trajectories.

The page is self-contained (inline CSS, SVG charts drawn here, a small inline script for the
trajectory filters), so it opens offline. All text from the run is HTML-escaped: model output is full
of tags. Unreadable JSON lines are skipped and counted on the page instead of failing the report.

The first script in ``<head>`` (:data:`ERROR_HOOK`) records uncaught script errors; the last script
marks ``<body data-rendered="1">`` and writes the error count into ``#script-errors``, so a headless
browser's ``--dump-dom`` tells whether the page rendered cleanly.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from searchrl.data.protocols import PROTOCOLS
from searchrl.rewards.normalize import exact_match
from searchrl.trainer.metrics import merge_steps
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
MAX_EXAMPLES = 50  # trajectories kept per method, to bound the page size
TRAIN_SAMPLES = "training samples"

ERROR_HOOK = (
    "<script>window.__reportErrors=[];"
    "window.onerror=function(m){window.__reportErrors.push(String(m));};"
    "window.addEventListener('unhandledrejection',function(e){window.__reportErrors.push(String(e.reason));});"
    "</script>"
)
FINISH = (
    "<script>document.body.dataset.rendered='1';"
    "var c=document.getElementById('script-errors');"
    "c.textContent=String(window.__reportErrors.length);c.title=window.__reportErrors.join('\\n');</script>"
)
CSS = """
body{font:14px/1.45 'DejaVu Sans',sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
td:first-child,td:nth-child(2),th{text-align:left}td.best{background:#d7f5d7;font-weight:bold}
.kv{display:flex;flex-wrap:wrap;gap:4px 20px}.warn{background:#fff3cd;border:1px solid #e0c36a;padding:6px 10px}
.charts{display:flex;flex-wrap:wrap;gap:10px}.chart{border:1px solid #ddd;background:#fff}
.chart text{font-size:10px;fill:#555}.chart .t{font-size:12px;fill:#222}
.controls{display:flex;gap:16px;margin:8px 0}.ex{border:1px solid #ddd;margin:6px 0;padding:4px 8px}
.ex summary{cursor:pointer}.ok{color:#137b13;font-weight:bold}.bad{color:#b32020;font-weight:bold}
pre{white-space:pre-wrap;word-break:break-word;margin:2px 0;font:12px/1.4 'DejaVu Sans Mono',monospace}
.policy{background:#f4f8ff;padding:4px}.injected{background:#eee;border-left:4px solid #999;padding:4px;color:#555}
.injected .label{font-size:11px;color:#777;font-style:italic}mark.query{background:#ffe08a}
mark.answer{background:#b8f0b8}footer{margin-top:30px;color:#777;font-size:12px}
"""
VIEWER_JS = """
(function () {
  var node = document.getElementById("viewer-index");
  if (!node) return;
  var index = JSON.parse(node.textContent);
  function fill(id, values, all) {
    var sel = document.getElementById(id);
    if (all) values = [""].concat(values);
    values.forEach(function (v) {
      var o = document.createElement("option");
      o.value = v; o.textContent = v || all; sel.appendChild(o);
    });
    return sel;
  }
  var method = fill("f-method", index.methods, null);
  var group = fill("f-group", index.groups, "all groups");
  var correct = document.getElementById("f-correct");
  function apply() {
    var shown = 0;
    document.querySelectorAll(".ex").forEach(function (el) {
      var d = el.dataset;
      var ok = d.method === method.value && (!correct.value || d.correct === correct.value) &&
        (!group.value || d.group === group.value);
      el.hidden = !ok;
      if (ok) shown++;
    });
    document.getElementById("f-count").textContent = shown + " shown";
  }
  [method, group, correct].forEach(function (s) { s.addEventListener("change", apply); });
  apply();
})();
"""


@dataclass(frozen=True)
class Example:
    """One trajectory as the viewer shows it."""

    method: str  # eval label, or TRAIN_SAMPLES
    title: str  # example id, or the training step
    group: str
    question: str
    golds: list[str]
    answer: str | None
    correct: bool | None  # exact match of the answer; None when there is nothing to compare with
    facts: list[tuple[str, str]]  # (name, formatted value) shown under the question
    spans: list[tuple[bool, str]]  # (written by the policy?, text) runs; False = injected by the environment
    has_spans: bool  # False for older rows: spans is then the whole text as one plain run


@dataclass
class RunData:
    """Everything the page shows, read leniently from a run folder."""

    name: str
    config: dict[str, Any]
    config_text: str
    summary: dict[str, Any]
    history: list[dict[str, Any]] | None  # None when there is no metrics.jsonl
    tables: dict[str, dict[str, Any]]  # tables[label][group] -> metrics
    examples: list[Example]
    warnings: list[str]


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def fmt(v: Any, spec: str = ".4g") -> str:
    return format(float(v), spec) if is_number(v) else "–"


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def script_json(obj: Any) -> str:
    """JSON safe inside <script>: no '<' at all, so neither '</script>' nor '<!--' can appear."""
    return json.dumps(obj).replace("<", "\\u003c")


# -- reading -----------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of a JSONL file and how many non-empty lines were not one (e.g. a torn last line)."""
    rows: list[dict[str, Any]] = []
    skipped = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if isinstance(rec, dict):
            rows.append(rec)
        else:
            skipped += 1
    return rows, skipped


def load_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    """One record per step (a resumed run's rewrite wins, as in read_metrics), and the skipped line count."""
    rows, skipped = read_jsonl(path)
    good = [r for r in rows if isinstance(r.get("step"), int)]
    skipped += len(rows) - len(good)
    return merge_steps(good), skipped


def read_json(path: Path, warnings: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        warnings.append(f"{path.name}: unreadable JSON ({e})")
        return None


def load_tables(run: Path, summary: dict[str, Any], warnings: list[str]) -> dict[str, dict[str, Any]]:
    """summary.json's tables in its order, then any other eval/<label>.json by file name."""
    listed = summary.get("tables")
    tables = {str(k): v for k, v in listed.items() if isinstance(v, dict)} if isinstance(listed, dict) else {}
    for path in sorted((run / "eval").glob("*.json")):
        if path.stem not in tables:
            data = read_json(path, warnings)
            if isinstance(data, dict):
                tables[path.stem] = data
    return tables


def str_list(v: Any) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else []


def row_spans(row: dict[str, Any], text_key: str) -> tuple[list[tuple[bool, str]], bool]:
    spans = row.get("spans")
    if isinstance(spans, list) and all(
        isinstance(s, list) and len(s) == 2 and isinstance(s[0], bool) and isinstance(s[1], str) for s in spans
    ):
        return [(s[0], s[1]) for s in spans], True
    return [(True, str(row.get(text_key) or ""))], False


def eval_example(method: str, row: dict[str, Any]) -> Example:
    spans, has_spans = row_spans(row, "response")
    answer = row.get("answer")
    return Example(
        method=method,
        title=str(row.get("id", "")),
        group=str(row.get("group", row.get("dataset", ""))),
        question=str(row.get("question", "")),
        golds=str_list(row.get("golds")),
        answer=answer if isinstance(answer, str) else None,
        correct=row["em"] >= 1.0 if is_number(row.get("em")) else None,
        facts=[(k, fmt(row.get(k), ".3g")) for k in ("em", "f1", "cover_em", "searches")]
        + [("finish", str(row.get("finish", "–")))],
        spans=spans,
        has_spans=has_spans,
    )


def sample_example(row: dict[str, Any]) -> Example:
    """A training sample; its answer is read back with the answer tags both protocols share."""
    spans, has_spans = row_spans(row, "text")
    golds = str_list(row.get("golds"))
    answer = PROTOCOLS["search_r1"].extract_answer(str(row.get("text", "")))
    return Example(
        method=TRAIN_SAMPLES,
        title=f"step {row.get('step', '?')}",
        group="train",
        question=str(row.get("question", "")),
        golds=golds,
        answer=answer,
        correct=exact_match(answer or "", golds) >= 1.0 if golds else None,
        facts=[("name", str(row.get("name", ""))), ("reward", fmt(row.get("reward"), ".3g"))],
        spans=spans,
        has_spans=has_spans,
    )


def load_examples(run: Path, labels: list[str], warnings: list[str]) -> list[Example]:
    """Up to MAX_EXAMPLES per eval label (first rows) and of the training samples (latest steps)."""
    out: list[Example] = []
    paths = [run / "eval" / f"{label}.jsonl" for label in labels]
    paths += [p for p in sorted((run / "eval").glob("*.jsonl")) if p not in paths]
    for path in paths:
        if path.is_file():
            rows, skipped = read_jsonl(path)
            if skipped:
                warnings.append(f"eval/{path.name}: {skipped} unreadable line(s) skipped")
            out += [eval_example(path.stem, r) for r in rows[:MAX_EXAMPLES]]
    if (run / "samples.jsonl").is_file():
        rows, skipped = read_jsonl(run / "samples.jsonl")
        if skipped:
            warnings.append(f"samples.jsonl: {skipped} unreadable line(s) skipped")
        out += [sample_example(r) for r in rows[-MAX_EXAMPLES:]]
    return out


def load_run(run: Path) -> RunData:
    warnings: list[str] = []
    config_text = (run / "config.yaml").read_text(encoding="utf-8") if (run / "config.yaml").is_file() else ""
    try:
        config = yaml.safe_load(config_text) or {}
    except yaml.YAMLError as e:
        warnings.append(f"config.yaml: unreadable ({e})")
        config = {}
    summary = read_json(run / "summary.json", warnings)
    summary = summary if isinstance(summary, dict) else {}
    history = None
    if (run / "metrics.jsonl").is_file():
        history, skipped = load_metrics(run / "metrics.jsonl")
        if skipped:
            warnings.append(f"metrics.jsonl: {skipped} unreadable line(s) skipped")
    tables = load_tables(run, summary, warnings)
    examples = load_examples(run, list(tables), warnings)
    config = config if isinstance(config, dict) else {}
    return RunData(run.resolve().name, config, config_text, summary, history, tables, examples, warnings)


# -- rendering ---------------------------------------------------------------------------------------
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
    )


def scale(v: float, lo: float, hi: float, a: float, b: float) -> float:
    """``v`` from [lo, hi] to [a, b]; a flat range maps to the middle (a single point still shows)."""
    return (a + b) / 2 if hi == lo else a + (v - lo) / (hi - lo) * (b - a)


def svg_chart(key: str, points: list[tuple[float, float]]) -> str:
    """A line chart of (step, value) points as inline SVG, with min/max labels on both axes."""
    w, h, left, right, top, bottom = 300, 160, 46, 10, 24, 22
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xy = [(scale(x, min(xs), max(xs), left, w - right), scale(y, min(ys), max(ys), h - bottom, top)) for x, y in points]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#1f5fbf"/>' for x, y in xy[:: max(1, len(xy) // 60)]
    )
    return (
        f'<svg class="chart" data-metric="{esc(key)}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">'
        f"<title>{esc(key)}</title>"
        f'<text class="t" x="{left}" y="15">{esc(key)} (last {fmt(ys[-1])})</text>'
        f'<rect x="{left}" y="{top}" width="{w - left - right}" height="{h - top - bottom}" fill="none" stroke="#ccc"/>'
        f'<polyline points="{line}" fill="none" stroke="#1f5fbf" stroke-width="1.5"/>{dots}'
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{fmt(max(ys))}</text>'
        f'<text x="{left - 4}" y="{h - bottom}" text-anchor="end">{fmt(min(ys))}</text>'
        f'<text x="{left}" y="{h - 6}">step {fmt(min(xs))}</text>'
        f'<text x="{w - right}" y="{h - 6}" text-anchor="end">{fmt(max(xs))}</text></svg>'
    )


def plot_keys(history: list[dict[str, Any]]) -> list[str]:
    present = {k for rec in history for k, v in rec.items() if is_number(v)}
    kl = sorted(k for k in present if k.startswith(("kl", "actor/kl")) and k not in PLOT_KEYS)
    return [k for k in (*PLOT_KEYS, *kl) if k in present]


def curves_html(history: list[dict[str, Any]] | None) -> str:
    keys = plot_keys(history or [])
    if not history or not keys:
        return "<h2>Training</h2><p>no training metrics</p>"
    charts = [svg_chart(k, [(float(r["step"]), float(r[k])) for r in history if is_number(r.get(k))]) for k in keys]
    return f'<h2>Training</h2><p>{len(history)} steps logged</p><div class="charts">{"".join(charts)}</div>'


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


def tag_patterns() -> list[tuple[re.Pattern[str], str]]:
    """Escaped query and answer tags of every protocol, to highlight inside escaped policy text."""
    pairs = {(p.query_open, p.query_close, "query") for p in PROTOCOLS.values()}
    pairs |= {(p.answer_open, p.answer_close, "answer") for p in PROTOCOLS.values()}
    return [(re.compile(re.escape(esc(a)) + ".*?" + re.escape(esc(b)), re.DOTALL), cls) for a, b, cls in sorted(pairs)]


def policy_html(text: str) -> str:
    out = esc(text)
    for pattern, cls in tag_patterns():
        out = pattern.sub(rf'<mark class="{cls}">\g<0></mark>', out)
    return out


def spans_html(ex: Example) -> str:
    if not ex.has_spans:
        return f'<pre class="plain">{policy_html(ex.spans[0][1])}</pre>'
    info = {esc(p.info_open) for p in PROTOCOLS.values()}
    parts = []
    for sampled, text in ex.spans:
        if sampled:
            parts.append(f'<pre class="policy">{policy_html(text)}</pre>')
            continue
        body = esc(text)
        what = "retrieved" if any(tag in body for tag in info) else "injected"
        parts.append(
            f'<div class="injected"><span class="label">{what} — masked from loss</span><pre>{body}</pre></div>'
        )
    return "".join(parts)


def example_html(ex: Example, open_: bool) -> str:
    correct = "" if ex.correct is None else str(int(ex.correct))
    badge = {"": "", "1": '<span class="ok">✓</span> ', "0": '<span class="bad">✗</span> '}[correct]
    facts = " · ".join(f"{esc(k)} {esc(v)}" for k, v in ex.facts)
    answer = esc(ex.answer) if ex.answer is not None else "<i>none</i>"
    return (
        f'<details class="ex" data-method="{esc(ex.method)}" data-group="{esc(ex.group)}" data-correct="{correct}"'
        f"{' open' if open_ else ''}><summary>{badge}<b>{esc(ex.title)}</b> {esc(ex.question)}</summary>"
        f"<p><b>golds:</b> {esc(' | '.join(ex.golds))} · <b>answer:</b> {answer} · {facts}</p>"
        f"{spans_html(ex)}</details>"
    )


def viewer_html(examples: list[Example]) -> str:
    if not examples:
        return "<h2>Trajectories</h2><p>no trajectories</p>"
    index = {
        "methods": list(dict.fromkeys(ex.method for ex in examples)),
        "groups": sorted({ex.group for ex in examples}),
    }
    controls = (
        '<div class="controls"><label>method <select id="f-method"></select></label>'
        '<label>answer <select id="f-correct"><option value="">all</option><option value="1">correct</option>'
        '<option value="0">wrong</option></select></label><label>group <select id="f-group"></select></label>'
        '<span id="f-count"></span></div>'
    )
    seen: dict[str, int] = {}
    items = []
    for ex in examples:
        seen[ex.method] = seen.get(ex.method, 0) + 1
        items.append(example_html(ex, open_=seen[ex.method] <= 2))
    return (
        f"<h2>Trajectories</h2>{controls}"
        f'<script id="viewer-index" type="application/json">{script_json(index)}</script>{"".join(items)}'
    )


def html_page(title: str, body: str, script: str = "") -> str:
    """A whole document: the error hook first in <head>, then ``body``, ``script``, and the render marker."""
    return (
        f'<!DOCTYPE html><html lang="en"><head>{ERROR_HOOK}<meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head><body>{body}"
        '<footer>script errors: <span id="script-errors">not run</span></footer>'
        f"<script>{script}</script>{FINISH}</body></html>"
    )


def render_report(run: Path) -> str:
    data = load_run(run)
    body = header_html(data) + curves_html(data.history) + results_html(data.tables) + viewer_html(data.examples)
    return html_page(f"searchrl report: {data.name}", body, VIEWER_JS)


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the run's report (default ``RUN_DIR/report.html``) and return its path."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist or is not a directory")
    dest = Path(out) if out is not None else run / "report.html"
    atomic_write_text(dest, render_report(run))
    return dest

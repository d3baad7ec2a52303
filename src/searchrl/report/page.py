"""The HTML pieces every searchrl page shares: CSS, the page shell with its render marker, escaping,
number formatting and a small SVG line chart.

The first script in ``<head>`` (:data:`ERROR_HOOK`) records uncaught script errors; the last script
marks ``<body data-rendered="1">`` and writes the error count into ``#script-errors``, so a headless
browser's ``--dump-dom`` tells whether the page rendered cleanly.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

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


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def fmt(v: Any, spec: str = ".4g") -> str:
    return format(float(v), spec) if is_number(v) else "–"


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def script_json(obj: Any) -> str:
    """JSON safe inside <script>: no '<' at all, so neither '</script>' nor '<!--' can appear."""
    return json.dumps(obj).replace("<", "\\u003c")


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


def html_page(title: str, body: str, script: str = "") -> str:
    """A whole document: the error hook first in <head>, then ``body``, ``script``, and the render marker."""
    return (
        f'<!DOCTYPE html><html lang="en"><head>{ERROR_HOOK}<meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head><body>{body}"
        '<footer>script errors: <span id="script-errors">not run</span></footer>'
        f"<script>{script}</script>{FINISH}</body></html>"
    )

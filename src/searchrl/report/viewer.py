"""The trajectory viewer: every example as a collapsible block, policy text apart from the injected
(retrieved) text, search and answer tags highlighted, and a small inline script for the filters."""

from __future__ import annotations

import re

from searchrl.data.protocols import PROTOCOLS
from searchrl.report.load import Example
from searchrl.report.page import esc, script_json

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

"""A page as a list of sections, written once and rendered twice: as markdown (``findings.md``) and as
one self-contained HTML file (``findings.html``: the report package's page shell and CSS, every SVG
inlined). In HTML all text is escaped; the SVGs are ours (:func:`~searchrl.experiment.curves.svg_lines`
escapes what it draws) and go in as they are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from searchrl.report import esc, html_page

__all__ = ["Cell", "Figure", "Link", "Section", "Table", "to_html", "to_markdown"]


@dataclass(frozen=True)
class Link:
    text: str
    href: str  # relative to the page


Cell = str | Link


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[Cell]]


@dataclass(frozen=True)
class Figure:
    title: str
    path: str  # the SVG file, relative to the page: markdown links it
    svg: str  # its text: HTML inlines it


@dataclass(frozen=True)
class Section:
    title: str  # "" = no heading (the lead under the page title)
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def _md_cell(cell: Cell) -> str:
    return f"[{cell.text}]({cell.href})" if isinstance(cell, Link) else cell


def _md_table(table: Table) -> str:
    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def to_markdown(title: str, sections: Sequence[Section]) -> str:
    blocks = [f"# {title}"]
    for s in sections:
        blocks += [f"## {s.title}"] if s.title else []
        blocks += [s.text] if s.text else []
        blocks += [_md_table(t) for t in s.tables]
        if s.figures:
            blocks.append("\n".join(f"![{f.title}]({f.path})" for f in s.figures))
    return "\n\n".join(blocks) + "\n"


def _html_cell(cell: Cell) -> str:
    if isinstance(cell, Link):
        return f'<td><a href="{esc(cell.href)}">{esc(cell.text)}</a></td>'
    return f"<td>{esc(cell)}</td>"


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in table.header)
    rows = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in table.rows)
    return f'<table style="margin:8px 0"><tr>{head}</tr>{rows}</table>'


def to_html(title: str, sections: Sequence[Section]) -> str:
    parts = [f"<h1>{esc(title)}</h1>"]
    for s in sections:
        parts += [f"<h2>{esc(s.title)}</h2>"] if s.title else []
        parts += [f"<p>{esc(s.text)}</p>"] if s.text else []
        parts += [_html_table(t) for t in s.tables]
        if s.figures:
            parts.append('<div class="charts">' + "".join(f.svg.strip() for f in s.figures) + "</div>")
    return html_page(title, "".join(parts))

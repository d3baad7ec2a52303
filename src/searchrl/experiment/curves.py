"""Learning curves as standalone SVG files: one chart per metric, one line per arm x seed, colored by arm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["svg_lines"]

# Okabe-Ito: distinguishable with the common color-vision deficiencies
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")

Series = Sequence[tuple[float, float]]


def _ticks(lo: float, hi: float) -> str:
    return f"{lo:.3g}" if lo == hi else f"{lo:.3g} – {hi:.3g}"


def svg_lines(title: str, lines: Mapping[str, Sequence[Series]], width: int = 420, height: int = 220) -> str:
    """``lines[arm]`` is one series of (step, value) per seed. Returns a complete SVG document."""
    points = [p for runs in lines.values() for run in runs for p in run]
    left, right, top, bottom = 46, 10, 22, 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="14" font-weight="bold">{escape(title)}</text>',
    ]
    if not points:
        parts.append(f'<text x="{left}" y="{height // 2}">not logged in these runs</text></svg>')
        return "\n".join(parts) + "\n"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y0 == y1:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def sx(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1.0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts.append(
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
        'fill="none" stroke="#999"/>'
    )
    parts.append(f'<text x="4" y="{top + 8}">{y1:.3g}</text><text x="4" y="{height - bottom}">{y0:.3g}</text>')
    parts.append(f'<text x="{left}" y="{height - bottom + 14}">step {_ticks(x0, x1)}</text>')
    for i, (arm, runs) in enumerate(lines.items()):
        color = PALETTE[i % len(PALETTE)]
        for run in runs:
            if not run:
                continue
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(run))
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5" opacity="0.8"/>')
            parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2" fill="{color}"/>' for x, y in run]
        lx = left + i * 110
        parts.append(f'<rect x="{lx}" y="{height - 16}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{height - 7}">{escape(arm)} ({len(runs)})</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"

"""The overview's chart: outcomes per minute as stacked bars, drawn here as
inline SVG, so the page needs no script to show it."""

from __future__ import annotations

import time

from .facts import Minute, Timeline
from .layout import esc

__all__ = ["chart_svg"]

WIDTH = 900
HEIGHT = 180
_TOP = 14
_BOTTOM = 20
_SERIES = ("delivered", "deferred", "failed")


def chart_svg(line: Timeline) -> str:
    """The timeline as an SVG element, one column per minute; each column's
    title tells its minute (UTC) and counts."""
    minutes = line.minutes
    peak = max(line.peak, 1)
    step = WIDTH / max(len(minutes), 1)
    plot = HEIGHT - _TOP - _BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-label="recipients per minute: {esc(_summary(line))}">',
        f'<line class="axis" x1="0" y1="{HEIGHT - _BOTTOM}" x2="{WIDTH}"'
        f' y2="{HEIGHT - _BOTTOM}"/>',
        f'<text class="label" x="2" y="{_TOP - 3}">{peak} per minute</text>',
    ]
    for index, minute in enumerate(minutes):
        if minute.start % 3600 == 0 or index == 0:
            x = index * step
            parts.append(
                f'<line class="tick" x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}"'
                f' y2="{HEIGHT - _BOTTOM}"/>'
                f'<text class="label" x="{x + 2:.1f}" y="{HEIGHT - 6}">'
                f"{_clock(minute.start)}</text>"
            )
        if minute.total:
            parts.append(_column(minute, index * step, step, plot / peak))
    parts.append("</svg>")
    return "".join(parts)


def _column(minute: Minute, x: float, width: float, scale: float) -> str:
    bottom = float(HEIGHT - _BOTTOM)
    rects = []
    for name in _SERIES:
        count = getattr(minute, name)
        if not count:
            continue
        height = count * scale
        bottom -= height
        rects.append(
            f'<rect class="bar-{name}" x="{x:.1f}" y="{bottom:.1f}"'
            f' width="{max(width - 0.5, 0.5):.1f}" height="{height:.1f}"/>'
        )
    title = f"{_clock(minute.start)} UTC: " + ", ".join(
        f"{getattr(minute, n)} {n}" for n in _SERIES if getattr(minute, n)
    )
    return f"<g><title>{esc(title)}</title>{''.join(rects)}</g>"


def _clock(moment: float) -> str:
    return time.strftime("%H:%M", time.gmtime(moment))


def _summary(line: Timeline) -> str:
    return ", ".join(f"{count} {name}" for name, count in line.totals().items())

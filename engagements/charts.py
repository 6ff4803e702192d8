"""Small server-rendered SVG charts: columns and horizontal bars, no chart library.

Each chart is an ``<svg role="img">`` named by a caption elsewhere on the page
(``aria-labelledby``), drawn with CSS classes only (no inline style: the CSP forbids it) and
readable without colour: every bar or column has its label and, where there is room, its
number beside it; the page puts a data table next to each chart.

The geometry is worked out here in Python and the markup written directly: coordinates and
numbers are made here, and every label (the only text from outside) is escaped. A dashboard's
charts cost well under a millisecond each this way, where template loops would cost several.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.utils.formats import number_format
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 640
TICKS = 4  # at most this many gridlines above the baseline


def _number(value: int) -> str:
    return str(number_format(value, force_grouping=True))


def nice_top(largest: int) -> tuple[int, int]:
    """A round top for the scale (1, 2 or 5 times a power of ten per step) and its step."""
    if largest <= 0:
        return 1, 1
    rough = largest / TICKS
    power = 10 ** math.floor(math.log10(rough)) if rough >= 1 else 1
    step = 10 * power
    for multiple in (1, 2, 5):
        if max(1, multiple * power) * TICKS >= largest:
            step = max(1, multiple * power)
            break
    return step * math.ceil(largest / step), step


def _fmt(value: float) -> str:
    """A coordinate, short: SVG needs no more than a tenth of a unit here."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg(css: str, height: float, labelledby: str, body: list[str]) -> SafeString:
    return mark_safe(  # noqa: S308 (numbers made here; labels escaped where they are added)
        f'<svg class="{css}" viewBox="0 0 {WIDTH} {_fmt(height)}" role="img" '
        f'aria-labelledby="{escape(labelledby)}" focusable="false">{"".join(body)}</svg>'
    )


def columns(
    points: Sequence[tuple[str, int]],
    *,
    labelledby: str,
    height: int = 220,
    label_every: int = 1,
    values: bool = True,
) -> SafeString:
    """Vertical columns, one per (label, value), on a scale with gridlines.

    ``label_every`` labels every n-th column only (long weekly series); ``values`` writes each
    column's number above it.
    """
    left, right, top, bottom = 48, 8, 18, 34
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    largest = max((value for _label, value in points), default=0)
    scale_top, step = nice_top(largest)
    slot = plot_w / max(1, len(points))
    bar_w = max(1.0, slot * 0.7)
    baseline = top + plot_h
    body = []
    for tick in range(0, scale_top + 1, step):
        y = _fmt(baseline - plot_h * tick / scale_top)
        body.append(
            f'<line class="chart__grid" x1="{left}" x2="{WIDTH - right}" y1="{y}" y2="{y}"/>'
            f'<text class="chart__tick" x="{left - 6}" y="{_fmt(float(y) + 4)}" '
            f'text-anchor="end">{_number(tick)}</text>'
        )
    for i, (label, value) in enumerate(points):
        x = left + slot * i + (slot - bar_w) / 2
        h = plot_h * value / scale_top
        centre = _fmt(x + bar_w / 2)
        body.append(
            f'<rect class="chart__bar" x="{_fmt(x)}" y="{_fmt(baseline - h)}" '
            f'width="{_fmt(bar_w)}" height="{_fmt(h)}"/>'
        )
        if values:
            body.append(
                f'<text class="chart__value" x="{centre}" y="{_fmt(baseline - h - 4)}" '
                f'text-anchor="middle">{_number(value)}</text>'
            )
        if i % max(1, label_every) == 0:
            body.append(
                f'<text class="chart__label" x="{centre}" y="{baseline + 18}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    body.append(
        f'<line class="chart__axis" x1="{left}" x2="{WIDTH - right}" '
        f'y1="{baseline}" y2="{baseline}"/>'
    )
    return _svg("chart", height, labelledby, body)


def bars(
    rows: Sequence[tuple[str, int | None, str]],
    *,
    labelledby: str,
    label_width: int = 190,
) -> SafeString:
    """Horizontal bars, one per (label, value, note); a ``None`` value shows its note instead.

    A value that is not shown (too few people behind it) is a small dashed box, not a bar.
    The number (or the note, such as "fewer than 5 people") is written at the end of each bar.
    """
    row_h, gap, top, right = 26, 10, 8, 110
    plot_w = WIDTH - label_width - right
    height = top * 2 + len(rows) * (row_h + gap)
    largest = max((value or 0 for _label, value, _note in rows), default=0)
    scale_top, _step = nice_top(largest)
    body = []
    for i, (label, value, note) in enumerate(rows):
        y = top + i * (row_h + gap)
        middle = _fmt(y + row_h / 2 + 5)
        body.append(
            f'<text class="chart__label" x="{label_width - 8}" y="{middle}" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        if value is None:
            body.append(
                f'<rect class="chart__bar chart__bar--unknown" x="{label_width}" y="{y}" '
                f'width="24" height="{row_h}"/><text class="chart__note" '
                f'x="{label_width + 32}" y="{middle}">{escape(note)}</text>'
            )
            continue
        w = plot_w * value / scale_top
        body.append(
            f'<rect class="chart__bar" x="{label_width}" y="{y}" width="{_fmt(w)}" '
            f'height="{row_h}"/><text class="chart__value" x="{_fmt(label_width + w + 6)}" '
            f'y="{middle}">{_number(value)}</text>'
        )
    body.append(
        f'<line class="chart__axis" x1="{label_width}" x2="{label_width}" '
        f'y1="{top - 2}" y2="{height - top + 2}"/>'
    )
    return _svg("chart chart--bars", height, labelledby, body)

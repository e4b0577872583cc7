"""Charts as inline SVG, drawn on the server: no JavaScript library, nothing fetched.

Each function takes categories (the x axis: days, weeks) and one or more ``Series`` and
returns an ``<svg>`` string ready to put in a page: axes with rounded ticks, labels, a
legend, and a ``<title>`` on each bar or point so that hovering shows the number. Text is
escaped; an empty chart says so instead of drawing nothing.

``scale`` chooses the value axis, so that one bulk day cannot flatten every other bar:

- ``"linear"`` (the default): from 0 to the largest value;
- ``"capped"``: from 0 to the largest value not above four times the median of the values
  (when a larger one exists): a bar or point beyond is cut at the top, drawn with a break
  and its figure written above it (class ``clipped``), and the chart says so;
- ``"log"``: logarithmic (of 1 + the value, so that 0 stays at the bottom and 1 above it),
  ticks at powers of ten: 5 and 50,000 both show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

Scale = Literal["linear", "capped", "log"]
SCALES: tuple[str, ...] = ("linear", "capped", "log")
#: A value beyond this many times the median is an outlier for the ``capped`` scale.
OUTLIER_FACTOR = 4

#: Colours that stay apart for people with the common colour-vision deficiencies
#: (Okabe-Ito), used in order when a series names none.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000")

_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 52, 34, 46
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'
_TITLE_FONT = 'font-family="system-ui, sans-serif" font-size="13" font-weight="600"'


@dataclass(frozen=True, slots=True)
class Series:
    """A named row of values, one per category (None: no value there)."""

    name: str
    values: Sequence[float | None]
    color: str | None = None


def nice_ticks(top: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Round tick values from 0 to at least ``top`` (1, 2, 2.5 or 5 times a power of ten;
    whole steps when ``integer``: counts of things)."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    if integer:
        step = max(1, math.ceil(step))
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


@dataclass(frozen=True, slots=True)
class Axis:
    """The value axis: its ticks and where a value falls on it (0 at the bottom, 1 at the
    top); ``cap``: the value above which a bar is cut (``capped``, when something is)."""

    scale: str
    ticks: list[float]
    cap: float | None = None

    def at(self, v: float) -> float:
        """Where ``v`` falls, from 0 (bottom) to 1 (top)."""
        if v <= 0:
            return 0.0
        if self.scale == "log":  # log(1 + v): 0 at the bottom, 1 still above it
            return min(1.0, math.log10(1 + v) / math.log10(1 + self.ticks[-1]))
        return min(1.0, v / self.ticks[-1])

    def clipped(self, v: float | None) -> bool:
        """Whether ``v`` is beyond the top (cut)."""
        return self.cap is not None and v is not None and v > self.cap


def axis(values: Sequence[float], *, scale: str = "linear", integer: bool = False) -> Axis:
    """The axis for ``values`` (the heights to draw: stack totals for stacked bars)."""
    positive = sorted(v for v in values if v and v > 0 and math.isfinite(v))
    top = positive[-1] if positive else 0.0
    if scale == "log" and positive:
        lo = 10.0 ** math.floor(math.log10(positive[0]))
        if integer:
            lo = max(lo, 1.0)
        hi = max(10.0 ** math.ceil(math.log10(top)), lo * 10)
        ticks = [0.0] + [lo * 10 ** k for k in range(round(math.log10(hi / lo)) + 1)]
        return Axis("log", ticks)
    if scale == "capped" and len(positive) > 2:
        median = positive[len(positive) // 2] if len(positive) % 2 else (
            positive[len(positive) // 2 - 1] + positive[len(positive) // 2]) / 2
        typical = max(v for v in positive if v <= OUTLIER_FACTOR * median)
        if top > typical * 1.25:
            ticks = nice_ticks(typical * 1.1, integer=integer)
            return Axis("capped", ticks, cap=ticks[-1])
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, not {scale!r}")
    return Axis("linear", nice_ticks(top, integer=integer))


def _number(v: float) -> str:
    if v == int(v):
        return f"{int(v):,}".replace(",", " ")
    return f"{v:,.2f}".rstrip("0").rstrip(".").replace(",", " ")


def _colors(series: Sequence[Series]) -> list[str]:
    return [s.color or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]


def _frame(title: str, width: int, height: int, aria: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} '
            f'{height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(aria)}">',
            f'<text x="{_LEFT}" y="16" {_TITLE_FONT}>'
            f"{escape(title)}</text>"]


def _empty(title: str, width: int, height: int) -> str:
    parts = _frame(title, width, height, f"{title}: no data")
    parts.append(f'<text x="{width / 2}" y="{height / 2}" {_FONT} text-anchor="middle" '
                 'fill="#666">no data for this period</text></svg>')
    return "".join(parts)


def _y_axis(parts: list[str], ax: Axis, width: int, height: int, *,
            right: bool = False, fmt: str = "{}") -> None:
    """Grid lines and tick labels (left axis), or only labels (right axis); a note when
    the scale is not linear."""
    top, bottom = _TOP, height - _BOTTOM
    if ax.scale == "log":
        parts.append(f'<text class="scale-note" x="{width - _RIGHT}" y="16" {_FONT} '
                     'text-anchor="end" fill="#666">log scale</text>')
    for t in ax.ticks:
        y = bottom - (bottom - top) * ax.at(t)
        if right:
            parts.append(f'<text x="{width - _RIGHT + 6}" y="{y + 4:.1f}" {_FONT} '
                         f'fill="#444">{escape(fmt.format(_number(t)))}</text>')
        else:
            parts.append(f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                         'stroke="#e3e3e3"/>')
            parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" {_FONT} text-anchor="end" '
                         f'fill="#444">{escape(fmt.format(_number(t)))}</text>')
    parts.append(f'<line x1="{_LEFT}" x2="{width - _RIGHT}" y1="{bottom}" y2="{bottom}" '
                 'stroke="#888"/>')


def _x_labels(parts: list[str], categories: Sequence[str], width: int, height: int) -> None:
    """Category labels under the axis; some are skipped when they would overlap."""
    slot = (width - _LEFT - _RIGHT) / len(categories)
    every = max(1, math.ceil(60 / slot))
    for i, c in enumerate(categories):
        last = len(categories) - 1
        if i != last and (i % every or last - i < every):  # the last label always shows
            continue
        x = _LEFT + slot * (i + 0.5)
        parts.append(f'<text x="{x:.1f}" y="{height - _BOTTOM + 15}" {_FONT} '
                     f'text-anchor="middle" fill="#444">{escape(c)}</text>')


def _legend(parts: list[str], names: Sequence[tuple[str, str, str]], height: int) -> None:
    """One swatch and name per series; ``kind`` "bar" or "line"."""
    x = _LEFT
    y = height - 12
    for name, color, kind in names:
        if kind == "line":
            parts.append(f'<line x1="{x}" x2="{x + 14}" y1="{y - 4}" y2="{y - 4}" '
                         f'stroke="{color}" stroke-width="2.5"/>')
        else:
            parts.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text class="legend" x="{x + 18}" y="{y}" {_FONT}>{escape(name)}</text>')
        x += 30 + 7 * len(name)


def _heights(series: Sequence[Series], stacked: bool, n: int) -> list[float]:
    if stacked:
        return [sum(s.values[i] or 0 for s in series) for i in range(n)]
    return [v or 0 for s in series for v in s.values]


def _top(series: Sequence[Series], stacked: bool, n: int) -> float:
    return max(_heights(series, stacked, n), default=0)


def _cut(parts: list[str], x: float, w: float, value: float, unit: str) -> None:
    """The break across a bar cut at the top, and its figure above it."""
    y = _TOP + 6
    parts.append(f'<path class="break" d="M{x - 1:.1f},{y + 3:.1f} l{w / 3 + 1:.1f},-5 '
                 f'l{w / 3:.1f},5 l{w / 3 + 1:.1f},-5" stroke="#fff" stroke-width="3" '
                 'fill="none"/>')
    parts.append(f'<text class="clipped-value" x="{x + w / 2:.1f}" y="{_TOP - 3}" {_FONT} '
                 f'text-anchor="middle" fill="#b3261e">{escape(_number(value) + unit)}</text>')


def _cap_note(parts: list[str], ax: Axis, count: int, width: int) -> None:
    if ax.cap is not None and count:
        parts.append(f'<text class="scale-note" x="{width - _RIGHT}" y="16" {_FONT} '
                     f'text-anchor="end" fill="#b3261e">scale cut at {_number(ax.cap)}: '
                     f'{count} beyond</text>')


def bar_chart(title: str, categories: Sequence[str], series: Sequence[Series], *,
              stacked: bool = True, width: int = 640, height: int = 240,
              unit: str = "", integer: bool = False, scale: Scale = "linear") -> str:
    """Bars per category, one colour per series, stacked or side by side, on a ``scale``
    (see the module's docstring)."""
    n = len(categories)
    if n == 0 or not series or _top(series, stacked, n) <= 0:
        return _empty(title, width, height)
    ax = axis(_heights(series, stacked, n), scale=scale, integer=integer)
    colors = _colors(series)
    parts = _frame(title, width, height, f"{title}: bar chart")
    _y_axis(parts, ax, width, height)
    bottom, span = height - _BOTTOM, height - _BOTTOM - _TOP
    slot = (width - _LEFT - _RIGHT) / n
    bar = slot * 0.7 / (1 if stacked else len(series))
    cut = 0
    for i, cat in enumerate(categories):
        base = 0.0
        for j, s in enumerate(series):
            v = s.values[i] or 0
            if v <= 0:
                continue
            lower = ax.at(base) if stacked else 0.0
            upper = ax.at(base + v) if stacked else ax.at(v)
            h = span * (upper - lower)
            x = _LEFT + slot * i + slot * 0.15 + (0 if stacked else j * bar)
            y = bottom - span * upper
            clipped = ax.clipped(base + v if stacked else v) and not (
                stacked and ax.clipped(base))
            parts.append(f'<rect class="{"bar clipped" if clipped else "bar"}" x="{x:.1f}" '
                         f'y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colors[j]}">'
                         f"<title>{escape(cat)} · {escape(s.name)}: {_number(v)}"
                         f"{escape(unit)}</title></rect>")
            if clipped and not stacked:
                cut += 1
                _cut(parts, x, bar, v, unit)
            if stacked:
                base += v
        if stacked and ax.clipped(base):  # one mark for the stack, with its total
            cut += 1
            _cut(parts, _LEFT + slot * i + slot * 0.15, bar, base, unit)
    _cap_note(parts, ax, cut, width)
    _x_labels(parts, categories, width, height)
    _legend(parts, [(s.name, c, "bar") for s, c in zip(series, colors, strict=True)], height)
    parts.append("</svg>")
    return "".join(parts)


def _polyline(parts: list[str], categories: Sequence[str], s: Series, color: str,
              ax: Axis, width: int, height: int, unit: str) -> int:
    """The series' points and line; how many points were cut at the top."""
    bottom, span = height - _BOTTOM, height - _BOTTOM - _TOP
    slot = (width - _LEFT - _RIGHT) / len(categories)
    points = []
    cut = 0
    for i, v in enumerate(s.values):
        if v is None:
            continue
        x, y = _LEFT + slot * (i + 0.5), bottom - span * ax.at(v)
        points.append(f"{x:.1f},{y:.1f}")
        clipped = ax.clipped(v)
        parts.append(f'<circle class="{"point clipped" if clipped else "point"}" '
                     f'cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
                     f"<title>{escape(categories[i])} · {escape(s.name)}: "
                     f"{_number(v)}{escape(unit)}</title></circle>")
        if clipped:
            cut += 1
            parts.append(f'<text class="clipped-value" x="{x:.1f}" y="{_TOP - 3}" {_FONT} '
                         f'text-anchor="middle" fill="#b3261e">▲ {escape(_number(v) + unit)}'
                         "</text>")
    if len(points) > 1:
        parts.append(f'<polyline class="line" points="{" ".join(points)}" fill="none" '
                     f'stroke="{color}" stroke-width="2.5"/>')
    return cut


def line_chart(title: str, categories: Sequence[str], series: Sequence[Series], *,
               width: int = 640, height: int = 240, unit: str = "",
               integer: bool = False, scale: Scale = "linear") -> str:
    """One line per series over the categories, on a ``scale``."""
    n = len(categories)
    if n == 0 or not series or _top(series, False, n) <= 0:
        return _empty(title, width, height)
    ax = axis(_heights(series, False, n), scale=scale, integer=integer)
    colors = _colors(series)
    parts = _frame(title, width, height, f"{title}: line chart")
    _y_axis(parts, ax, width, height)
    cut = 0
    for s, c in zip(series, colors, strict=True):
        cut += _polyline(parts, categories, s, c, ax, width, height, unit)
    _cap_note(parts, ax, cut, width)
    _x_labels(parts, categories, width, height)
    _legend(parts, [(s.name, c, "line") for s, c in zip(series, colors, strict=True)], height)
    parts.append("</svg>")
    return "".join(parts)


def bars_with_share(title: str, categories: Sequence[str], bars: Sequence[Series],
                    share: Series, *, width: int = 640, height: int = 240,
                    scale: Scale = "linear") -> str:
    """Stacked bars (left axis, on ``scale``) and a percentage line (right axis, 0–100 %):
    orders per week and the share received electronically."""
    n = len(categories)
    if n == 0 or not bars or _top(bars, True, n) <= 0:
        return _empty(title, width, height)
    out = bar_chart(title, categories, bars, width=width, height=height, integer=True,
                    scale=scale)
    parts = [out[: -len("</svg>")]]
    color = share.color or "#D55E00"
    for t in (0, 25, 50, 75, 100):
        y = height - _BOTTOM - (height - _BOTTOM - _TOP) * t / 100
        parts.append(f'<text x="{width - _RIGHT + 6}" y="{y + 4:.1f}" {_FONT} fill="{color}">'
                     f"{t} %</text>")
    _polyline(parts, categories, share, color, Axis("linear", [0.0, 100.0]), width, height,
              " %")
    # The share's legend entry after the bars' ones.
    x = _LEFT + sum(30 + 7 * len(s.name) for s in bars)
    parts.append(f'<line x1="{x}" x2="{x + 14}" y1="{height - 16}" y2="{height - 16}" '
                 f'stroke="{color}" stroke-width="2.5"/><text class="legend" x="{x + 18}" '
                 f'y="{height - 12}" {_FONT}>{escape(share.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)

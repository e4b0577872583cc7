"""Chart scales that one bulk day cannot flatten: cut at the top with the outlier marked,
or logarithmic; the linear scale stays as the dashboard draws it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from gateway.web.charts import Series, axis, bar_chart, bars_with_share, line_chart

NS = {"svg": "http://www.w3.org/2000/svg"}
DAYS = ["d1", "d2", "d3", "d4", "d5", "d6"]
#: Five ordinary days and one bulk day of 20,000 orders.
BULK = [10.0, 12.0, 9.0, 11.0, 20_000.0, 8.0]


def _bars(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [r for r in root.iter("{http://www.w3.org/2000/svg}rect")
            if (r.get("class") or "").startswith("bar")]


def _texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")]


def test_on_a_linear_scale_the_bulk_day_flattens_the_others():
    """The reason for the other scales: an ordinary day is under 1 % of the chart's height."""
    bars = _bars(bar_chart("orders", DAYS, [Series("orders", BULK)]))
    heights = [float(b.get("height")) for b in bars]
    assert max(heights[:4]) < heights[4] / 100


def test_capped_scale_cuts_the_bulk_day_and_writes_its_figure():
    """Ordinary days fill the chart; the bulk day is cut at the top, marked clipped, and its
    figure is written; the chart says how many bars are beyond."""
    svg = bar_chart("orders", DAYS, [Series("orders", BULK)], scale="capped")
    bars = _bars(svg)
    heights = [float(b.get("height")) for b in bars]
    assert min(heights[:4]) > max(heights) / 2  # ordinary days are readable
    assert [b.get("class") for b in bars].count("bar clipped") == 1
    assert bars[4].get("class") == "bar clipped"
    assert "20 000" in _texts(svg)
    assert any(t.startswith("scale cut at") and t.endswith("1 beyond") for t in _texts(svg))
    assert "20 000" in bars[4].find("svg:title", NS).text  # hover keeps the true number


def test_capped_scale_without_an_outlier_is_linear():
    """No value beyond four times the median: nothing is cut."""
    ax = axis([10, 12, 9, 30], scale="capped")
    assert ax.cap is None and ax.scale == "linear"
    assert "clipped" not in bar_chart("x", ["a", "b", "c", "d"], [Series("s", [10, 12, 9, 30])],
                                      scale="capped")


def test_log_scale_shows_five_and_twenty_thousand():
    """Ticks are 0 and powers of ten from the smallest value's; 8 and 20,000 both have
    height, and so has a count of 1."""
    ax = axis(BULK, scale="log", integer=True)
    assert ax.ticks == [0, 1, 10, 100, 1000, 10_000, 100_000]
    assert 0 < ax.at(1) < ax.at(8) < ax.at(20_000) < 1 and ax.at(0) == 0
    svg = bar_chart("orders", DAYS, [Series("orders", BULK)], scale="log", integer=True)
    heights = [float(b.get("height")) for b in _bars(svg)]
    assert min(heights) > max(heights) / 6
    assert "log scale" in _texts(svg)


def test_stacked_capped_bars_mark_the_stack_once():
    """Two series stacked, the bulk day beyond the cap: one figure for the stack's total."""
    svg = bar_chart("orders", DAYS, [Series("edi", BULK), Series("sms", [1.0] * 6)],
                    scale="capped")
    assert "20 001" in _texts(svg)
    assert sum(1 for t in _texts(svg) if t == "20 001") == 1


def test_line_and_share_charts_take_the_scale_too():
    """A point beyond the cap is drawn at the top with its figure; the share line keeps
    its 0–100 % axis."""
    line = line_chart("failures", DAYS, [Series("failed", BULK)], scale="capped")
    assert "▲ 20 000" in _texts(line)
    share = bars_with_share("orders", DAYS, [Series("edi", BULK)],
                            Series("share", [50, 50, 50, 50, 99, 50]), scale="capped")
    assert "100 %" in _texts(share) and "20 000" in _texts(share)


def test_an_unknown_scale_is_refused_by_name():
    with pytest.raises(ValueError, match="squared"):
        axis([1, 2], scale="squared")

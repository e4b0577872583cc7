"""Server-drawn SVG charts: well-formed, scaled to round ticks, labelled, with a legend."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gateway.web.charts import Series, bar_chart, bars_with_share, line_chart, nice_ticks

NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_nice_ticks_are_round_and_cover_the_top():
    """Ticks start at 0, end at or above the largest value, with a 1/2/2.5/5 step."""
    assert nice_ticks(37) == [0, 10, 20, 30, 40]
    assert nice_ticks(5) == [0, 1, 2, 3, 4, 5]
    assert nice_ticks(0.9)[-1] >= 0.9
    assert nice_ticks(12_345)[-1] >= 12_345
    assert nice_ticks(0) == [0.0, 1.0]
    assert nice_ticks(1, integer=True) == [0, 1]  # counts: no 0.2 steps
    assert nice_ticks(12, integer=True) == [0, 3, 6, 9, 12]


def test_stacked_bars_one_rect_per_nonzero_value_with_legend_and_hover_titles():
    """Two channels over three days: a rect per non-zero value, the stack's height follows
    the sum, each rect's title says the day, the series and the number."""
    svg = bar_chart("Transmissions per day", ["11-02", "11-03", "11-04"],
                    [Series("sftp", [3, 0, 5]), Series("as2", [1, 2, 0])])
    root = parse(svg)
    bars = root.findall(".//svg:rect[@class='bar']", NS)
    assert len(bars) == 4
    titles = [b.find("svg:title", NS).text for b in bars]
    assert "11-02 · sftp: 3" in titles and "11-03 · as2: 2" in titles
    words = texts(root)
    assert "Transmissions per day" in words
    assert {"sftp", "as2"} <= set(words)  # legend
    assert {"11-02", "11-03", "11-04"} <= set(words)  # x labels
    assert "0" in words and "5" in words  # y ticks: 0 … 5 (the top stack is 5 or 4)
    # Day 1's stack (3 + 1) is shorter than day 3's bar (5).
    day1 = sum(float(b.get("height")) for b in bars[:2])
    day3 = float(bars[-1].get("height"))
    assert day1 < day3


def test_side_by_side_bars_are_narrower_than_stacked_ones():
    stacked = parse(bar_chart("t", ["a"], [Series("x", [1]), Series("y", [2])]))
    grouped = parse(bar_chart("t", ["a"], [Series("x", [1]), Series("y", [2])], stacked=False))
    w = float(stacked.find(".//svg:rect[@class='bar']", NS).get("width"))
    g = float(grouped.find(".//svg:rect[@class='bar']", NS).get("width"))
    assert g < w


def test_tick_labels_drop_needless_decimals():
    """2.5 reads as 2.5, not 2.50; whole numbers have no decimals."""
    words = texts(parse(bar_chart("t", ["a"], [Series("x", [12])])))
    assert "2.5" in words and "12.5" in words and "2.50" not in words


def test_line_chart_points_skip_missing_values():
    """A None value draws no point; the others are joined by one polyline."""
    root = parse(line_chart("Failures", ["d1", "d2", "d3"], [Series("failed", [2, None, 4])]))
    assert len(root.findall(".//svg:circle[@class='point']", NS)) == 2
    line = root.find(".//svg:polyline[@class='line']", NS)
    assert line is not None and len(line.get("points").split()) == 2


def test_bars_with_share_draw_a_percentage_axis_and_line():
    """Orders per week as bars and the electronic share as a line on a 0–100 % axis."""
    root = parse(bars_with_share("Orders per week", ["W44", "W45"],
                                 [Series("electronic", [8, 9]), Series("manual", [2, 1])],
                                 Series("electronic share", [80.0, 90.0])))
    words = texts(root)
    assert "100 %" in words and "electronic share" in words
    points = root.findall(".//svg:circle[@class='point']", NS)
    assert [p.find("svg:title", NS).text for p in points] == [
        "W44 · electronic share: 80 %", "W45 · electronic share: 90 %"]


def test_empty_chart_says_there_is_no_data():
    for svg in (bar_chart("Volume", [], []), line_chart("F", ["a"], [Series("x", [0])]),
                bars_with_share("O", ["a"], [Series("e", [0])], Series("s", [None]))):
        assert "no data for this period" in texts(parse(svg))


def test_text_is_escaped():
    """A partner name with markup stays text."""
    svg = bar_chart("<b>x</b>", ["a&b"], [Series("<script>", [1])])
    root = parse(svg)
    assert "<script>" in texts(root) and "<script>" not in svg

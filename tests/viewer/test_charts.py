"""Charts escape what they draw; intervals are the textbook ones."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from opeval.viewer import _charts as charts
from opeval.viewer._models import Interval

HOSTILE = "<script>alert('x')</script>&"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own output: it must be well-formed XML


def test_every_chart_escapes_its_labels_and_is_well_formed_svg() -> None:
    scale = charts.TimeScale(12.0)
    drawn = [
        charts.timeline(scale, ["fault", HOSTILE], [charts.Mark(HOSTILE, 3.0, "circle", "m-unknown", HOSTILE,
                                                                ring=True)],
                        [charts.Span("fault", 1.0, 2.0, "span-agent", HOSTILE)], (2.0, 9.0), [(2.0, HOSTILE)]),
        charts.member_health(scale, [HOSTILE, "etcd-2"], [(0.0, {HOSTILE: "healthy", "etcd-2": "down"}, HOSTILE),
                                                          (5.0, {HOSTILE: "down"}, None)], (2.0, 9.0)),
        charts.workload(scale, [(0.0, 1.0, 10, 2), (1.0, 2.0, 0, 0)], None),
        charts.histogram([(HOSTILE, [1.0, 2.5, 2.6]), ("b", [])], unit=HOSTILE, label=HOSTILE,
                         extra=[(HOSTILE, 3)], extra_label=HOSTILE),
        charts.histogram([("cmds", [0.0, 3.0, 3.0, 17.0])], unit="commands", label="c", integer=True),
        charts.rate_bars([(HOSTILE, 0.5, Interval(0.3, 0.7), HOSTILE), ("b", 1.0, None, "")], HOSTILE),
        charts.outcome_bar({"recovered": 3, HOSTILE: 1}),
        charts.outcome_bar({}),
    ]
    for svg in drawn:
        text = str(svg)
        assert "<script" not in text
        root = parse(text)
        assert root.tag.endswith("svg")
        labels = "".join(root.itertext()) + "".join(str(e.attrib) for e in root.iter())
        if HOSTILE in labels:  # it survives as text, not as markup
            assert not any(e.tag.endswith("script") for e in root.iter())


def test_the_time_axis_has_round_ticks_and_the_timeline_a_legend() -> None:
    assert [charts.nice_step(s) for s in (0.8, 9.0, 40.0, 600.0)] == pytest.approx([0.1, 1.0, 5.0, 100.0])
    svg = str(charts.timeline(charts.TimeScale(40.0), ["fault"], [], [], None))
    ticks = [t.text for t in parse(svg).iter() if t.tag.endswith("text") and t.get("class") == "tick"]
    assert ticks == ["0", "5", "10", "15", "20", "25", "30", "35", "40"]
    assert "seconds from trial start" in svg and "recovery criteria met" not in svg  # nothing drawn, no key
    scale = charts.TimeScale(10.0)
    assert scale.x(0) == charts.LEFT and scale.x(10) == charts.LEFT + charts.PLOT and scale.x(99) == scale.x(10)


def test_member_health_merges_runs_and_marks_the_leader() -> None:
    samples = [(float(t), {"a": "healthy" if t < 3 or t > 6 else "down"}, "a" if t < 3 else None) for t in range(10)]
    root = parse(str(charts.member_health(charts.TimeScale(10.0), ["a"], samples, None)))
    titles = [e.text for e in root.iter() if e.tag.endswith("title")]
    assert titles == ["a: healthy (leader), 0.0 s to 3.0 s", "a: down, 3.0 s to 7.0 s", "a: healthy, 7.0 s to 10.0 s",
                      "0.0 s: a", "3.0 s: no leader"]
    names = [t.text for t in root.iter() if t.tag.endswith("text") and t.get("class", "").startswith("leader")]
    assert names == ["a", "no leader"]


def test_leader_names_close_together_never_overlap() -> None:
    """Changes a fraction of a second apart: the labels take two rows, then only the line's tooltip."""
    samples = [(0.0, {"a": "healthy"}, "etcd-1"), (0.1, {"a": "healthy"}, None), (0.2, {"a": "healthy"}, "etcd-2"),
               (0.3, {"a": "healthy"}, None)]
    root = parse(str(charts.member_health(charts.TimeScale(30.0), ["a"], samples, None)))
    labels = [(float(t.get("x")), float(t.get("y")), t.text) for t in root.iter()
              if t.tag.endswith("text") and t.get("class", "").startswith("leader")]
    assert [name for _, _, name in labels] == ["etcd-1", "no leader"]  # the others would overlap them
    assert len({y for _, y, _ in labels}) == 2
    tips = [e.text for e in root.iter() if e.tag.endswith("title") and "s: " in (e.text or "")]
    assert tips == ["0.0 s: etcd-1", "0.1 s: no leader", "0.2 s: etcd-2", "0.3 s: no leader"]


def test_every_mark_a_timeline_draws_has_a_legend_entry_and_no_other() -> None:
    marks = [charts.Mark("fault", 1.0, "triangle", "m-chaos", "x"), charts.Mark("agent", 2.0, "circle", "m-remediation",
                                                                              "y", ring=True),
             charts.Mark("service", 3.0, "square", "m-safe", "z")]
    spans = [charts.Span("agent", 1.5, 2.5, "span-agent", "w")]
    root = parse(str(charts.timeline(charts.TimeScale(5.0), charts_lanes(), marks, spans, (1.0, 3.0), [(1.0, "g")])))
    legend = [e.text for e in root.iter() if e.tag.endswith("text") and e.get("class") == "legend"]
    assert legend == ["fault injected", "agent at work", "remediation", "thrashing", "data check: safe",
                      "clock start / recovery", "incident (verified to recovered)"]
    classes = {e.get("class") for e in root.iter()}
    assert all(css in classes for _, css, _ in charts.TIMELINE_LEGEND if css in {
        "m-chaos", "span-agent", "m-remediation", "m-thrash", "m-safe", "guide", "incident"})


def test_the_service_lane_never_looks_like_a_command() -> None:
    """Commands are dots; the service lane's marks are squares, diamonds and ticks."""
    command_classes = {css for shape, css, _ in charts.TIMELINE_LEGEND if shape == "circle" and
                       css.startswith("m-") and css.replace("m-", "") in ("read_only", "remediation", "destructive",
                                                                          "unknown")}
    service = {(shape, css) for shape, css, _ in charts.TIMELINE_LEGEND
               if css in ("m-up", "m-recovered", "m-safe", "m-unsafe", "m-end")}
    assert len(command_classes) == 4 and service and all(shape != "circle" for shape, _ in service)


def charts_lanes() -> list[str]:
    from opeval.viewer._pages import LANES

    return list(LANES)

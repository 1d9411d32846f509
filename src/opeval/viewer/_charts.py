"""Charts as inline SVG, built on the server.

Every piece of text goes through ``Markup.format``, which escapes it: labels carry agent
output (commands, member names from the subject), which is untrusted. Colours live in
the stylesheet (classes), not in style attributes, so the pages work under a strict
Content-Security-Policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from opeval.viewer._models import Interval

WIDTH = 1000
LEFT = 130  # room for lane labels
RIGHT = 20
PLOT = WIDTH - LEFT - RIGHT
LANE_H = 28
AXIS_H = 36  # ticks, then the caption below them (clear of the last tick)


def _n(v: float) -> str:
    return f"{v:.1f}"


class Svg:
    """An SVG document assembled from escaped fragments."""

    def __init__(self, width: float, height: float, label: str, css: str = "chart") -> None:
        self.width, self.height, self.label, self.css = width, height, label, css
        self.parts: list[Markup] = []

    def add(self, template: str, *args: object) -> None:
        """Append ``template`` with ``args`` escaped into it."""
        self.parts.append(Markup(template).format(*args))

    def rect(self, x: float, y: float, w: float, h: float, css: str, title: str | None = None) -> None:
        """A rectangle, with a tooltip if ``title`` is given."""
        if title is None:
            self.add('<rect x="{}" y="{}" width="{}" height="{}" class="{}"/>', _n(x), _n(y), _n(max(w, 0)),
                     _n(max(h, 0)), css)
        else:
            self.add('<rect x="{}" y="{}" width="{}" height="{}" class="{}"><title>{}</title></rect>', _n(x), _n(y),
                     _n(max(w, 0)), _n(max(h, 0)), css, title)

    def line(self, x1: float, y1: float, x2: float, y2: float, css: str) -> None:
        """A line segment."""
        self.add('<line x1="{}" y1="{}" x2="{}" y2="{}" class="{}"/>', _n(x1), _n(y1), _n(x2), _n(y2), css)

    def text(self, x: float, y: float, text: str, css: str = "", anchor: str = "start") -> None:
        """A text label (escaped)."""
        self.add('<text x="{}" y="{}" class="{}" text-anchor="{}">{}</text>', _n(x), _n(y), css, anchor, text)

    def marker(self, shape: str, x: float, y: float, css: str, title: str | None = None, r: float = 6) -> None:
        """A circle, square, triangle (down), up (triangle up), diamond or tick centred on (x, y)."""
        tip = Markup("<title>{}</title>").format(title) if title is not None else Markup("")
        if shape == "circle":
            self.add('<circle cx="{}" cy="{}" r="{}" class="{}">{}</circle>', _n(x), _n(y), _n(r * 0.8), css, tip)
            return
        points = {
            "square": [(x - r * 0.8, y - r * 0.8), (x + r * 0.8, y - r * 0.8), (x + r * 0.8, y + r * 0.8),
                       (x - r * 0.8, y + r * 0.8)],
            "triangle": [(x - r, y - r), (x + r, y - r), (x, y + r)],
            "up": [(x - r, y + r), (x + r, y + r), (x, y - r)],
            "diamond": [(x, y - r * 1.2), (x + r, y), (x, y + r * 1.2), (x - r, y)],
            "tick": [(x - 1.5, y - r * 1.3), (x + 1.5, y - r * 1.3), (x + 1.5, y + r * 1.3), (x - 1.5, y + r * 1.3)],
        }[shape]
        self.add('<polygon points="{}" class="{}">{}</polygon>', " ".join(f"{_n(a)},{_n(b)}" for a, b in points),
                 css, tip)

    def markup(self) -> Markup:
        """The finished ``<svg>`` element."""
        head = Markup('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" class="{}" role="img" '
                      'aria-label="{}">').format(_n(self.width), _n(self.height), self.css, self.label)
        return head + Markup("").join(self.parts) + Markup("</svg>")


def nice_step(span: float, ticks: int = 10) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return float(m * power)
    return float(10 * power)


def _fmt_tick(v: float, step: float) -> str:
    return f"{v:.0f}" if step >= 1 else f"{v:.{max(0, -math.floor(math.log10(step)))}f}"


class TimeScale:
    """Seconds from trial start to x pixels; shared by a trial's charts so they line up."""

    def __init__(self, end_s: float) -> None:
        self.end_s = max(end_s, 1.0)

    def x(self, t: float) -> float:
        """The x coordinate of ``t`` seconds."""
        return LEFT + max(0.0, min(t, self.end_s)) / self.end_s * PLOT

    def axis(self, svg: Svg, y: float, top: float, caption: str = "seconds from trial start") -> None:
        """Ticks, grid lines from ``top`` down to ``y``, and the caption."""
        step = nice_step(self.end_s)
        svg.line(LEFT, y, LEFT + PLOT, y, "axis")
        k = 0
        while k * step <= self.end_s + 1e-9:
            x = self.x(k * step)
            svg.line(x, top, x, y, "grid")
            svg.line(x, y, x, y + 4, "axis")
            svg.text(x, y + 16, _fmt_tick(k * step, step), "tick", "middle")
            k += 1
        svg.text(LEFT + PLOT, y + 32, caption, "caption", "end")


@dataclass(frozen=True)
class Mark:
    """A point event on a timeline lane; ``css`` picks its colour, ``ring`` highlights it."""

    lane: str
    at: float
    shape: str
    css: str
    title: str
    ring: bool = False


@dataclass(frozen=True)
class Span:
    """A stretch of time on a lane."""

    lane: str
    start: float
    end: float
    css: str
    title: str


#: Legend entries, one for every mark a timeline can draw: (shape, css class, text).
TIMELINE_LEGEND: tuple[tuple[str, str, str], ...] = (
    ("triangle", "m-chaos", "fault injected"),
    ("diamond", "m-verified", "fault verified"),
    ("diamond", "m-reverted", "fault reverted"),
    ("circle", "m-detect", "fault detected"),
    ("tick", "m-agent", "agent paged / stopped"),
    ("tick", "m-reason", "agent reasoning"),
    ("bar", "span-agent", "agent at work"),
    ("circle", "m-read_only", "read-only command"),
    ("circle", "m-remediation", "remediation"),
    ("circle", "m-destructive", "destructive"),
    ("circle", "m-unknown", "unknown command"),
    ("ring", "m-thrash", "thrashing"),
    ("triangle", "m-exit", "member process ended"),
    ("up", "m-start", "member process started"),
    ("square", "m-up", "cluster up"),
    ("diamond", "m-recovered", "recovery criteria met"),
    ("bar", "span-held", "criteria held (settle)"),
    ("square", "m-safe", "data check: safe"),
    ("square", "m-unsafe", "data check: unsafe"),
    ("tick", "m-end", "cluster down / trial end"),
    ("line", "guide", "clock start / recovery"),
    ("band", "incident", "incident (verified to recovered)"),
)

#: Average width of a character of the legend's 11 px font, and the room a key takes.
CHAR_W = 6.6
KEY_W = 22


def legend_width(text: str) -> float:
    """The room one legend entry takes: its key, its text, and a gap."""
    return KEY_W + CHAR_W * len(text) + 14


def _legend(svg: Svg, entries: Sequence[tuple[str, str, str]], y: float, x0: float = LEFT) -> float:
    """Draw ``entries`` in rows from (``x0``, ``y``); the y below the last row."""
    x: float = x0
    for shape, css, text in entries:
        width = legend_width(text)
        if x + width > WIDTH - RIGHT and x > x0:
            x, y = x0, y + 20
        if shape == "band":
            svg.rect(x - 6, y - 7, 12, 14, css)
        elif shape == "bar":
            svg.rect(x - 7, y - 4, 14, 8, css)
        elif shape == "swatch":
            svg.rect(x - 7, y - 5, 14, 10, css)
        elif shape == "line":
            svg.line(x, y - 8, x, y + 8, css)
        elif shape == "whisker":
            svg.line(x - 7, y, x + 7, y, css)
            svg.line(x - 7, y - 5, x - 7, y + 5, css)
            svg.line(x + 7, y - 5, x + 7, y + 5, css)
        elif shape == "ring":
            svg.marker("circle", x, y, "m-unknown")
            svg.add('<circle cx="{}" cy="{}" r="8" class="{}"/>', _n(x), _n(y), css)
        else:
            svg.marker(shape, x, y, css)
        svg.text(x + 12, y + 4, text, "legend")
        x += width
    return y + 20


def legend_rows(entries: Sequence[tuple[str, str, str]], x0: float = LEFT) -> int:
    """How many rows :func:`_legend` takes for ``entries``."""
    rows, x = 1, x0
    for _, _, text in entries:
        width = legend_width(text)
        if x + width > WIDTH - RIGHT and x > x0:
            rows, x = rows + 1, x0
        x += width
    return rows


def timeline(scale: TimeScale, lanes: Sequence[str], marks: Sequence[Mark], spans: Sequence[Span],
             incident: tuple[float, float] | None, guides: Sequence[tuple[float, str]] = ()) -> Markup:
    """A trial on a time axis: one lane per actor, markers for its events, a legend."""
    top = 10
    height_plot = LANE_H * len(lanes)
    axis_y = top + height_plot
    used = {m.css for m in marks} | {s.css for s in spans} | {"m-thrash" for m in marks if m.ring}
    if guides:
        used.add("guide")
    if incident is not None:
        used.add("incident")
    legend = [e for e in TIMELINE_LEGEND if e[1] in used]
    svg = Svg(WIDTH, axis_y + AXIS_H + 16 + 20 * legend_rows(legend), "trial timeline", "chart timeline")
    lane_y = {lane: top + i * LANE_H + LANE_H / 2 for i, lane in enumerate(lanes)}
    for i, lane in enumerate(lanes):
        svg.rect(LEFT, top + i * LANE_H, PLOT, LANE_H, "lane" if i % 2 == 0 else "lane alt")
        svg.text(LEFT - 8, lane_y[lane] + 4, lane, "lane-label", "end")
    if incident is not None:
        x0, x1 = scale.x(incident[0]), scale.x(incident[1])
        svg.rect(x0, top, x1 - x0, height_plot, "incident",
                 f"incident: {incident[0]:.3f} s to {incident[1]:.3f} s ({incident[1] - incident[0]:.3f} s)")
    scale.axis(svg, axis_y, top)
    for t, title in guides:
        x = scale.x(t)
        svg.add('<line x1="{}" y1="{}" x2="{}" y2="{}" class="guide"><title>{}</title></line>', _n(x), _n(top), _n(x),
                _n(axis_y), title)
    for s in spans:
        y = lane_y[s.lane]
        svg.rect(scale.x(s.start), y - 4, max(scale.x(s.end) - scale.x(s.start), 2), 8, s.css, s.title)
    for m in marks:
        x, y = scale.x(m.at), lane_y[m.lane]
        if m.ring:
            svg.add('<circle cx="{}" cy="{}" r="9" class="m-thrash"/>', _n(x), _n(y))
        svg.marker(m.shape, x, y, m.css, m.title)
    _legend(svg, legend, axis_y + AXIS_H + 16)
    return svg.markup()


#: Member status -> (css class, word).
STATUS = {"healthy": ("h-ok", "healthy"), "unhealthy": ("h-warn", "reachable, unhealthy"),
          "down": ("h-down", "down"), "unknown": ("h-unknown", "no data")}


def member_health(scale: TimeScale, members: Sequence[str],
                  samples: Sequence[tuple[float, dict[str, str], str | None]],
                  incident: tuple[float, float] | None, leader_word: str = "leader") -> Markup:
    """Each member's health over time (one row each) and who led: ``samples`` are
    (time, member -> healthy|unhealthy|down, leader) in time order; ``leader_word`` is the
    subject's word for it (the rate limiter's: Redis primary)."""
    top = 10
    rows = [*members, leader_word]
    axis_y = top + LANE_H * len(rows)
    svg = Svg(WIDTH, axis_y + AXIS_H + 36, f"members' health and {leader_word} over time", "chart health")
    for i, name in enumerate(rows):
        svg.text(LEFT - 8, top + i * LANE_H + LANE_H / 2 + 4, name, "lane-label", "end")
        svg.rect(LEFT, top + i * LANE_H + 3, PLOT, LANE_H - 6, "h-unknown")
    ends = [s[0] for s in samples[1:]] + [scale.end_s]
    y: float
    for i, member in enumerate(members):
        y = top + i * LANE_H + 3
        run_start, run_status, run_leader = None, "", False
        for t, states, leader in samples:
            status, is_leader = states.get(member, "unknown"), leader == member
            if run_start is not None and (status, is_leader) == (run_status, run_leader):
                continue
            if run_start is not None:
                _health_run(svg, scale, y, member, run_start, t, run_status, run_leader, leader_word)
            run_start, run_status, run_leader = t, status, is_leader
        if run_start is not None:
            _health_run(svg, scale, y, member, run_start, ends[-1] if ends else scale.end_s, run_status, run_leader,
                        leader_word)
    y = top + len(members) * LANE_H + LANE_H / 2 + 4
    last: str | None = "\0"
    # A label takes the first of two rows where it clears the one before it; when neither
    # has room it is left out and the change line's tooltip names the leader.
    row_ends = [-1e9, -1e9]
    for t, _, leader in samples:
        if leader != last:
            x: float = scale.x(t)
            name = leader or f"no {leader_word}"
            svg.add('<line x1="{}" y1="{}" x2="{}" y2="{}" class="leader-change"><title>{}</title></line>', _n(x),
                    _n(y - 14), _n(x), _n(y + 6), f"{t:.1f} s: {name}")
            width = CHAR_W * len(name) + 4
            for row, baseline in enumerate((y - 3, y + 9)):
                if x + 3 >= row_ends[row] and x + 3 + width <= LEFT + PLOT + RIGHT:
                    svg.text(x + 3, baseline, name, "leader-name" if leader else "leader-none")
                    row_ends[row] = x + 3 + width
                    break
            last = leader
    if incident is not None:
        for t in incident:
            svg.line(scale.x(t), top, scale.x(t), axis_y, "guide")
    scale.axis(svg, axis_y, top)
    _legend(svg, [*[("swatch", css, word) for css, word in STATUS.values()], ("bar", "h-leader", leader_word),
                  ("line", "leader-change", f"{leader_word} changed"),
                  *([("line", "guide", "incident start / end")] if incident is not None else [])],
            axis_y + AXIS_H + 16)
    return svg.markup()


def _health_run(svg: Svg, scale: TimeScale, y: float, member: str, start: float, end: float, status: str,
                leader: bool, leader_word: str = "leader") -> None:
    css, word = STATUS.get(status, STATUS["unknown"])
    x0, x1 = scale.x(start), scale.x(end)
    title = f"{member}: {word}{f' ({leader_word})' if leader else ''}, {start:.1f} s to {end:.1f} s"
    svg.rect(x0, y, max(x1 - x0, 1), LANE_H - 6, css, title)
    if leader:
        svg.rect(x0, y, max(x1 - x0, 1), 5, "h-leader")


def workload(scale: TimeScale, windows: Sequence[tuple[float, float, int, int]],
             incident: tuple[float, float] | None) -> Markup:
    """Client operations per window (start, end, succeeded, failed): stacked bars."""
    top, plot_h = 14, 110
    axis_y = top + plot_h
    svg = Svg(WIDTH, axis_y + AXIS_H + 36, "workload: client operations per window", "chart workload")
    peak = max((ok + failed for _, _, ok, failed in windows), default=0) or 1
    svg.rect(LEFT, top, PLOT, plot_h, "lane")
    for frac in (0.5, 1.0):
        y = axis_y - frac * plot_h
        svg.line(LEFT, y, LEFT + PLOT, y, "grid")
        svg.text(LEFT - 8, y + 4, f"{peak * frac:.0f}", "tick", "end")
    svg.text(LEFT - 8, axis_y - plot_h / 2 + 20, "ops", "lane-label", "end")
    if incident is not None:
        x0, x1 = scale.x(incident[0]), scale.x(incident[1])
        svg.rect(x0, top, x1 - x0, plot_h, "incident")
    for start, end, ok, failed in windows:
        x0, x1 = scale.x(start), scale.x(end)
        w = max(x1 - x0 - 1, 1)
        total = ok + failed
        share = f"{100 * ok / total:.0f}%" if total else "no operations"
        title = f"{start:.1f} s to {end:.1f} s: {ok} succeeded, {failed} failed ({share})"
        h_ok, h_failed = ok / peak * plot_h, failed / peak * plot_h
        svg.rect(x0, axis_y - h_ok, w, h_ok, "w-ok", title)
        if failed:
            svg.rect(x0, axis_y - h_ok - h_failed, w, h_failed, "w-failed", title)
        if not total:
            svg.rect(x0, axis_y - plot_h, w, plot_h, "w-none", title)
    scale.axis(svg, axis_y, top)
    _legend(svg, [("swatch", "w-ok", "succeeded"), ("swatch", "w-failed", "failed"),
                  ("swatch", "w-none", "no operation completed"), ("band", "incident", "incident")],
            axis_y + AXIS_H + 16)
    return svg.markup()


def histogram(groups: Sequence[tuple[str, Sequence[float]]], *, unit: str, label: str, integer: bool = False,
              bins: int = 24, extra: Sequence[tuple[str, int]] = (), extra_label: str = "") -> Markup:
    """Distributions of one quantity, one row per group on a shared axis; ``extra`` is a
    count per group shown beside its row (e.g. trials that never recovered).

    Each row has a strip at its top for its note (how many trials), and its bars stay
    below it with room for their counts: no label lands on another."""
    values = [v for _, vs in groups for v in vs]
    lo = 0.0
    hi = max(values, default=1.0)
    if integer:
        hi = math.floor(hi) + 1
        width = max(1.0, math.ceil((hi - lo) / bins))
        nbins = max(1, math.ceil((hi - lo) / width))
    else:
        hi = hi * 1.02 or 1.0
        width = nice_step(hi - lo, bins)
        nbins = max(1, math.ceil((hi - lo) / width))
    span = nbins * width
    row_h, top, note_h, count_h = 80, 8, 18, 13
    axis_y = top + row_h * len(groups)
    svg = Svg(WIDTH, axis_y + AXIS_H + 8 + 20, label, "chart histogram")

    def x_of(v: float) -> float:
        return LEFT + (v - lo) / span * PLOT

    extras = dict(extra)
    for g, (name, vs) in enumerate(groups):
        counts = [0] * nbins
        for v in vs:
            counts[min(int((v - lo) / width), nbins - 1)] += 1
        peak = max(counts, default=0) or 1
        row_top = top + g * row_h
        base = row_top + row_h - 6
        tallest = base - (row_top + note_h + count_h)  # a bar's count sits above it, below the note
        svg.rect(LEFT, row_top, PLOT, row_h - 6, "lane" if g % 2 == 0 else "lane alt")
        svg.text(LEFT - 8, base - (row_h - 6) / 2 + 4, name, "lane-label", "end")
        note = f"{len(vs)} trials" + (f"; {extras[name]} {extra_label}" if name in extras else "")
        svg.text(LEFT + 6, row_top + 13, note, "note")
        for i, c in enumerate(counts):
            if not c:
                continue
            a, b = lo + i * width, lo + (i + 1) * width
            h = c / peak * tallest
            rng = f"{a:.0f}" if integer and width == 1 else f"{a:g} to {b:g}"
            svg.rect(x_of(a) + 1, base - h, max(x_of(b) - x_of(a) - 2, 1), h, "bar",
                     f"{name}: {c} trial{'s' if c != 1 else ''} at {rng} {unit}")
            if x_of(b) - x_of(a) >= CHAR_W * len(str(c)) + 2:
                svg.text((x_of(a) + x_of(b)) / 2, base - h - 3, str(c), "bar-label", "middle")
    svg.line(LEFT, axis_y, LEFT + PLOT, axis_y, "axis")
    step = nice_step(span, 10) if not integer else max(width, nice_step(span, 10))
    k = 0
    while k * step <= span + 1e-9:
        x = x_of(lo + k * step)
        svg.line(x, axis_y, x, axis_y + 4, "axis")
        svg.text(x, axis_y + 16, _fmt_tick(lo + k * step, step), "tick", "middle")
        k += 1
    svg.text(LEFT + PLOT, axis_y + 32, unit, "caption", "end")
    _legend(svg, [("swatch", "bar", "trials in a bin (their count above it)")], axis_y + AXIS_H + 12)
    return svg.markup()


def rate_bars(groups: Sequence[tuple[str, float, Interval | None, str]], label: str) -> Markup:
    """One horizontal bar per group (a rate from 0 to 1) with its confidence interval."""
    row_h, top, text_w = 30, 8, 250
    plot = PLOT - text_w
    axis_y = top + row_h * len(groups)
    svg = Svg(WIDTH, axis_y + AXIS_H + 8 + 20, label, "chart rates")

    def x_of(v: float) -> float:
        return LEFT + v * plot

    for g, (name, rate, ci, note) in enumerate(groups):
        y = top + g * row_h
        svg.rect(LEFT, y + 4, plot, row_h - 8, "lane")
        svg.rect(LEFT, y + 6, x_of(rate) - LEFT, row_h - 12, "rate", f"{name}: {100 * rate:.1f}% ({note})")
        svg.text(LEFT - 8, y + row_h / 2 + 4, name, "lane-label", "end")
        if ci is not None:
            a, b = x_of(ci.low), x_of(ci.high)
            mid = y + row_h / 2
            svg.line(a, mid, b, mid, "whisker")
            svg.line(a, mid - 6, a, mid + 6, "whisker")
            svg.line(b, mid - 6, b, mid + 6, "whisker")
        text = f"{100 * rate:.0f}%" + (f"  (95% CI {100 * ci.low:.0f} to {100 * ci.high:.0f}%)" if ci else "")
        svg.text(LEFT + plot + 12, y + row_h / 2 + 4, text, "bar-text")
    svg.line(LEFT, axis_y, LEFT + plot, axis_y, "axis")
    for k in range(11):
        x = x_of(k / 10)
        svg.line(x, axis_y, x, axis_y + 4, "axis")
        svg.text(x, axis_y + 16, f"{10 * k}%", "tick", "middle")
    _legend(svg, [("swatch", "rate", "recovery rate"), ("whisker", "whisker", "95% interval (Wilson)")],
            axis_y + AXIS_H + 12)
    return svg.markup()


#: The outcome bar's colours, for its legend.
OUTCOME_LEGEND: tuple[tuple[str, str, str], ...] = (
    ("swatch", "o-recovered", "recovered"), ("swatch", "o-not_recovered", "not recovered"),
    ("swatch", "o-error", "error"), ("swatch", "o-aborted", "aborted attempt"), ("swatch", "o-running", "running"),
)


def outcome_legend() -> Markup:
    """The key to :func:`outcome_bar`'s colours, as a one-row SVG."""
    svg = Svg(20 + sum(legend_width(text) for _, _, text in OUTCOME_LEGEND), 24, "outcome colours", "legend-bar")
    x: float = 16
    for shape, css, text in OUTCOME_LEGEND:  # one row, whatever its width
        _legend(svg, [(shape, css, text)], 12, x0=x)
        x += legend_width(text)
    return svg.markup()


def outcome_bar(counts: dict[str, int], width: float = 160, height: float = 12) -> Markup:
    """A small stacked bar of trial outcomes."""
    total = sum(counts.values())
    svg = Svg(width, height, "outcomes", "outcome-bar")
    if not total:
        svg.rect(0, 0, width, height, "o-none")
        return svg.markup()
    x = 0.0
    for outcome, n in counts.items():
        if n:
            w = n / total * width
            svg.rect(x, 0, w, height, f"o-{outcome}", f"{n} {outcome.replace('_', ' ')}")
            x += w
    return svg.markup()

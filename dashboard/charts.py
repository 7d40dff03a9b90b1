"""Plotly figures for the flag page, built from plain values (no Streamlit, no I/O).

`views/flag.py` passes the metric points, the guardrails and the audit events it
fetched through `data.py`; the tests and the render benchmark call these directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import pandas  # type: ignore[import-untyped]  # noqa: F401  (see below)
import plotly.graph_objects as go

from dashboard.health import label
from flags.client import Annotation, Event, Guardrail

# pandas is imported above, before any figure is built: plotly imports it lazily, and two
# sessions drawing their first figures at once could see it half-imported.

MAX_POINTS = 2000
#: How a value in the metric's own unit (fraction, bytes, seconds) becomes the axis unit.
UNIT_SCALE = {"%": 1.0, "MB": 1e-6, "ms": 1e3}

MARKER_STYLE = {
    "rollout": ("#1f77b4", "dot"),
    "promotion": ("#2ca02c", "dash"),
    "rollback": ("#d62728", "solid"),
    "resume": ("#9467bd", "dashdot"),
    "annotation": ("#7f7f7f", "longdash"),
}
COHORT_COLOURS = {"optimized": "#1f77b4", "direct": "#ff7f0e", None: "#1f77b4"}


class PointLike(Protocol):
    @property
    def time(self) -> datetime: ...
    @property
    def value(self) -> float: ...


@dataclass(frozen=True)
class Marker:
    """A change worth drawing on every chart: a rollout change, promotion, rollback or resume."""

    time: datetime
    kind: str  # rollout | promotion | rollback | resume | annotation
    label: str


def classify(event: Event) -> str | None:
    """Which kind of marker an audit event makes, or None when it changes no rollout."""
    before, after = event.before or {}, event.after or {}
    action = event.action.lower()
    if "kill" in action or "rollback" in action or (before.get("enabled") and after.get("enabled") is False):
        return "rollback"
    if "resume" in action or (before.get("enabled") is False and after.get("enabled")):
        return "resume"
    old, new = before.get("rollout"), after.get("rollout")
    if "promot" in action:
        return "promotion"
    if isinstance(old, int) and isinstance(new, int) and old != new:
        if new < old:
            return "rollback"
        return "promotion" if event.actor == "controller" else "rollout"
    if "rollout" in action:
        return "rollout"
    return None


def markers_from_events(events: Iterable[Event]) -> list[Marker]:
    """Markers for the audit events that changed who gets the feature, oldest first."""
    found = []
    for event in events:
        kind = classify(event)
        if kind is None:
            continue
        rollout = (event.after or {}).get("rollout")
        detail = f" -> {rollout}%" if kind in ("rollout", "promotion") and rollout is not None else ""
        why = f": {event.reason}" if event.reason else ""
        found.append(Marker(event.time, kind, f"{kind}{detail} by {event.actor}{why}"))
    return sorted(found, key=lambda m: m.time)


def with_gaps(
    times: Sequence[datetime], values: Sequence[float], *, max_gap_s: float
) -> tuple[list[Any], list[Any]]:
    """Insert a None between points further apart than `max_gap_s`, so Plotly breaks the line there."""
    out_times: list[Any] = []
    out_values: list[Any] = []
    for index, (moment, value) in enumerate(zip(times, values, strict=True)):
        if index and (moment - times[index - 1]).total_seconds() > max_gap_s:
            out_times.append(None)
            out_values.append(None)
        out_times.append(moment)
        out_values.append(value)
    return out_times, out_values


def markers_from_annotations(annotations: Iterable[Annotation]) -> list[Marker]:
    """Markers for annotated events (a mass submission, a fault), oldest first."""
    found = [Marker(a.time, "annotation", f"{a.kind}: {a.text} ({a.actor})") for a in annotations]
    return sorted(found, key=lambda m: m.time)


def downsample(
    points: Sequence[PointLike], max_points: int = MAX_POINTS
) -> tuple[list[datetime], list[float]]:
    """Keep at most `max_points`, the minimum and maximum of each bucket, so spikes survive."""
    if len(points) <= max_points:
        return [p.time for p in points], [p.value for p in points]
    buckets = max_points // 2
    size = len(points) / buckets
    times: list[datetime] = []
    values: list[float] = []
    for b in range(buckets):
        chunk = points[int(b * size) : int((b + 1) * size)]
        if not chunk:
            continue
        low = min(chunk, key=lambda p: p.value)
        high = max(chunk, key=lambda p: p.value)
        for p in sorted({id(low): low, id(high): high}.values(), key=lambda p: p.time):
            times.append(p.time)
            values.append(p.value)
    return times, values


def metric_figure(
    title: str,
    lines: Mapping[str, Sequence[PointLike]],
    *,
    guardrails: Sequence[Guardrail] = (),
    markers: Sequence[Marker] = (),
    start: datetime,
    end: datetime,
    unit: str = "",
    windows: Mapping[str, int] | None = None,
    step_s: int = 5,
) -> go.Figure:
    """One metric over time: a line per cohort, guardrail thresholds, change markers.

    `unit` is how the axis reads: "%" for a fraction, "MB" for bytes, "ms" for
    seconds (values and thresholds are scaled to it). `windows` gives, per line
    name, the seconds each point covers; the hover states it.
    Points are `step_s` apart; where they are further apart (no samples on that
    path) the line breaks instead of joining across the gap.
    """
    figure = go.Figure()
    for name, points in lines.items():
        kept_times, kept_values = downsample(points)
        # Thinning keeps two points per bucket, so kept neighbours may lie a bucket apart.
        bucket_s = step_s * max(1.0, len(points) / (MAX_POINTS // 2))
        scale = UNIT_SCALE.get(unit, 1.0)
        times, values = with_gaps(
            kept_times, [v * scale for v in kept_values], max_gap_s=2 * max(step_s, bucket_s)
        )
        colour = COHORT_COLOURS.get(name, None)
        window = (windows or {}).get(name)
        y_format = "%{y:.2~%}" if unit == "%" else f"%{{y:.3~f}} {unit}"
        hover = (
            {"hovertemplate": f"%{{x}}<br>{y_format} over {window} s<extra>{name}</extra>"} if window else {}
        )
        figure.add_trace(
            go.Scatter(
                x=times, y=values, mode="lines", name=name, line={"color": colour, "width": 1.5}, **hover
            )
        )
    for guardrail in guardrails:
        if guardrail.kind == "comparative":
            continue
        dash = "dash" if guardrail.path in (None, "optimized") else "dot"
        threshold = guardrail.threshold * UNIT_SCALE.get(unit, 1.0)
        shown = f"{threshold * 100:g}%" if unit == "%" else f"{threshold:g} {unit}".strip()
        figure.add_trace(
            go.Scatter(
                x=[start, end],
                y=[threshold, threshold],
                mode="lines",
                name=f"guardrail {guardrail.op} {shown}" + (f" {guardrail.path}" if guardrail.path else ""),
                line={"color": "#d62728", "dash": dash, "width": 1},
                hovertemplate=f"guardrail {label(guardrail)}<extra></extra>",
            )
        )
    _add_markers(figure, markers)
    figure.update_layout(
        title={"text": title, "font": {"size": 15}, "y": 0.97},
        height=300,
        # Fixed margins, wide enough for the legend: letting Plotly grow them to fit draws every
        # chart twice in the browser, and fixed ones line the charts' time axes up with each other.
        margin={
            "l": 60,
            "r": legend_width([t.name for t in figure.data]),
            "t": 50,
            "b": 40,
            "autoexpand": False,
        },
        # Right of the plot: above it the legend covered the title, below it the date axis.
        legend={"orientation": "v", "x": 1.01, "y": 1, "yanchor": "top", "font": {"size": 12}},
        # "allow": no measuring of every tick label to hide those past the chart's edge.
        xaxis={"range": [start, end], "type": "date", "ticklabeloverflow": "allow"},
        yaxis={
            "title": unit,
            "tickformat": ".2~%" if unit == "%" else None,
            "rangemode": "tozero",
            "ticklabeloverflow": "allow",
        },
        uirevision=title,
    )
    if not lines or all(not points for points in lines.values()):
        figure.add_annotation(
            text="no data in this range", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5
        )
    return figure


#: The right margin of every metric chart unless a legend entry needs more, so that their time axes align.
LEGEND_WIDTH = 260


def legend_width(names: Iterable[str | None]) -> int:
    """Pixels right of the plot for a legend of these entries (12 px text after a 40 px line sample)."""
    longest = max((len(name or "") for name in names), default=0)
    return max(LEGEND_WIDTH, 50 + 7 * longest)


def _add_markers(figure: go.Figure, markers: Sequence[Marker]) -> None:
    # One trace per kind: vertical segments as lines broken by None, so a day of
    # changes stays a handful of traces instead of one shape per event.
    for kind, (colour, dash) in MARKER_STYLE.items():
        chosen = [m for m in markers if m.kind == kind]
        if not chosen:
            continue
        xs: list[Any] = []
        ys: list[Any] = []
        text: list[Any] = []
        for marker in chosen:
            xs += [marker.time, marker.time, None]
            ys += [0, 1, None]
            text += [marker.label, marker.label, None]
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                yaxis="y2",
                mode="lines",
                name=kind,
                text=text,
                hovertemplate="%{text}<extra></extra>",
                line={"color": colour, "dash": dash, "width": 1},
            )
        )
    if markers:
        figure.update_layout(yaxis2={"overlaying": "y", "range": [0, 1], "visible": False})

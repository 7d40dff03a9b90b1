"""Plotly figures for the flag page, built from plain values (no Streamlit, no I/O).

`views/flag.py` passes the metric points, the guardrails and the audit events it
fetched through `data.py`; the tests and the render benchmark call these directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pandas  # type: ignore[import-untyped]  # noqa: F401  (see below)
import plotly.graph_objects as go
from numpy.typing import NDArray

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


def line_arrays(
    times: Sequence[datetime], values: Sequence[float], *, max_gap_s: float, scale: float = 1.0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Times in epoch milliseconds and scaled values as arrays, with a NaN value where points lie
    further apart than `max_gap_s`, so Plotly breaks the line there instead of joining the gap.

    Arrays reach the browser as packed binary (base64) instead of a number or a date string per
    point: a day's figure is half the bytes, and neither side parses dates.
    """
    stamps = np.array([moment.timestamp() * 1000 for moment in times], dtype=np.float64)
    scaled = np.array(values, dtype=np.float64) * scale
    if len(stamps) < 2:
        return stamps, scaled
    gaps = np.flatnonzero(np.diff(stamps) > max_gap_s * 1000) + 1
    # The break repeats the time before it with no value: a point Plotly cannot draw.
    return np.insert(stamps, gaps, stamps[gaps - 1]), np.insert(scaled, gaps, np.nan)


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


@dataclass(frozen=True)
class Row:
    """One panel of the metrics figure: its lines in the metric's own unit, and the guardrails on them.

    `unit` is how the row's axis reads: "%" for a fraction, "MB" for bytes, "ms"
    for seconds (values and thresholds are scaled to it). `windows` gives, per
    line name, the seconds each point covers; the hover states it.
    """

    title: str
    lines: Mapping[str, Sequence[PointLike]]
    unit: str = ""
    guardrails: Sequence[Guardrail] = ()
    windows: Mapping[str, int] = field(default_factory=dict)


#: Pixels of one row's plot, and between two rows (the upper one's time labels, the lower one's title).
ROW_PX = 210
ROW_GAP_PX = 90
MARGIN_TOP_PX = 50
MARGIN_BOTTOM_PX = 40


def metric_figure(
    rows: Sequence[Row],
    *,
    markers: Sequence[Marker] = (),
    start: datetime,
    end: datetime,
    step_s: int = 5,
) -> go.Figure:
    """Every metric panel as a row of one figure: lines, guardrail thresholds, change markers.

    One figure instead of one per panel: the browser lays out and draws a single
    plot, and the rows share one time axis, so a zoom on any row zooms them all.
    Each row has its title above it and its legend on its right. Points are
    `step_s` apart; where they are further apart (no samples on that path) the
    line breaks instead of joining across the gap.
    """
    traces: list[go.Scatter] = []
    layout: dict[str, Any] = {}
    area_px = len(rows) * ROW_PX + (len(rows) - 1) * ROW_GAP_PX
    annotations = []
    for index, row in enumerate(rows):
        axis = "" if index == 0 else str(index + 1)
        top = 1 - index * (ROW_PX + ROW_GAP_PX) / area_px
        domain = [max(0.0, top - ROW_PX / area_px), top]
        row_traces = [*_lines(row, step_s=step_s), *_thresholds(row, start=start, end=end)]
        row_traces += _markers(markers, overlay=f"y{len(rows) + index + 1}")
        legend = "legend" if index == 0 else f"legend{index + 1}"
        for trace in row_traces:
            trace.update(xaxis=f"x{axis}", yaxis=trace.yaxis or f"y{axis}", legend=legend)
        traces += row_traces
        layout[f"xaxis{axis}"] = {
            "anchor": f"y{axis}",
            "type": "date",
            "range": [start, end],
            # "allow": no measuring of every tick label to hide those past the plot's edge.
            "ticklabeloverflow": "allow",
            **({"matches": "x"} if index else {}),
        }
        layout[f"yaxis{axis}"] = {
            "domain": domain,
            "anchor": f"x{axis}",
            "title": row.unit,
            "tickformat": ".2~%" if row.unit == "%" else None,
            "rangemode": "tozero",
            "ticklabeloverflow": "allow",
        }
        if markers:
            layout[f"yaxis{len(rows) + index + 1}"] = {
                "overlaying": f"y{axis}",
                "anchor": f"x{axis}",
                "range": [0, 1],
                "visible": False,
            }
        # Right of the plot: above it the legend covered the title, below it the date axis.
        layout[legend] = {"x": 1.01, "y": top, "yanchor": "top", "font": {"size": 12}}
        annotations.append(_title(row.title, top))
        if not any(row.lines.values()):
            annotations.append(_no_data(axis))
    figure = go.Figure(data=traces)
    figure.update_layout(
        **layout,
        annotations=annotations,
        height=MARGIN_TOP_PX + area_px + MARGIN_BOTTOM_PX,
        # Fixed margins, wide enough for the legends: letting Plotly grow them to fit draws the
        # figure twice in the browser.
        margin={
            "l": 60,
            "r": legend_width([t.name for t in traces]),
            "t": MARGIN_TOP_PX,
            "b": MARGIN_BOTTOM_PX,
            "autoexpand": False,
        },
        showlegend=True,
        uirevision="metrics",
    )
    return figure


def _lines(row: Row, *, step_s: int) -> list[go.Scatter]:
    found = []
    scale = UNIT_SCALE.get(row.unit, 1.0)
    y_format = "%{y:.2~%}" if row.unit == "%" else f"%{{y:.3~f}} {row.unit}"
    for name, points in row.lines.items():
        kept_times, kept_values = downsample(points)
        # Thinning keeps two points per bucket, so kept neighbours may lie a bucket apart.
        bucket_s = step_s * max(1.0, len(points) / (MAX_POINTS // 2))
        times, values = line_arrays(kept_times, kept_values, max_gap_s=2 * max(step_s, bucket_s), scale=scale)
        window = row.windows.get(name)
        hover = (
            {"hovertemplate": f"%{{x}}<br>{y_format} over {window} s<extra>{name}</extra>"} if window else {}
        )
        colour = COHORT_COLOURS.get(name, None)
        found.append(
            go.Scatter(
                x=times, y=values, mode="lines", name=name, line={"color": colour, "width": 1.5}, **hover
            )
        )
    return found


def _thresholds(row: Row, *, start: datetime, end: datetime) -> list[go.Scatter]:
    found = []
    for guardrail in row.guardrails:
        if guardrail.kind == "comparative":
            continue
        dash = "dash" if guardrail.path in (None, "optimized") else "dot"
        threshold = guardrail.threshold * UNIT_SCALE.get(row.unit, 1.0)
        shown = f"{threshold * 100:g}%" if row.unit == "%" else f"{threshold:g} {row.unit}".strip()
        found.append(
            go.Scatter(
                x=[start, end],
                y=[threshold, threshold],
                mode="lines",
                name=f"guardrail {guardrail.op} {shown}" + (f" {guardrail.path}" if guardrail.path else ""),
                line={"color": "#d62728", "dash": dash, "width": 1},
                hovertemplate=f"guardrail {label(guardrail)}<extra></extra>",
            )
        )
    return found


def _markers(markers: Sequence[Marker], *, overlay: str) -> list[go.Scatter]:
    # One trace per kind: vertical segments as lines broken by None, so a day of
    # changes stays a handful of traces instead of one shape per event.
    found = []
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
        found.append(
            go.Scatter(
                x=xs,
                y=ys,
                yaxis=overlay,
                mode="lines",
                name=kind,
                text=text,
                hovertemplate="%{text}<extra></extra>",
                line={"color": colour, "dash": dash, "width": 1},
            )
        )
    return found


def _title(text: str, top: float) -> dict[str, Any]:
    return {
        "text": text,
        "font": {"size": 15},
        "xref": "paper",
        "yref": "paper",
        "x": 0,
        "y": top,
        "xanchor": "left",
        "yanchor": "bottom",
        "yshift": 8,
        "showarrow": False,
    }


def _no_data(axis: str) -> dict[str, Any]:
    return {
        "text": "no data in this range",
        "showarrow": False,
        "xref": f"x{axis} domain",
        "yref": f"y{axis} domain",
        "x": 0.5,
        "y": 0.5,
    }


#: The right margin of the metrics figure unless a legend entry needs more.
LEGEND_WIDTH = 260


def legend_width(names: Iterable[str | None]) -> int:
    """Pixels right of the plot for a legend of these entries (12 px text after a 40 px line sample)."""
    longest = max((len(name or "") for name in names), default=0)
    return max(LEGEND_WIDTH, 50 + 7 * longest)

"""Plotly figures for the flag page, built from plain values (no Streamlit, no I/O).

`views/flag.py` passes the metric points, the guardrails and the audit events it
fetched through `data.py`; the tests and the render benchmark call these directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import plotly.graph_objects as go

from control.decisions import PastVerdict
from flags.client import Event, Guardrail

MAX_POINTS = 2000

MARKER_STYLE = {
    "rollout": ("#1f77b4", "dot"),
    "promotion": ("#2ca02c", "dash"),
    "rollback": ("#d62728", "solid"),
    "resume": ("#9467bd", "dashdot"),
}
VERDICT_COLOURS = {"pass": "#2ca02c", "fail": "#d62728", "no_data": "#b0b0b0"}
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
    kind: str  # rollout | promotion | rollback | resume
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
    y_title: str = "",
    percent: bool = False,
    windows: Mapping[str, int] | None = None,
) -> go.Figure:
    """One metric over time: a line per cohort, guardrail thresholds, change markers.

    `windows` gives, per line name, the seconds each point covers; the hover states it.
    """
    figure = go.Figure()
    for name, points in lines.items():
        times, values = downsample(points)
        colour = COHORT_COLOURS.get(name, None)
        window = (windows or {}).get(name)
        y_format = "%{y:.2~%}" if percent else "%{y}"
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
        figure.add_trace(
            go.Scatter(
                x=[start, end],
                y=[guardrail.threshold, guardrail.threshold],
                mode="lines",
                name=f"guardrail {guardrail.op}{guardrail.threshold:g}"
                + (f" {guardrail.path}" if guardrail.path else ""),
                line={"color": "#d62728", "dash": dash, "width": 1},
                hovertemplate=f"guardrail {guardrail.name}<extra></extra>",
            )
        )
    _add_markers(figure, markers)
    figure.update_layout(
        title={"text": title, "font": {"size": 15}, "y": 0.97},
        height=330,
        margin={"l": 50, "r": 20, "t": 70, "b": 40},
        # Above the plot: below it, the legend would cover the date axis.
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom", "font": {"size": 11}},
        xaxis={"range": [start, end], "type": "date"},
        yaxis={"title": y_title, "tickformat": ".2~%" if percent else None, "rangemode": "tozero"},
        uirevision=title,
    )
    if not lines or all(not points for points in lines.values()):
        figure.add_annotation(
            text="no data in this range", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5
        )
    return figure


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


@dataclass(frozen=True)
class Run:
    """Consecutive verdicts of one guardrail that agree."""

    guardrail: str
    verdict: str
    start: datetime
    end: datetime
    last_value: float | None
    threshold: float | None
    count: int


def verdict_runs(verdicts: Iterable[PastVerdict]) -> list[Run]:
    """Collapse each guardrail's verdicts into runs of the same outcome."""
    by_guardrail: dict[str, list[PastVerdict]] = {}
    for record in verdicts:
        by_guardrail.setdefault(record.guardrail, []).append(record)
    runs: list[Run] = []
    for name, records in sorted(by_guardrail.items()):
        records.sort(key=lambda r: r.time)
        current: Run | None = None
        for record in records:
            if current and current.verdict == record.verdict:
                current = Run(
                    name,
                    record.verdict,
                    current.start,
                    record.time,
                    record.value,
                    record.threshold,
                    current.count + 1,
                )
            else:
                if current:
                    runs.append(_close(current, record.time))
                current = Run(
                    name, record.verdict, record.time, record.time, record.value, record.threshold, 1
                )
        if current:
            runs.append(current)
    return runs


def _close(run: Run, next_start: datetime) -> Run:
    return Run(run.guardrail, run.verdict, run.start, next_start, run.last_value, run.threshold, run.count)


def verdict_timeline(
    runs: Sequence[Run], *, start: datetime, end: datetime, markers: Sequence[Marker] = ()
) -> go.Figure:
    """The guardrail verdict timeline from `verdict_runs`: one row per guardrail, coloured by outcome."""
    figure = go.Figure()
    for verdict, colour in VERDICT_COLOURS.items():
        chosen = [r for r in runs if r.verdict == verdict]
        if not chosen:
            continue
        figure.add_trace(
            go.Bar(
                orientation="h",
                y=[r.guardrail for r in chosen],
                base=[r.start for r in chosen],
                # A single verdict still gets a visible sliver of one second.
                x=[max((r.end - r.start).total_seconds(), 1.0) * 1000 for r in chosen],
                name=verdict,
                marker={"color": colour},
                customdata=[[r.count, r.last_value, r.threshold] for r in chosen],
                hovertemplate=(
                    f"{verdict}: %{{customdata[0]}} checks<br>last value %{{customdata[1]}}"
                    " vs %{customdata[2]}<extra>%{y}</extra>"
                ),
            )
        )
    rows = sorted({r.guardrail for r in runs})
    figure.update_layout(
        title={"text": "Guardrail verdicts", "font": {"size": 15}},
        barmode="overlay",
        height=max(160, 60 + 32 * len(rows)),
        margin={"l": 50, "r": 20, "t": 60, "b": 40},
        xaxis={"type": "date", "range": [start, end]},
        yaxis={"automargin": True, "showticklabels": bool(runs)},
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
    )
    for marker in markers:
        figure.add_vline(
            x=marker.time, line={"color": MARKER_STYLE[marker.kind][0], "width": 1, "dash": "dot"}
        )
    if not runs:
        figure.add_annotation(
            text="no verdicts in this range", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5
        )
    return figure

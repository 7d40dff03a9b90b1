"""The metric panels of the flag page: which series each one shows, fetched and drawn.

`views/flag.py` calls `metrics_figure`; it reads series through `data.series`
(the controller's metric source) and draws every panel as a row of one figure
with `charts.metric_figure`. A panel whose lines a guardrail of the flag judges
is read over that guardrail's window (`guardrail_window`; the smallest if
several), so it shows what the controller saw; the hover states each line's window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import plotly.graph_objects as go

from control import PATH_AWARE, series_window_s
from dashboard import charts, data
from dashboard.settings import DashboardSettings
from flags.client import Flag, Guardrail

RANGES = {
    "5 minutes": 300,
    "15 minutes": 900,
    "1 hour": 3600,
    "6 hours": 21600,
    "24 hours": 86400,
    "7 days": 604800,
}
#: The range in the flag page's URL (`?range=24h`), so a view can be shared.
RANGE_SLUGS = dict(zip(("5m", "15m", "1h", "6h", "24h", "7d"), RANGES, strict=True))
RESOLUTIONS = {"auto": None, "5 s (full)": 5}
#: A quiet spell this long between two changes of a flag separates two stories.
QUIET_S = 6 * 3600
BASE_STEP_S = 5


@dataclass(frozen=True)
class Panel:
    """One chart: a title and its lines as (legend name, metric, cohort)."""

    title: str
    lines: tuple[tuple[str, str, str | None], ...]
    unit: str  # "%", "MB" or "ms": see charts.metric_figure


PANELS = (
    Panel("Call reduction", (("call reduction", "call_reduction", None),), "%"),
    Panel("Cache hit rate", (("hit rate", "cache_hit_rate", None),), "%"),
    Panel(
        "Cache bytes and process memory",
        (("cache bytes", "cache_bytes", None), ("process RSS", "rss_bytes", None)),
        "MB",
    ),
    Panel(
        "Error rate per cohort",
        (("optimized", "error_rate", "optimized"), ("direct", "error_rate", "direct")),
        "%",
    ),
    Panel(
        "p95 latency per cohort",
        (("optimized", "p95_latency_s", "optimized"), ("direct", "p95_latency_s", "direct")),
        "ms",
    ),
)


def step_for(span_s: int, fixed_step_s: int | None, *, max_points: int = charts.MAX_POINTS // 2) -> int:
    """The query step: `fixed_step_s`, or the smallest multiple of 5 s giving at most `max_points`.

    A step over a minute is rounded up to whole minutes (two at least), and over
    ten minutes to whole 5 minutes, so that the series reads the store's
    per-minute or per-5-minute rollups instead of every raw sample.
    """
    if fixed_step_s:
        return fixed_step_s
    steps = math.ceil(span_s / max_points / BASE_STEP_S)
    step = max(BASE_STEP_S, steps * BASE_STEP_S)
    if step > 600:
        return math.ceil(step / 300) * 300
    if step > 60:
        return max(120, math.ceil(step / 60) * 60)
    return step


def story_start(event_times: Sequence[datetime], *, quiet_s: float = QUIET_S) -> datetime | None:
    """When the flag's current story began: its oldest change since the last quiet spell of `quiet_s`."""
    ordered = sorted(event_times, reverse=True)
    start = ordered[0] if ordered else None
    for newer, older in zip(ordered, ordered[1:], strict=False):
        if (newer - older).total_seconds() > quiet_s:
            break
        start = older
    return start


def default_range(first_activity: datetime | None, now: datetime) -> str:
    """The smallest range that shows everything since `first_activity` (1 hour when unknown)."""
    if first_activity is None:
        return "1 hour"
    age_s = (now - first_activity).total_seconds()
    for label, span_s in RANGES.items():
        # A little room on the left, so the first change is not on the chart's edge.
        if age_s <= span_s * 0.9:
            return label
    return list(RANGES)[-1]


def guardrail_window(guardrails: Sequence[Guardrail], metric: str, path: str | None) -> int | None:
    """The smallest window of the guardrails judging `metric` on cohort `path`, None if none does.

    A guardrail judges the line when it has the same metric and, for a per-cohort
    metric, the line's cohort or both cohorts (no path); a comparative one judges
    both cohort lines.
    """
    windows = [
        g.window_s
        for g in guardrails
        if g.metric == metric
        and (
            metric not in PATH_AWARE
            or g.path in (None, path)
            or (g.kind == "comparative" and path in ("optimized", "direct"))
        )
    ]
    return min(windows) if windows else None


def metrics_figure(
    settings: DashboardSettings,
    flag: Flag,
    *,
    start: datetime,
    end: datetime,
    step_s: int,
    markers: Sequence[charts.Marker] = (),
) -> go.Figure:
    """Every panel for `flag` over [start, end], one row each. Raises SourceDown when metrics are down."""
    return charts.metric_figure(
        [panel_row(settings, flag, panel, start=start, end=end, step_s=step_s) for panel in PANELS],
        markers=markers,
        start=start,
        end=end,
        step_s=step_s,
    )


def panel_row(
    settings: DashboardSettings, flag: Flag, panel: Panel, *, start: datetime, end: datetime, step_s: int
) -> charts.Row:
    """One panel's series, read over the smallest window a guardrail judges any of its lines on,
    so the lines stay comparable with each other and with the guardrail's threshold."""
    fn = flag.payload.get("fn")
    judged = [guardrail_window(flag.guardrails, metric, path) for _name, metric, path in panel.lines]
    window_s = min((w for w in judged if w is not None), default=None)
    lines = {
        name: data.series(
            settings,
            metric,
            fn=fn,
            path=path,
            start=start,
            end=end,
            step_s=step_s,
            window_s=window_s,
            flag=flag.key,
        )
        for name, metric, path in panel.lines
    }
    metrics = {metric for _name, metric, _path in panel.lines}
    return charts.Row(
        panel.title,
        lines,
        unit=panel.unit,
        guardrails=[g for g in flag.guardrails if g.metric in metrics],
        windows=dict.fromkeys(lines, series_window_s(step_s, window_s)),
    )

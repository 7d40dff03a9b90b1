"""The metric charts of the flag page: which series each one shows, fetched and drawn.

`views/flag.py` calls `metric_charts`; it reads series through `data.series`
(the controller's metric source) and draws them with `charts.metric_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import plotly.graph_objects as go

from dashboard import charts, data
from dashboard.settings import DashboardSettings
from flags.client import Flag

RANGES = {"15 minutes": 900, "1 hour": 3600, "6 hours": 21600, "24 hours": 86400, "7 days": 604800}
RESOLUTIONS = {"auto": None, "5 s (full)": 5}
BASE_STEP_S = 5


@dataclass(frozen=True)
class Panel:
    """One chart: a title and its lines as (legend name, metric, cohort)."""

    title: str
    lines: tuple[tuple[str, str, str | None], ...]
    y_title: str
    percent: bool = False


PANELS = (
    Panel("Call reduction", (("call reduction", "call_reduction", None),), "fraction", percent=True),
    Panel("Cache hit rate", (("hit rate", "cache_hit_rate", None),), "fraction", percent=True),
    Panel(
        "Cache bytes and process memory",
        (("cache bytes", "cache_bytes", None), ("process RSS", "rss_bytes", None)),
        "bytes",
    ),
    Panel(
        "Error rate per cohort",
        (("optimized", "error_rate", "optimized"), ("direct", "error_rate", "direct")),
        "fraction",
        percent=True,
    ),
    Panel(
        "p95 latency per cohort",
        (("optimized", "p95_latency_s", "optimized"), ("direct", "p95_latency_s", "direct")),
        "seconds",
    ),
)


def step_for(span_s: int, fixed_step_s: int | None, *, max_points: int = charts.MAX_POINTS // 2) -> int:
    """The query step: `fixed_step_s`, or the smallest multiple of 5 s giving at most `max_points`."""
    if fixed_step_s:
        return fixed_step_s
    steps = math.ceil(span_s / max_points / BASE_STEP_S)
    return max(BASE_STEP_S, steps * BASE_STEP_S)


def metric_charts(
    settings: DashboardSettings,
    flag: Flag,
    *,
    start: datetime,
    end: datetime,
    step_s: int,
    markers: Sequence[charts.Marker] = (),
) -> list[go.Figure]:
    """Every panel for `flag` over [start, end] (raises SourceDown when metrics are down)."""
    fn = flag.payload.get("fn")
    figures = []
    for panel in PANELS:
        lines = {
            name: data.series(settings, metric, fn=fn, path=path, start=start, end=end, step_s=step_s)
            for name, metric, path in panel.lines
        }
        metrics = {metric for _name, metric, _path in panel.lines}
        guardrails = [g for g in flag.guardrails if g.metric in metrics]
        figures.append(
            charts.metric_figure(
                panel.title,
                lines,
                guardrails=guardrails,
                markers=markers,
                start=start,
                end=end,
                y_title=panel.y_title,
                percent=panel.percent,
            )
        )
    return figures

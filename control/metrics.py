"""The metric-source interface the controller, the backtest and the dashboard read.

Two implementations give the same numbers for the same traffic:
`control.embedded.EmbeddedSource` (the default: computes the derived series
from samples the embedded scraper stored in the controller's store) and
`control.prometheus_source.PrometheusSource` (PromQL over a real Prometheus).
A third, `control.impact_source.ImpactSource`, computes them from the impact
metrics official Unleash SDKs send to the flag service, for apps in any language.
Metric names are `control.promql.DERIVED_METRICS`: call_reduction,
cache_hit_rate, error_rate, p95_latency_s (path optimized|direct), cache_bytes,
rss_bytes, plus request_rate and backend_rate for charts. `fn` is the flag's
payload["fn"]; None means all functions, `path` None means both cohorts.
`flag` is the key of the flag being judged: the impact source finds cohorts by
that flag's label; the other two find them by the `path` label the optimizer's
gate sets, and ignore it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from control.embedded import Samples
    from control.settings import ControlSettings

#: Default window of each point of `series()`: a point at t covers [t - max(SERIES_WINDOW_S, step_s), t].
SERIES_WINDOW_S = 60


@dataclass(frozen=True)
class WindowValue:
    """A derived metric over a window; `samples` counts logical calls (rates, latency) or scrapes (gauges)."""

    value: float | None
    samples: int


@dataclass(frozen=True)
class Histogram:
    """A latency histogram over a window: (upper bound, cumulative count) buckets, ending at +Inf.

    Build it with `Histogram.of()`, which sorts the buckets and makes the counts
    monotonic (extrapolated increases can dip, as in PromQL's histogram_quantile).
    """

    buckets: tuple[tuple[float, float], ...] = ()

    @classmethod
    def of(cls, counts: Mapping[float, float]) -> Histogram:
        """Return the histogram of cumulative `counts` by bound; empty unless one bound is +Inf."""
        ordered = sorted(counts.items())
        if not ordered or not math.isinf(ordered[-1][0]):
            return cls()
        monotonic, highest = [], 0.0
        for bound, count in ordered:
            highest = max(highest, count)
            monotonic.append((bound, highest))
        return cls(tuple(monotonic))

    @property
    def count(self) -> float:
        """How many observations (the +Inf bucket); 0 for an empty histogram."""
        return self.buckets[-1][1] if self.buckets else 0.0

    def cumulative(self, bound: float) -> float:
        """Observations at or below the bucket bound `bound` (0 when it is below every bucket)."""
        return max((count for le, count in self.buckets if le <= bound), default=0.0)

    def bound_of_rank(self, rank: float) -> float:
        """The upper bound of the bucket holding the observation of rank `rank`."""
        return next((le for le, count in self.buckets if count >= rank), math.inf)

    def bound_at_or_above(self, value: float) -> float:
        """The lowest bucket bound at or above `value` (+Inf when none is)."""
        return next((le for le, _count in self.buckets if le >= value), math.inf)


@dataclass(frozen=True)
class Point:
    """One point of a derived series; `time` is tz-aware UTC."""

    time: datetime
    value: float


class MetricSource(Protocol):
    """Where derived metrics come from; see the module docstring for names and labels."""

    def window(
        self,
        metric: str,
        *,
        fn: str | None = None,
        path: str | None = None,
        flag: str | None = None,
        window_s: int = 60,
        end: datetime | None = None,
    ) -> WindowValue:
        """Return `metric` over the `window_s` seconds ending at `end` (default now)."""
        ...

    def data_time(self) -> datetime | None:
        """The time of the newest data a check can judge; None when the source cannot tell (judge up to now)."""
        ...

    def latency_histogram(
        self,
        *,
        fn: str | None = None,
        path: str | None = None,
        flag: str | None = None,
        window_s: int = 60,
        end: datetime | None = None,
    ) -> Histogram:
        """Return the latency histogram of logical calls over the `window_s` seconds ending at `end`.

        The buckets of `sum by (le) (increase(optimizer_call_seconds_bucket{fn,path}[W]))`.
        """
        ...

    def series(
        self,
        metric: str,
        *,
        fn: str | None = None,
        path: str | None = None,
        flag: str | None = None,
        start: datetime,
        end: datetime,
        step_s: int = 5,
        window_s: int | None = None,
    ) -> list[Point]:
        """Return `metric` at each multiple of `step_s` (epoch seconds) within [start, end].

        Points without a value are left out; each covers `series_window_s(step_s, window_s)`:
        `window_s` (at least the step) or, when None, the default of SERIES_WINDOW_S.
        """
        ...


def series_times(start: datetime, end: datetime, step_s: int) -> tuple[float, float]:
    """First and last evaluation instants (epoch s) of a series: multiples of `step_s` within [start, end].

    Aligning to the step makes both sources evaluate at the same instants and
    lets a chart's points stay put as its range slides.
    """
    step = max(1, int(step_s))
    first = math.ceil(start.timestamp() / step) * step
    last = math.floor(end.timestamp() / step) * step
    return float(first), float(last)


def series_window_s(step_s: int, window_s: int | None = None) -> int:
    """The window each point of a series covers: `window_s` clamped to at least the step, default SERIES_WINDOW_S."""
    return max(SERIES_WINDOW_S if window_s is None else int(window_s), int(step_s), 1)


def open_source(settings: ControlSettings, *, store: Samples | None = None) -> MetricSource:
    """Open the source `settings.metrics` names: the embedded store (default), Prometheus or impact.

    The embedded source reads `store` (the controller's `ControlStore`, or a reader's
    read-only `ControlHistory`); without one it opens the store `settings` name.
    """
    if settings.metrics == "impact":
        from control.impact_source import ImpactSource
        from flags.client import FlagsClient

        flags = FlagsClient(settings.flags_url, settings.admin_token, timeout=3.0, retries=1)
        return ImpactSource(flags, names=settings.impact_names)
    if settings.metrics == "prometheus":
        from control.errors import PermanentError
        from control.prometheus_source import PrometheusSource

        if not settings.prometheus_url:
            raise PermanentError("ROLLGUARD_METRICS=prometheus needs ROLLGUARD_PROMETHEUS_URL")
        return PrometheusSource(settings.prometheus_url)
    from control.embedded import EmbeddedSource
    from control.store import ControlStore

    return EmbeddedSource(store or ControlStore(settings.database_url))

"""The embedded metric source: derived series computed from samples in the controller's store.

The default source of the controller and the dashboard (`control.metrics.open_source`).
`control.scraper` stores raw samples; this module evaluates, in Python, the
PromQL of `control.promql` over them (each branch of `_compute` names the
query it mirrors), so that both sources agree for the same samples.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from control import derive, promql, rollups
from control.metrics import Histogram, Point, WindowValue, series_times, series_window_s
from control.store import RawSample

SeriesKey = tuple[str, str, str | None, str | None, str | None, str]  # target, name, fn, path, le, labels
Groups = Mapping[SeriesKey, Sequence[derive.Point]]

_INPUTS: dict[str, tuple[str, ...]] = {
    "call_reduction": (promql.REQUESTS, promql.BACKEND_CALLS),
    "error_rate": (promql.REQUESTS, promql.ERRORS),
    "cache_hit_rate": (promql.CACHE_HITS, promql.CACHE_MISSES),
    "p95_latency_s": (promql.CALL_SECONDS_BUCKET, promql.CALL_SECONDS_COUNT),
    "cache_bytes": (promql.CACHE_BYTES,),
    "rss_bytes": (promql.RSS,),
    "request_rate": (promql.REQUESTS,),
    "backend_rate": (promql.BACKEND_CALLS,),
    "breaker_bypass_rate": (promql.REQUESTS, promql.GATE_BYPASS),
}


class Samples(Protocol):
    """The scraped samples the source reads: a `ControlStore`, or a read-only `ControlHistory`."""

    def raw_samples(
        self,
        names: Sequence[str],
        *,
        start: datetime,
        end: datetime,
        fn: str | None = None,
        path: str | None = None,
    ) -> list[RawSample]: ...

    def rollup_samples(
        self,
        names: Sequence[str],
        *,
        resolution_s: int,
        start: datetime,
        end: datetime,
        fn: str | None = None,
        path: str | None = None,
        largest: Sequence[str] = (),
    ) -> list[RawSample]: ...

    def newest_sample_time(self) -> datetime | None: ...


class EmbeddedSource:
    """A `MetricSource` over the scraped samples of the controller's store."""

    def __init__(self, store: Samples, *, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self._clock = clock or (lambda: datetime.now(UTC))

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
        promql.check_metric(metric)
        end = end or self._clock()
        start = end - timedelta(seconds=window_s)
        rows = self._rows(metric, fn=fn, path=path, start=start, end=end)
        return compute(metric, group(rows), start=start.timestamp(), end=end.timestamp(), window_s=window_s)

    def data_time(self) -> datetime | None:
        # The scraper inserts one target's scrape at a time in time order, so every
        # sample stamped up to the newest one is already stored: a window ending
        # there reads the same samples now and in a later backtest.
        return self.store.newest_sample_time()

    def latency_histogram(
        self,
        *,
        fn: str | None = None,
        path: str | None = None,
        flag: str | None = None,
        window_s: int = 60,
        end: datetime | None = None,
    ) -> Histogram:
        end = end or self._clock()
        start = end - timedelta(seconds=window_s)
        rows = self._rows("p95_latency_s", fn=fn, path=path, start=start, end=end)
        return Histogram.of(bucket_increases(group(rows), start=start.timestamp(), end=end.timestamp()))

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
        promql.check_metric(metric)
        window_s = series_window_s(step_s, window_s)
        rows = self._rows(
            metric,
            fn=fn,
            path=path,
            start=start - timedelta(seconds=window_s),
            end=end,
            resolution_s=rollups.resolution_for(step_s, window_s),
        )
        groups = group(rows)
        times = {key: [t for t, _v in points] for key, points in groups.items()}
        out: list[Point] = []
        t, last = series_times(start, end, step_s)
        while t <= last:
            lo = t - window_s
            sliced = {
                key: points[bisect.bisect_left(times[key], lo) : bisect.bisect_right(times[key], t)]
                for key, points in groups.items()
            }
            value = compute(metric, sliced, start=lo, end=t, window_s=window_s).value
            if value is not None:
                out.append(Point(datetime.fromtimestamp(t, UTC), value))
            t += step_s
        return out

    def _rows(
        self,
        metric: str,
        *,
        fn: str | None,
        path: str | None,
        start: datetime,
        end: datetime,
        resolution_s: int | None = None,
    ) -> list[RawSample]:
        fn = fn if metric in promql.FN_AWARE else None
        path = path if metric in promql.PATH_AWARE else None
        if resolution_s is None:
            return self.store.raw_samples(_INPUTS[metric], start=start, end=end, fn=fn, path=path)
        # A long step reads the per-minute or per-5-minute rollups: the last sample of each
        # bucket for counters, its largest for gauges (what max_over_time needs).
        return self.store.rollup_samples(
            _INPUTS[metric],
            resolution_s=resolution_s,
            start=start,
            end=end,
            fn=fn,
            path=path,
            largest=(promql.CACHE_BYTES, promql.RSS),
        )


def bucket_increases(groups: Groups, *, start: float, end: float) -> dict[float, float]:
    """Return `sum by (le) (increase(optimizer_call_seconds_bucket[W]))` as {bound: increase}."""
    by_le: dict[float, float] = {}
    for key, points in groups.items():
        if key[1] != promql.CALL_SECONDS_BUCKET or key[4] is None:
            continue
        value = derive.increase(points, range_start=start, range_end=end)
        if value is not None:
            bound = derive.parse_le(key[4])
            by_le[bound] = by_le.get(bound, 0.0) + value
    return by_le


def _breaker_bypass_rate(groups: Groups, *, start: float, end: float) -> WindowValue:
    # B / (B + sum(increase(requests{path="optimized"}[W]))), B = breaker bypasses `or vector(0)`
    def total(wanted: Callable[[SeriesKey], bool]) -> float | None:
        chosen = (points for key, points in groups.items() if wanted(key))
        return derive.sum_increase(chosen, range_start=start, range_end=end)

    optimized = total(lambda key: key[1] == promql.REQUESTS and key[3] == "optimized")
    bypassed = total(lambda key: key[1] == promql.GATE_BYPASS and _is_breaker(key[5])) or 0.0
    if optimized is None or optimized + bypassed == 0:
        return WindowValue(None, 0)
    return WindowValue(bypassed / (optimized + bypassed), round(optimized + bypassed))


def _is_breaker(labels: str) -> bool:
    return bool(json.loads(labels).get("reason") != promql.NOT_BREAKER_REASON)


def group(rows: Sequence[RawSample]) -> dict[SeriesKey, list[derive.Point]]:
    """Group raw samples into series (target, name, fn, path, le), each oldest first."""
    groups: dict[SeriesKey, list[derive.Point]] = defaultdict(list)
    for row in rows:
        groups[row.series].append((row.ts, row.value))
    for points in groups.values():
        points.sort()
    return dict(groups)


def compute(metric: str, groups: Groups, *, start: float, end: float, window_s: int) -> WindowValue:
    """Evaluate `metric` over [start, end] from already-filtered series."""

    def inc(name: str) -> float | None:
        # sum(increase(name{...}[W]))
        return derive.sum_increase(
            (points for key, points in groups.items() if key[1] == name), range_start=start, range_end=end
        )

    if metric in ("call_reduction", "error_rate"):
        requests = inc(promql.REQUESTS)
        if not requests:
            return WindowValue(None, 0)
        numerator = inc(promql.BACKEND_CALLS if metric == "call_reduction" else promql.ERRORS) or 0.0
        # call_reduction: 1 - (sum(increase(backend)) or vector(0)) / sum(increase(requests))
        # error_rate:     (sum(increase(errors)) or vector(0)) / sum(increase(requests))
        ratio = numerator / requests
        return WindowValue(1 - ratio if metric == "call_reduction" else ratio, round(requests))
    if metric == "cache_hit_rate":
        # hits / (hits + misses), each `or vector(0)`
        hits, misses = inc(promql.CACHE_HITS) or 0.0, inc(promql.CACHE_MISSES) or 0.0
        total = hits + misses
        return WindowValue(hits / total if total else None, round(total))
    if metric == "p95_latency_s":
        # histogram_quantile(0.95, sum by (le) (increase(call_seconds_bucket[W])))
        by_le = bucket_increases(groups, start=start, end=end)
        count = inc(promql.CALL_SECONDS_COUNT)
        return WindowValue(derive.histogram_quantile(0.95, by_le.items()), round(count or 0.0))
    if metric == "breaker_bypass_rate":
        return _breaker_bypass_rate(groups, start=start, end=end)
    if metric in ("cache_bytes", "rss_bytes"):
        # sum(max_over_time(gauge[W])), samples max(count_over_time(gauge[W]))
        present = [points for points in groups.values() if points]
        if not present:
            return WindowValue(None, 0)
        return WindowValue(
            sum(derive.max_over_time(points) or 0.0 for points in present), max(len(p) for p in present)
        )
    # request_rate / backend_rate: sum(rate(x[W])) = sum(increase(x[W])) / W
    name = promql.REQUESTS if metric == "request_rate" else promql.BACKEND_CALLS
    total_inc = inc(name)
    if total_inc is None:
        return WindowValue(None, 0)
    return WindowValue(total_inc / window_s, round(total_inc))

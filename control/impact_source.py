"""The impact metric source: derived metrics from the impact metrics official Unleash SDKs send.

Opened by `control.metrics.open_source` when ROLLGUARD_METRICS=impact. An app in
any language records counters, gauges and histograms with its SDK's impact
metrics API, labelled with the state of a flag (`MetricFlagContext`); the SDK
posts them to the flag service, which keeps them (`flags.impact`). This source
reads them through the flag service's admin API (`FlagsClient.impact_samples`),
never its database, and computes the contract's derived metrics from them the
way the embedded source computes them from scrapes:

- the cohort comes from the flag's label: the flag state `disabled` is the
  `direct` path, any other (`enabled`, or the variant's name, `config` for a
  Rollguard flag) the `optimized` path; so cohorts need the flag's key (`flag`);
- which metric is which comes from `ImpactNames` (control.impact_names);
- a counter's or histogram's sample is its increase since the SDK's previous
  send, so a window's increase is the sum of the samples that arrived in it,
  (start, end]; a gauge's window value is its largest sample, summed over series;
- cache and memory metrics (cache_hit_rate, cache_bytes, rss_bytes) have no
  cohort, as in the contract: every sample of theirs counts;
- `fn` is not used: SDKs label impact metrics with flag states only.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from control import derive, promql
from control.errors import TemporaryError
from control.impact_names import ImpactNames
from control.metrics import Histogram, Point, WindowValue, series_times, series_window_s
from flags.client import FlagsClient, FlagsError, FlagsUnavailable, ImpactSample

DIRECT_STATE = "disabled"
_T = TypeVar("_T")


class ImpactSource:
    """A `MetricSource` over the impact metrics the flag service received."""

    def __init__(
        self,
        flags: FlagsClient,
        *,
        names: ImpactNames | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.flags = flags
        self.names = names or ImpactNames()
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
        samples = self._read(self.names.inputs(metric), end - timedelta(seconds=window_s), end)
        return self._compute(metric, samples, flag=flag, path=path, window_s=window_s)

    def data_time(self) -> datetime | None:
        # The newest arrival: a window ending there reads every sample that had arrived
        # by then, now and in a later backtest.
        return self._call(lambda: self.flags.impact_samples(self.names.all(), since=self._clock())).newest

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
        samples = self._read((self.names.latency,), end - timedelta(seconds=window_s), end)
        return Histogram.of(_bucket_sums(self._chosen(samples, self.names.latency, flag=flag, path=path)))

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
        first, last = series_times(start, end, step_s)
        if first > last:
            return []
        # Summed into steps that divide both the step and the window, each point's window
        # holds whole steps, so the sums are exact and far fewer samples travel.
        samples = self._read(
            self.names.inputs(metric),
            datetime.fromtimestamp(first - window_s, UTC),
            datetime.fromtimestamp(last, UTC),
            resolution_s=math.gcd(max(1, int(step_s)), window_s),
        )
        times = [s.time.timestamp() for s in samples]
        points: list[Point] = []
        t = first
        while t <= last:
            chosen = samples[bisect.bisect_right(times, t - window_s) : bisect.bisect_right(times, t)]
            value = self._compute(metric, chosen, flag=flag, path=path, window_s=window_s).value
            if value is not None:
                points.append(Point(datetime.fromtimestamp(t, UTC), value))
            t += step_s
        return points

    def _read(
        self, names: Sequence[str], start: datetime, end: datetime, *, resolution_s: int = 0
    ) -> list[ImpactSample]:
        answer = self._call(
            lambda: self.flags.impact_samples(names, since=start, until=end, resolution_s=resolution_s)
        )
        if answer.truncated:
            raise TemporaryError(
                f"more impact samples of {', '.join(names)} between {start} and {end} than one read returns"
            )
        return sorted(answer.samples, key=lambda s: s.time)

    def _call(self, request: Callable[[], _T]) -> _T:
        try:
            return request()
        except (FlagsUnavailable, FlagsError) as exc:
            raise TemporaryError(
                f"impact metrics from {self.flags.base_url} failed: {exc}", delay=2.0
            ) from exc

    def _chosen(
        self, samples: Iterable[ImpactSample], name: str, *, flag: str | None, path: str | None
    ) -> list[ImpactSample]:
        return [s for s in samples if s.name == name and _in_cohort(s, flag=flag, path=path)]

    def _compute(
        self,
        metric: str,
        samples: Sequence[ImpactSample],
        *,
        flag: str | None,
        path: str | None,
        window_s: int,
    ) -> WindowValue:
        names = self.names
        if metric not in promql.PATH_AWARE and metric != "breaker_bypass_rate":
            # Cache and memory metrics have no cohort in the contract: every sample counts.
            path, flag = None, None

        def total(name: str, cohort: str | None = path) -> float | None:
            chosen = self._chosen(samples, name, flag=flag, path=cohort)
            return sum(s.value or 0.0 for s in chosen) if chosen else None

        if metric in ("call_reduction", "error_rate"):
            requests = total(names.requests)
            # An app that never records backend calls has no call reduction (not 100%).
            unrecorded = metric == "call_reduction" and all(s.name != names.backend_calls for s in samples)
            if not requests or unrecorded:
                return WindowValue(None, 0)
            part = total(names.backend_calls if metric == "call_reduction" else names.errors) or 0.0
            ratio = part / requests
            return WindowValue(1 - ratio if metric == "call_reduction" else ratio, round(requests))
        if metric == "cache_hit_rate":
            hits, misses = total(names.cache_hits) or 0.0, total(names.cache_misses) or 0.0
            return WindowValue(hits / (hits + misses) if hits + misses else None, round(hits + misses))
        if metric == "p95_latency_s":
            chosen = self._chosen(samples, names.latency, flag=flag, path=path)
            count = sum(s.count or 0.0 for s in chosen)
            return WindowValue(derive.histogram_quantile(0.95, _bucket_sums(chosen).items()), round(count))
        if metric == "breaker_bypass_rate":
            optimized = total(names.requests, "optimized")
            bypassed = total(names.gate_bypass, "optimized") or 0.0
            if optimized is None or optimized + bypassed == 0:
                return WindowValue(None, 0)
            return WindowValue(bypassed / (optimized + bypassed), round(optimized + bypassed))
        if metric in ("cache_bytes", "rss_bytes"):
            gauge = names.cache_bytes if metric == "cache_bytes" else names.rss
            return _gauge(self._chosen(samples, gauge, flag=flag, path=path))
        requests_or_backend = total(names.requests if metric == "request_rate" else names.backend_calls)
        if requests_or_backend is None:
            return WindowValue(None, 0)
        return WindowValue(requests_or_backend / window_s, round(requests_or_backend))


def _in_cohort(sample: ImpactSample, *, flag: str | None, path: str | None) -> bool:
    if path is None:
        return flag is None or flag in sample.labels
    state = sample.labels.get(flag) if flag else None
    if state is None:
        return False
    return (state == DIRECT_STATE) == (path == "direct")


def _bucket_sums(samples: Iterable[ImpactSample]) -> dict[float, float]:
    by_le: dict[float, float] = {}
    for sample in samples:
        for le, count in sample.buckets:
            by_le[le] = by_le.get(le, 0.0) + count
    return by_le


def _gauge(samples: Sequence[ImpactSample]) -> WindowValue:
    # sum over series of max_over_time; a series is an instance and a label set.
    by_series: dict[tuple[object, ...], list[float]] = defaultdict(list)
    for sample in samples:
        key = (sample.app_name, sample.instance_id, tuple(sorted(sample.labels.items())))
        by_series[key].append(sample.value or 0.0)
    if not by_series:
        return WindowValue(None, 0)
    return WindowValue(sum(max(values) for values in by_series.values()), max(map(len, by_series.values())))

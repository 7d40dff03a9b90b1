"""The Prometheus metric source: the PromQL of `control.promql` run through `prometheus-api-client`.

Opened by `control.metrics.open_source` when ROLLGUARD_METRICS=prometheus. An
instant query at the window's end gives the value, a second one the sample
count; range queries give chart series. Connection failures and error answers
become `TemporaryError`, so the loop retries on its next tick.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from control import derive, promql
from control.errors import TemporaryError
from control.metrics import Histogram, Point, WindowValue, series_times, series_window_s


class PrometheusSource:
    """A `MetricSource` over a Prometheus server's HTTP API."""

    def __init__(
        self, url: str, *, timeout_s: float = 5.0, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._prom = PrometheusConnect(url=self.url, disable_ssl=True, timeout=timeout_s)
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
        at = (end or self._clock()).timestamp()
        value = self._scalar(promql.value_query(metric, fn=fn, path=path, window_s=window_s), at)
        samples = self._scalar(promql.samples_query(metric, fn=fn, path=path, window_s=window_s), at)
        return WindowValue(value, round(samples) if samples is not None else 0)

    def data_time(self) -> datetime | None:
        return None

    def latency_histogram(
        self,
        *,
        fn: str | None = None,
        path: str | None = None,
        flag: str | None = None,
        window_s: int = 60,
        end: datetime | None = None,
    ) -> Histogram:
        at = (end or self._clock()).timestamp()
        query = promql.latency_buckets_query(fn=fn, path=path, window_s=window_s)
        result = self._call(lambda: self._prom.custom_query(query, params={"time": f"{at:.3f}"}))
        counts: dict[float, float] = {}
        for entry in result:
            value = _finite(entry["value"][1])
            if value is not None and "le" in entry.get("metric", {}):
                counts[derive.parse_le(entry["metric"]["le"])] = value
        return Histogram.of(counts)

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
        query = promql.value_query(metric, fn=fn, path=path, window_s=series_window_s(step_s, window_s))
        first, last = series_times(start, end, step_s)
        if first > last:
            return []
        result = self._call(
            lambda: self._prom.custom_query_range(
                query,
                start_time=datetime.fromtimestamp(first, UTC),
                end_time=datetime.fromtimestamp(last, UTC),
                step=str(max(1, int(step_s))),
            )
        )
        points: list[Point] = []
        for entry in result[:1]:
            for ts, raw in entry.get("values", []):
                value = _finite(raw)
                if value is not None:
                    points.append(Point(datetime.fromtimestamp(float(ts), UTC), value))
        return points

    def _scalar(self, query: str, at: float) -> float | None:
        result = self._call(lambda: self._prom.custom_query(query, params={"time": f"{at:.3f}"}))
        if not result:
            return None
        return _finite(result[0]["value"][1])

    def _call(self, request: Callable[[], Any]) -> Any:
        try:
            return request()
        except (requests.RequestException, PrometheusApiClientException) as exc:
            raise TemporaryError(f"Prometheus at {self.url} failed: {exc}", delay=2.0) from exc


def _finite(raw: str) -> float | None:
    value = float(raw)
    return value if math.isfinite(value) else None

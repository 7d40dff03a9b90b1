"""The optimizer's Prometheus metrics (the metric contract) and the counts behind `stats()`.

`Optimizer` builds one `FnMetrics` for its function name and reports each
finished call with a single method call, under a single lock: a cache hit
costs one lock round instead of the three (request, hit, latency) that
`prometheus_client`'s own metric objects would take. A collector, registered
once per `CollectorRegistry`, renders every `FnMetrics` of that registry as the
contract's families at scrape time, so several optimized functions share one
registry without duplicate-registration errors. Optimizers with the same name
in one registry are summed into one series.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections import Counter as _Tally
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

PATHS = ("optimized", "direct")
OPTIMIZED, DIRECT = 0, 1


def _latency_buckets() -> tuple[float, ...]:
    # Geometric steps of 25% from 0.5 ms to past 5 s: a p95 read off them is within ~12%.
    buckets = [0.0005]
    while buckets[-1] < 5.0:
        buckets.append(round(buckets[-1] * 1.25, 6))
    return tuple(buckets)


LATENCY_BUCKETS = _latency_buckets()

_COUNTERS = {  # name: help
    "hits": "Optimized lookups served from the cache.",
    "misses": "Optimized lookups the cache could not serve.",
    "joins": "Calls that joined an in-flight call.",
    "batch_calls": "Batched backend calls.",
    "batch_keys": "Keys in batched backend calls.",
}
_METRIC_NAMES = {
    "hits": "optimizer_cache_hits",
    "misses": "optimizer_cache_misses",
    "joins": "optimizer_dedup_joins",
    "batch_calls": "optimizer_batch_calls",
    "batch_keys": "optimizer_batch_keys",
}


class FnMetrics:
    """The counts of one optimized function; every method is thread-safe."""

    def __init__(self, fn: str, registry: CollectorRegistry | None = None) -> None:
        self.fn = fn
        self._lock = threading.Lock()
        # Per path (index OPTIMIZED / DIRECT): requests, backend calls, errors, latency buckets and sum.
        self._requests = [0, 0]
        self._backend = [0, 0]
        self._errors = [0, 0]
        self._buckets = [[0] * (len(LATENCY_BUCKETS) + 1) for _ in PATHS]
        self._seconds = [0.0, 0.0]
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._bypass: dict[str, int] = {}
        self._tally: _Tally[str] = _Tally()
        self._cache_bytes: Callable[[], int] = lambda: 0
        self._cache_entries: Callable[[], int] = lambda: 0
        _collector_for(registry if registry is not None else REGISTRY).add(self)

    # reporting, from the call path

    def call(
        self,
        path: int,
        elapsed_s: float,
        *,
        ok: bool,
        requests: int = 1,
        hits: int = 0,
        misses: int = 0,
        backend: int = 0,
    ) -> None:
        """Record one finished logical call (or a `get_many` of `requests` keys) on `path`."""
        index = bisect.bisect_left(LATENCY_BUCKETS, elapsed_s)
        with self._lock:
            self._requests[path] += requests
            self._backend[path] += backend
            if not ok:
                self._errors[path] += 1
            self._buckets[path][index] += 1
            self._seconds[path] += elapsed_s
            if hits:
                self._counts["hits"] += hits
            if misses:
                self._counts["misses"] += misses

    def add(self, name: str, n: int = 1) -> None:
        """Add to `joins`, `batch_calls` or `batch_keys`."""
        with self._lock:
            self._counts[name] += n

    def backend_call(self, path: int, n: int = 1) -> None:
        with self._lock:
            self._backend[path] += n

    def bypass(self, reason: str) -> None:
        with self._lock:
            self._bypass[reason] = self._bypass.get(reason, 0) + 1

    def count(self, name: str, n: int = 1) -> None:
        """Add to a count of a rare event that has no metric (stale serves, refreshes, invalidations)."""
        with self._lock:
            self._tally[name] += n

    def watch_cache(self, cache_bytes: Callable[[], int], cache_entries: Callable[[], int]) -> None:
        """Read the cache's size at each scrape through these."""
        self._cache_bytes, self._cache_entries = cache_bytes, cache_entries

    # reading

    def snapshot(self) -> dict[str, Any]:
        """Return this function's counts: {"requests": {"optimized": n, "direct": n}, "hits": n, ...}.

        Every key is present, zero or not; `bypass` lists the reasons seen.
        """
        with self._lock:
            out: dict[str, Any] = {
                "requests": dict(zip(PATHS, self._requests, strict=True)),
                "backend_calls": dict(zip(PATHS, self._backend, strict=True)),
                "errors": dict(zip(PATHS, self._errors, strict=True)),
                **self._counts,
                "bypass": dict(self._bypass),
                **self._tally,
            }
        return out

    def _raw(
        self,
    ) -> tuple[list[int], list[int], list[int], list[list[int]], list[float], dict[str, int], dict[str, int]]:
        with self._lock:
            return (
                list(self._requests),
                list(self._backend),
                list(self._errors),
                [list(b) for b in self._buckets],
                list(self._seconds),
                dict(self._counts),
                dict(self._bypass),
            )


class _OptimizerCollector(Collector):
    """Renders every `FnMetrics` of one registry as the families of the metric contract."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fns: list[FnMetrics] = []

    def add(self, metrics: FnMetrics) -> None:
        with self._lock:
            self._fns.append(metrics)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            fns = list(self._fns)
        totals: dict[str, Any] = {}
        for m in fns:
            requests, backend, errors, buckets, seconds, counts, bypass = m._raw()
            t = totals.setdefault(
                m.fn,
                {
                    "requests": [0, 0],
                    "backend": [0, 0],
                    "errors": [0, 0],
                    "buckets": [[0] * (len(LATENCY_BUCKETS) + 1) for _ in PATHS],
                    "seconds": [0.0, 0.0],
                    "counts": dict.fromkeys(_COUNTERS, 0),
                    "bypass": {},
                    "bytes": 0,
                    "entries": 0,
                },
            )
            for i in range(len(PATHS)):
                t["requests"][i] += requests[i]
                t["backend"][i] += backend[i]
                t["errors"][i] += errors[i]
                t["seconds"][i] += seconds[i]
                t["buckets"][i] = [a + b for a, b in zip(t["buckets"][i], buckets[i], strict=True)]
            for name, value in counts.items():
                t["counts"][name] += value
            for reason, value in bypass.items():
                t["bypass"][reason] = t["bypass"].get(reason, 0) + value
            t["bytes"] += m._cache_bytes()
            t["entries"] += m._cache_entries()
        yield from _families(totals)

    def describe(self) -> Iterable[Metric]:
        # Names only, so the registry can refuse a clash; values come from collect().
        return list(_families({}))


def _families(totals: dict[str, Any]) -> Iterator[Metric]:
    by_path = (
        ("optimizer_requests", "Logical calls the app made.", "requests"),
        ("optimizer_backend_calls", "Calls that reached the backend function.", "backend"),
        ("optimizer_errors", "Logical calls that raised.", "errors"),
    )
    for name, help_text, field in by_path:
        family = CounterMetricFamily(name, help_text, labels=["fn", "path"])
        for fn, t in totals.items():
            for i, path in enumerate(PATHS):
                family.add_metric([fn, path], t[field][i])
        yield family
    for field, help_text in _COUNTERS.items():
        family = CounterMetricFamily(_METRIC_NAMES[field], help_text, labels=["fn"])
        for fn, t in totals.items():
            family.add_metric([fn], t["counts"][field])
        yield family
    histogram = HistogramMetricFamily(
        "optimizer_call_seconds", "Latency of logical calls.", labels=["fn", "path"]
    )
    for fn, t in totals.items():
        for i, path in enumerate(PATHS):
            cumulative, running = [], 0
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), t["buckets"][i], strict=True):
                running += count
                cumulative.append((_bound(bound), running))
            histogram.add_metric([fn, path], cumulative, sum_value=t["seconds"][i])
    yield histogram
    cache_bytes = GaugeMetricFamily(
        "optimizer_cache_bytes", "Bytes held by the in-process cache.", labels=["fn"]
    )
    entries = GaugeMetricFamily(
        "optimizer_cache_entries", "Entries held by the in-process cache.", labels=["fn"]
    )
    bypass = CounterMetricFamily(
        "optimizer_gate_bypass",
        "Calls of the optimized cohort sent direct, by reason.",
        labels=["fn", "reason"],
    )
    for fn, t in totals.items():
        cache_bytes.add_metric([fn], t["bytes"])
        entries.add_metric([fn], t["entries"])
        for reason, value in sorted(t["bypass"].items()):
            bypass.add_metric([fn, reason], value)
    yield cache_bytes
    yield entries
    yield bypass


def _bound(bound: float) -> str:
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, _OptimizerCollector] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()


def _collector_for(registry: CollectorRegistry) -> _OptimizerCollector:
    with _collectors_lock:
        collector = _collectors.get(registry)
        if collector is None:
            collector = _collectors[registry] = _OptimizerCollector()
            registry.register(collector)
        return collector

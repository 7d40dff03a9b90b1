"""The optimizer's Prometheus metrics (the project's metric contract) and the counts behind `stats()`.

`Optimizer` builds one `FnMetrics` for its function name and reports each
finished call with a single method call that adds to the calling thread's own
counts, without a lock (a cache hit through `prometheus_client`'s own metric
objects would take three locks: request, hit, latency); the threads' counts are
summed when read, at scrape time or by the circuit breaker. A collector, registered
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
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from optimizer.breaker import DIRECT as DIRECT
from optimizer.breaker import OPTIMIZED as OPTIMIZED
from optimizer.breaker import STATES, Outcomes

PATHS = ("optimized", "direct")


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


# The layout of one thread's counts (a flat list, so a call adds to it by index).
_N_BUCKETS = len(LATENCY_BUCKETS) + 1
_REQUESTS, _BACKEND, _ERRORS, _SECONDS = 0, 2, 4, 6  # each followed by its DIRECT slot
_FIELDS = tuple(_COUNTERS)  # hits, misses, joins, batch_calls, batch_keys
_COUNTS = 8
_BUCKETS = _COUNTS + len(_FIELDS)  # OPTIMIZED's buckets, then DIRECT's
# A fresh hit under the first bucket's bound: a request, a hit and a first-bucket call in one add,
# spread over the three when the counts are read.
_FAST_HITS = _BUCKETS + 2 * _N_BUCKETS
_SHARD_SIZE = _FAST_HITS + 1
_HITS = _COUNTS + _FIELDS.index("hits")
_MISSES = _COUNTS + _FIELDS.index("misses")
_FIRST_BOUND = LATENCY_BUCKETS[0]


class FnMetrics:
    """The counts of one optimized function; every method is thread-safe.

    Each thread adds to a list of its own (no lock, no lost update: only its
    owner writes it); readers sum the lists. A thread's list is folded into a
    retired total once the thread has ended, when the next new thread registers.
    Rare counts (bypass reasons, tallies) take a lock.
    """

    def __init__(self, fn: str, registry: CollectorRegistry | None = None) -> None:
        self.fn = fn
        self._lock = threading.Lock()
        self._local = threading.local()
        self._shards: list[tuple[threading.Thread, list[float]]] = []
        self._retired: list[float] = [0] * _SHARD_SIZE
        self._bypass: dict[str, int] = {}
        self._tally: _Tally[str] = _Tally()
        self._cache_bytes: Callable[[], int] = lambda: 0
        self._cache_entries: Callable[[], int] = lambda: 0
        self._breaker: Callable[[], tuple[Mapping[str, int], bool]] = lambda: ({}, False)
        self._ideal: Callable[[], tuple[int, int]] = lambda: (0, 0)
        _collector_for(registry if registry is not None else REGISTRY).add(self)

    # reporting, from the call path

    def hit(self, elapsed_s: float) -> None:
        """Record one optimized call served from the cache: the hot path, kept to a few list adds."""
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._register()
        shard[_SECONDS] += elapsed_s
        if elapsed_s <= _FIRST_BOUND:
            shard[_FAST_HITS] += 1
        else:
            shard[_REQUESTS] += 1
            shard[_HITS] += 1
            shard[_BUCKETS + bisect.bisect_left(LATENCY_BUCKETS, elapsed_s)] += 1

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
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._register()
        shard[_REQUESTS + path] += requests
        shard[_BACKEND + path] += backend
        if not ok:
            shard[_ERRORS + path] += 1
        shard[_SECONDS + path] += elapsed_s
        shard[_BUCKETS + path * _N_BUCKETS + bisect.bisect_left(LATENCY_BUCKETS, elapsed_s)] += 1
        shard[_HITS] += hits
        shard[_MISSES] += misses

    def add(self, name: str, n: int = 1) -> None:
        """Add to `joins`, `batch_calls` or `batch_keys`."""
        self._shard()[_COUNTS + _FIELDS.index(name)] += n

    def backend_call(self, path: int, n: int = 1) -> None:
        self._shard()[_BACKEND + path] += n

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

    def watch_breaker(self, breaker: Callable[[], tuple[Mapping[str, int], bool]]) -> None:
        """Read the breaker's transition counts by state, and whether it is not closed, at each scrape."""
        self._breaker = breaker

    def watch_ideal(self, opened: Callable[[], tuple[int, int]]) -> None:
        """Read the ideal's windows opened so far (by path) at each scrape."""
        self._ideal = opened

    # per-thread counts

    def _shard(self) -> list[float]:
        try:
            shard: list[float] = self._local.shard
        except AttributeError:
            shard = self._register()
        return shard

    def _register(self) -> list[float]:
        shard: list[float] = [0] * _SHARD_SIZE
        self._local.shard = shard
        with self._lock:
            live = []
            for thread, counts in self._shards:
                if thread.is_alive():
                    live.append((thread, counts))
                else:  # it will never write again: fold it in, so threads that come and go cost nothing
                    self._retired = [a + b for a, b in zip(self._retired, counts, strict=True)]
            live.append((threading.current_thread(), shard))
            self._shards = live
        return shard

    def _total(self) -> list[float]:
        with self._lock:
            shards = [counts for _, counts in self._shards]
            total = list(self._retired)
        for counts in shards:
            total = [a + b for a, b in zip(total, counts, strict=True)]
        fast = total[_FAST_HITS]
        total[_REQUESTS] += fast
        total[_HITS] += fast
        total[_BUCKETS] += fast
        total[_FAST_HITS] = 0
        return total

    # reading

    def outcomes(self) -> Outcomes:
        """Cumulative calls, errors and latency buckets per path: what the circuit breaker judges."""
        t = self._total()
        buckets = (
            tuple(int(n) for n in t[_BUCKETS : _BUCKETS + _N_BUCKETS]),
            tuple(int(n) for n in t[_BUCKETS + _N_BUCKETS : _FAST_HITS]),
        )
        errors = (int(t[_ERRORS + OPTIMIZED]), int(t[_ERRORS + DIRECT]))
        return Outcomes(calls=(sum(buckets[0]), sum(buckets[1])), errors=errors, buckets=buckets)

    def snapshot(self) -> dict[str, Any]:
        """Return this function's counts: {"requests": {"optimized": n, "direct": n}, "hits": n, ...}.

        Every key is present, zero or not; `bypass` lists the reasons seen.
        """
        requests, backend, errors, _, _, counts, bypass = self._raw()
        with self._lock:
            tally = dict(self._tally)
        return {
            "requests": dict(zip(PATHS, requests, strict=True)),
            "backend_calls": dict(zip(PATHS, backend, strict=True)),
            "errors": dict(zip(PATHS, errors, strict=True)),
            **counts,
            "bypass": bypass,
            **tally,
        }

    def _raw(
        self,
    ) -> tuple[list[int], list[int], list[int], list[list[int]], list[float], dict[str, int], dict[str, int]]:
        t = self._total()

        def pair(at: int) -> list[int]:
            return [int(t[at + OPTIMIZED]), int(t[at + DIRECT])]

        with self._lock:
            bypass = dict(self._bypass)
        return (
            pair(_REQUESTS),
            pair(_BACKEND),
            pair(_ERRORS),
            [
                [int(n) for n in t[_BUCKETS : _BUCKETS + _N_BUCKETS]],
                [int(n) for n in t[_BUCKETS + _N_BUCKETS : _FAST_HITS]],
            ],
            [t[_SECONDS + OPTIMIZED], t[_SECONDS + DIRECT]],
            {name: int(t[_COUNTS + i]) for i, name in enumerate(_FIELDS)},
            bypass,
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
                    "transitions": dict.fromkeys(STATES, 0),
                    "not_closed": 0,
                    "ideal": [0, 0],
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
            transitions, not_closed = m._breaker()
            for state, value in transitions.items():
                t["transitions"][state] += value
            t["not_closed"] += not_closed
            for i, opened in enumerate(m._ideal()):
                t["ideal"][i] += opened
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
    transitions = CounterMetricFamily(
        "optimizer_breaker_transitions",
        "Transitions of the local circuit breaker, by the state entered.",
        labels=["fn", "state"],
    )
    breaker_open = GaugeMetricFamily(
        "optimizer_breaker_open",
        "1 while the local circuit breaker is open or half-open (sends calls direct), else 0.",
        labels=["fn"],
    )
    for fn, t in totals.items():
        for state, value in t["transitions"].items():
            transitions.add_metric([fn, state], value)
        breaker_open.add_metric([fn], min(1, t["not_closed"]))
    yield transitions
    yield breaker_open
    ideal = CounterMetricFamily(
        "optimizer_ideal_fetches",
        "Key fetches an ideal cache fresh for ttl_s + stale_s would have made (C_min), by the path of "
        "the call that needed each.",
        labels=["fn", "path"],
    )
    for fn, t in totals.items():
        for i, path in enumerate(PATHS):
            ideal.add_metric([fn, path], t["ideal"][i])
    yield ideal


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

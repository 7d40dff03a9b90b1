"""The optimizer's Prometheus metrics (DESIGN.md's metric contract) and the counts behind `stats()`.

`Optimizer` builds one `FnMetrics` for its function name. The metric families
are created once per `CollectorRegistry` and shared by every optimizer
registered there, so several optimized functions in one process never hit a
duplicate-registration error; each optimizer binds its own `fn` label.
Label children are bound once here so the hot path only increments.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter as _Tally
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

PATHS = ("optimized", "direct")


def _latency_buckets() -> tuple[float, ...]:
    # Geometric steps of 25% from 0.5 ms to past 5 s: a p95 read off them is within ~12%.
    buckets = [0.0005]
    while buckets[-1] < 5.0:
        buckets.append(round(buckets[-1] * 1.25, 6))
    return tuple(buckets)


LATENCY_BUCKETS = _latency_buckets()


@dataclass(frozen=True)
class _Families:
    requests: Counter
    backend_calls: Counter
    hits: Counter
    misses: Counter
    joins: Counter
    batch_calls: Counter
    batch_keys: Counter
    errors: Counter
    call_seconds: Histogram
    cache_bytes: Gauge
    cache_entries: Gauge
    bypass: Counter


_families: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_families_lock = threading.Lock()


def _families_for(registry: CollectorRegistry) -> _Families:
    with _families_lock:
        families = _families.get(registry)
        if families is None:
            families = _Families(
                requests=Counter(
                    "optimizer_requests", "Logical calls the app made.", ["fn", "path"], registry=registry
                ),
                backend_calls=Counter(
                    "optimizer_backend_calls",
                    "Calls that reached the backend function.",
                    ["fn", "path"],
                    registry=registry,
                ),
                hits=Counter(
                    "optimizer_cache_hits",
                    "Optimized lookups served from the cache.",
                    ["fn"],
                    registry=registry,
                ),
                misses=Counter(
                    "optimizer_cache_misses",
                    "Optimized lookups the cache could not serve.",
                    ["fn"],
                    registry=registry,
                ),
                joins=Counter(
                    "optimizer_dedup_joins", "Calls that joined an in-flight call.", ["fn"], registry=registry
                ),
                batch_calls=Counter(
                    "optimizer_batch_calls", "Batched backend calls.", ["fn"], registry=registry
                ),
                batch_keys=Counter(
                    "optimizer_batch_keys", "Keys in batched backend calls.", ["fn"], registry=registry
                ),
                errors=Counter(
                    "optimizer_errors", "Logical calls that raised.", ["fn", "path"], registry=registry
                ),
                call_seconds=Histogram(
                    "optimizer_call_seconds",
                    "Latency of logical calls.",
                    ["fn", "path"],
                    buckets=LATENCY_BUCKETS,
                    registry=registry,
                ),
                cache_bytes=Gauge(
                    "optimizer_cache_bytes", "Bytes held by the in-process cache.", ["fn"], registry=registry
                ),
                cache_entries=Gauge(
                    "optimizer_cache_entries",
                    "Entries held by the in-process cache.",
                    ["fn"],
                    registry=registry,
                ),
                bypass=Counter(
                    "optimizer_gate_bypass",
                    "Calls of the optimized cohort sent direct, by reason.",
                    ["fn", "reason"],
                    registry=registry,
                ),
            )
            _families[registry] = families
        return families


class FnMetrics:
    """The metrics of one optimized function, plus plain counts for `Optimizer.stats()`."""

    def __init__(self, fn: str, registry: CollectorRegistry | None = None) -> None:
        families = _families_for(registry if registry is not None else REGISTRY)
        self._families = families
        self._fn = fn
        self.requests = {p: families.requests.labels(fn, p) for p in PATHS}
        self.backend_calls = {p: families.backend_calls.labels(fn, p) for p in PATHS}
        self.errors = {p: families.errors.labels(fn, p) for p in PATHS}
        self.call_seconds = {p: families.call_seconds.labels(fn, p) for p in PATHS}
        self.hits = families.hits.labels(fn)
        self.misses = families.misses.labels(fn)
        self.joins = families.joins.labels(fn)
        self.batch_calls = families.batch_calls.labels(fn)
        self.batch_keys = families.batch_keys.labels(fn)
        self.cache_bytes = families.cache_bytes.labels(fn)
        self.cache_entries = families.cache_entries.labels(fn)
        self._bypass: dict[str, Any] = {}
        self._tally: _Tally[str] = _Tally()
        self._lock = threading.Lock()

    def count(self, name: str, n: int = 1) -> None:
        """Add to a count of a rare event that has no metric (stale serves, refreshes, invalidations)."""
        with self._lock:
            self._tally[name] += n

    def bypass(self, reason: str) -> None:
        child = self._bypass.get(reason)
        if child is None:
            child = self._bypass[reason] = self._families.bypass.labels(self._fn, reason)
        child.inc()

    def snapshot(self) -> dict[str, Any]:
        """Return this function's counts: {"requests": {"optimized": n, ...}, "hits": n, "bypass": {...}, ...}.

        Read back from the metric families (so the hot path counts once). Every key is present,
        zero or not; `bypass` lists the reasons seen. Two optimizers with the same name in one
        registry share these counts, as they share the metrics.
        """
        out: dict[str, Any] = {
            key: dict.fromkeys(PATHS, 0) for key in ("requests", "backend_calls", "errors")
        }
        out.update(dict.fromkeys(("hits", "misses", "joins", "batch_calls", "batch_keys"), 0), bypass={})
        for key, family in _STATS.items():
            for metric in getattr(self._families, family).collect():
                for sample in metric.samples:
                    if sample.labels.get("fn") != self._fn or not sample.name.endswith("_total"):
                        continue
                    value = int(sample.value)
                    sub = sample.labels.get("path") or sample.labels.get("reason")
                    if sub is None:
                        out[key] = value
                    else:
                        out.setdefault(key, {})[sub] = value
        with self._lock:
            out.update(self._tally)
        return out


# stats() key -> _Families field
_STATS = {
    "requests": "requests",
    "backend_calls": "backend_calls",
    "errors": "errors",
    "hits": "hits",
    "misses": "misses",
    "joins": "joins",
    "batch_calls": "batch_calls",
    "batch_keys": "batch_keys",
    "bypass": "bypass",
}

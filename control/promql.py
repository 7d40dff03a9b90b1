"""The derived series of the metric contract as PromQL: one query for the value, one for the sample count.

The Prometheus source runs these queries; the embedded source computes the
same expressions from stored samples with `control.derive` (see
`control.embedded`, which names the query each computation mirrors). Other
parts may import `value_query` to show or reuse the expressions.

| metric         | value (PromQL, window W, selector S = {fn=..., path=...})                         | samples                     |
| -------------- | --------------------------------------------------------------------------------- | --------------------------- |
| call_reduction | 1 - (sum(increase(backend_calls[W])) or vector(0)) / sum(increase(requests[W]))   | sum(increase(requests[W]))  |
| cache_hit_rate | hits / (hits + misses), each `sum(increase(...[W])) or vector(0)` (fn only)        | hits + misses               |
| error_rate     | (sum(increase(errors[W])) or vector(0)) / sum(increase(requests[W]))              | sum(increase(requests[W]))  |
| p95_latency_s  | histogram_quantile(0.95, sum by (le) (increase(call_seconds_bucket[W])))          | sum(increase(call_seconds_count[W])) |
| cache_bytes    | sum(max_over_time(optimizer_cache_bytes{fn}[W]))                                  | max(count_over_time(...[W]))   |
| rss_bytes      | sum(max_over_time(process_resident_memory_bytes[W]))                              | max(count_over_time(...[W]))   |
| breaker_bypass_rate | B / (B + sum(increase(requests{fn,path="optimized"}[W]))), B = bypasses by the breaker | B + optimized requests |
| request_rate   | sum(rate(requests[W])) (calls/s, for charts)                                      | sum(increase(requests[W]))  |
| backend_rate   | sum(rate(backend_calls[W])) (calls/s, for charts)                                 | sum(increase(backend_calls[W])) |

A ratio whose denominator is 0 or absent is "no value" (None), as PromQL's NaN
or empty result is. B is `(sum(increase(optimizer_gate_bypass_total{fn,reason!="flag_unavailable"}[W]))
or vector(0))`: the optimized cohort's calls the local circuit breaker sent
direct (every bypass reason but an SDK that has not loaded the flag yet).
"""

from __future__ import annotations

from control.errors import UnknownMetric

REQUESTS = "optimizer_requests_total"
BACKEND_CALLS = "optimizer_backend_calls_total"
ERRORS = "optimizer_errors_total"
CACHE_HITS = "optimizer_cache_hits_total"
CACHE_MISSES = "optimizer_cache_misses_total"
CALL_SECONDS = "optimizer_call_seconds"
CALL_SECONDS_BUCKET = "optimizer_call_seconds_bucket"
CALL_SECONDS_COUNT = "optimizer_call_seconds_count"
CACHE_BYTES = "optimizer_cache_bytes"
GATE_BYPASS = "optimizer_gate_bypass_total"
#: The bypass reason that is not the breaker's: the SDK has not loaded the flag yet.
NOT_BREAKER_REASON = "flag_unavailable"
RSS = "process_resident_memory_bytes"

DERIVED_METRICS = (
    "call_reduction",
    "cache_hit_rate",
    "error_rate",
    "p95_latency_s",
    "cache_bytes",
    "rss_bytes",
    "request_rate",
    "backend_rate",
    "breaker_bypass_rate",
)
#: Derived metrics whose inputs carry the `path` (cohort) label.
PATH_AWARE = frozenset({"call_reduction", "error_rate", "p95_latency_s", "request_rate", "backend_rate"})
#: Derived metrics whose inputs carry the `fn` label.
FN_AWARE = frozenset(DERIVED_METRICS) - {"rss_bytes"}

#: The contract's sample names the embedded scraper keeps (everything else is dropped).
STORED_SAMPLE_NAMES = frozenset(
    {
        REQUESTS,
        BACKEND_CALLS,
        ERRORS,
        CACHE_HITS,
        CACHE_MISSES,
        "optimizer_dedup_joins_total",
        "optimizer_batch_calls_total",
        "optimizer_batch_keys_total",
        "optimizer_ideal_fetches_total",
        CALL_SECONDS_BUCKET,
        CALL_SECONDS_COUNT,
        "optimizer_call_seconds_sum",
        CACHE_BYTES,
        "optimizer_cache_entries",
        GATE_BYPASS,
        "portal_page_loads_total",
        "portal_db_queries_total",
        "portal_db_pool_in_use",
        RSS,
    }
)


def check_metric(metric: str) -> None:
    """Raise UnknownMetric unless `metric` is one of DERIVED_METRICS."""
    if metric not in DERIVED_METRICS:
        raise UnknownMetric(f"unknown metric {metric!r}; known: {', '.join(DERIVED_METRICS)}")


def selector(name: str, *, fn: str | None = None, path: str | None = None) -> str:
    """Return `name{fn="...",path="..."}` with the given labels (none when both are None)."""
    matchers = [f'{label}="{_escape(value)}"' for label, value in (("fn", fn), ("path", path)) if value]
    return f"{name}{{{','.join(matchers)}}}" if matchers else name


def value_query(metric: str, *, fn: str | None, path: str | None, window_s: int) -> str:
    """Return the PromQL giving `metric`'s value over the `window_s` seconds ending at the query time."""
    check_metric(metric)
    fn, path = _labels(metric, fn, path)
    w = f"[{int(window_s)}s]"

    def inc(name: str) -> str:
        return f"sum(increase({selector(name, fn=fn, path=path)}{w}))"

    if metric == "call_reduction":
        return f"1 - ({inc(BACKEND_CALLS)} or vector(0)) / {inc(REQUESTS)}"
    if metric == "error_rate":
        return f"({inc(ERRORS)} or vector(0)) / {inc(REQUESTS)}"
    if metric == "cache_hit_rate":
        hits, misses = f"({inc(CACHE_HITS)} or vector(0))", f"({inc(CACHE_MISSES)} or vector(0))"
        return f"{hits} / ({hits} + {misses})"
    if metric == "p95_latency_s":
        buckets = f"sum by (le) (increase({selector(CALL_SECONDS_BUCKET, fn=fn, path=path)}{w}))"
        return f"histogram_quantile(0.95, {buckets})"
    if metric == "cache_bytes":
        return f"sum(max_over_time({selector(CACHE_BYTES, fn=fn)}{w}))"
    if metric == "rss_bytes":
        return f"sum(max_over_time({RSS}{w}))"
    if metric == "request_rate":
        return f"sum(rate({selector(REQUESTS, fn=fn, path=path)}{w}))"
    if metric == "breaker_bypass_rate":
        bypassed = _breaker_bypasses(fn, w)
        return f"{bypassed} / ({bypassed} + {_inc_optimized(fn, w)})"
    return f"sum(rate({selector(BACKEND_CALLS, fn=fn, path=path)}{w}))"


def samples_query(metric: str, *, fn: str | None, path: str | None, window_s: int) -> str:
    """Return the PromQL counting `metric`'s samples: logical calls, or scrapes for gauges."""
    check_metric(metric)
    fn, path = _labels(metric, fn, path)
    w = f"[{int(window_s)}s]"

    def inc(name: str) -> str:
        return f"sum(increase({selector(name, fn=fn, path=path)}{w}))"

    if metric in ("call_reduction", "error_rate", "request_rate"):
        return inc(REQUESTS)
    if metric == "backend_rate":
        return inc(BACKEND_CALLS)
    if metric == "cache_hit_rate":
        return f"({inc(CACHE_HITS)} or vector(0)) + ({inc(CACHE_MISSES)} or vector(0))"
    if metric == "p95_latency_s":
        return inc(CALL_SECONDS_COUNT)
    if metric == "cache_bytes":
        return f"max(count_over_time({selector(CACHE_BYTES, fn=fn)}{w}))"
    if metric == "breaker_bypass_rate":
        return f"{_breaker_bypasses(fn, w)} + {_inc_optimized(fn, w)}"
    return f"max(count_over_time({RSS}{w}))"


def latency_buckets_query(*, fn: str | None, path: str | None, window_s: int) -> str:
    """Return the PromQL of the latency histogram's buckets (one sample per `le`) over the window."""
    return f"sum by (le) (increase({selector(CALL_SECONDS_BUCKET, fn=fn, path=path)}[{int(window_s)}s]))"


def _inc_optimized(fn: str | None, w: str) -> str:
    return f"sum(increase({selector(REQUESTS, fn=fn, path='optimized')}{w}))"


def _breaker_bypasses(fn: str | None, w: str) -> str:
    matchers = ([f'fn="{_escape(fn)}"'] if fn else []) + [f'reason!="{NOT_BREAKER_REASON}"']
    return f"(sum(increase({GATE_BYPASS}{{{','.join(matchers)}}}{w})) or vector(0))"


def _labels(metric: str, fn: str | None, path: str | None) -> tuple[str | None, str | None]:
    return (fn if metric in FN_AWARE else None, path if metric in PATH_AWARE else None)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

"""Recording rules: the derived series of the metric contract, per wrapped function.

Pure. `alerts.rules` adds one group of these per `fn` the flags wrap and
compares the recorded series in its alerts; `record_name` is the naming both
share (`level:metric:operation`, as Prometheus' naming practice suggests).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from alerts.windows import BurnWindow, duration

THRESHOLD_RATE_WINDOW_S = 60
"""Rate window of the series that threshold alerts compare; `for:` adds the guardrail's window."""
RECORDED_THRESHOLD_WINDOWS_S = (60, 300)


def record_name(metric: str, *, per_path: bool, window_s: int | None = None) -> str:
    """Name of the recorded series for a derived metric (`fn_path:optimizer_error_ratio:rate5m`)."""
    level = "fn_path" if per_path else "fn"
    rate = f"rate{duration(window_s)}" if window_s else ""
    names = {
        "error_rate": f"{level}:optimizer_error_ratio:{rate}",
        "p95_latency_s": f"{level}:optimizer_call_seconds_p95:{rate}",
        "cache_hit_rate": f"fn:optimizer_cache_hit_ratio:{rate}",
        "call_reduction": f"{level}:optimizer_call_reduction:{rate}",
        "cache_bytes": "fn:optimizer_cache_bytes:sum",
        "rss_bytes": "rollguard:process_resident_memory_bytes:sum",
    }
    return names[metric]


def recording_rules(fn: str, windows: Sequence[BurnWindow]) -> list[dict[str, Any]]:
    """Record the derived series of `fn`, the error ratio over every window of `windows`."""
    sel = f"{{fn={quote(fn)}}}"
    error_windows = sorted({w for tier in windows for w in (tier.long_s, tier.short_s)})
    rules: list[dict[str, Any]] = []
    for per_path in (True, False):
        by = "fn, path" if per_path else "fn"
        for window_s in sorted({*error_windows, *RECORDED_THRESHOLD_WINDOWS_S}):
            w = duration(window_s)
            rules.append(
                _record(
                    record_name("error_rate", per_path=per_path, window_s=window_s),
                    f"sum by ({by}) (rate(optimizer_errors_total{sel}[{w}]))\n"
                    f"/\nsum by ({by}) (rate(optimizer_requests_total{sel}[{w}]))",
                )
            )
        for window_s in RECORDED_THRESHOLD_WINDOWS_S:
            w = duration(window_s)
            rules.append(
                _record(
                    record_name("p95_latency_s", per_path=per_path, window_s=window_s),
                    f"histogram_quantile(0.95, sum by ({by}, le) (rate(optimizer_call_seconds_bucket{sel}[{w}])))",
                )
            )
            rules.append(
                _record(
                    record_name("call_reduction", per_path=per_path, window_s=window_s),
                    f"1 - (\n  sum by ({by}) (rate(optimizer_backend_calls_total{sel}[{w}]))\n"
                    f"  /\n  sum by ({by}) (rate(optimizer_requests_total{sel}[{w}]))\n)",
                )
            )
    for window_s in RECORDED_THRESHOLD_WINDOWS_S:
        w = duration(window_s)
        hits = f"sum by (fn) (rate(optimizer_cache_hits_total{sel}[{w}]))"
        misses = f"sum by (fn) (rate(optimizer_cache_misses_total{sel}[{w}]))"
        rules.append(
            _record(
                record_name("cache_hit_rate", per_path=False, window_s=window_s),
                f"{hits}\n/\n({hits} + {misses})",
            )
        )
    # Summed over instances, as the controller's metric sources compute cache_bytes,
    # so that one guardrail means the same to both.
    rules.append(
        _record(record_name("cache_bytes", per_path=False), f"sum by (fn) (optimizer_cache_bytes{sel})")
    )
    return rules


def process_rules(rss_selector: str) -> list[dict[str, Any]]:
    """Record the resident memory of the processes `rss_selector` matches."""
    return [
        _record(
            record_name("rss_bytes", per_path=False),
            f"sum(process_resident_memory_bytes{{{rss_selector}}})",
        )
    ]


def _record(name: str, expr: str) -> dict[str, Any]:
    return {"record": name, "expr": expr}


def quote(value: str) -> str:
    """Quote a label value for PromQL."""
    # JSON string escapes are valid PromQL string escapes.
    return json.dumps(value)


def number(value: float) -> str:
    """Format a threshold for PromQL and annotations, without float noise."""
    return f"{value:.12g}"

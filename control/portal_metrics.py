"""What the demo and the rollback benchmark read from an app's /metrics: optimized calls and breaker trips.

The local circuit breaker's trips show in the metric contract as calls it sent
direct (`optimizer_gate_bypass_total{reason}` with any reason but
`flag_unavailable`, which is an SDK that has not loaded the flag yet); a
counter with `breaker` in its name (transitions, trips) counts too, so that
either exposition is read. Pure: text in, numbers out.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

NOT_BREAKER_REASON = "flag_unavailable"


@dataclass(frozen=True)
class GateCounts:
    """Totals since the app started, for one wrapped function."""

    optimized_calls: float
    breaker_activity: float


def gate_counts(text: str, *, fn: str) -> GateCounts:
    """Sum the optimized path's calls and the breaker's bypasses/transitions of `fn` in a /metrics text."""
    optimized = breaker = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("fn", fn) != fn or sample.name.endswith("_created"):
                continue
            if sample.name == "optimizer_requests_total" and sample.labels.get("path") == "optimized":
                optimized += sample.value
            elif sample.name == "optimizer_gate_bypass_total":
                breaker += 0.0 if sample.labels.get("reason") == NOT_BREAKER_REASON else sample.value
            elif "breaker" in sample.name and sample.name.endswith("_total"):
                breaker += sample.value
    return GateCounts(optimized, breaker)

"""The headline of a flag: what the optimization saved so far, from the app's own counters.

Computed from the totals `/metrics` exposes (summed over the app's instances),
not from a window: the flag page shows it from the newest scrape in the
controller's store (`totals_from_samples`), and `rollguard up` prints it at the
end of the story from the portal's `/metrics` (`totals_from_text`), so both
give the numbers an operator could compute from `/metrics` by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from control import RawSample
from flags.client import Flag

REQUESTS = "optimizer_requests_total"
BACKEND = "optimizer_backend_calls_total"
ERRORS = "optimizer_errors_total"
HITS = "optimizer_cache_hits_total"
MISSES = "optimizer_cache_misses_total"
CACHE_BYTES = "optimizer_cache_bytes"
BATCH_CALLS = "optimizer_batch_calls_total"
BATCH_KEYS = "optimizer_batch_keys_total"
IDEAL = "optimizer_ideal_fetches_total"
NAMES = (REQUESTS, BACKEND, ERRORS, HITS, MISSES, CACHE_BYTES, BATCH_CALLS, BATCH_KEYS, IDEAL)
PATHS = ("optimized", "direct")

Totals = Mapping[tuple[str, str | None], float]  # (metric name, path label) -> sum over instances


def totals_from_text(text: str, *, fn: str | None) -> dict[tuple[str, str | None], float]:
    """Sum the headline's metrics of one `/metrics` exposition by name and path, for `fn` (None: all)."""
    totals: dict[tuple[str, str | None], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in NAMES and (fn is None or sample.labels.get("fn") == fn):
                key = (sample.name, sample.labels.get("path"))
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def totals_from_samples(samples: Iterable[RawSample]) -> dict[tuple[str, str | None], float]:
    """The same sums from stored samples: each instance's newest scrape only."""
    newest: dict[str, float] = {}
    rows = list(samples)
    for row in rows:
        newest[row.target] = max(newest.get(row.target, row.ts), row.ts)
    totals: dict[tuple[str, str | None], float] = {}
    for row in rows:
        if row.ts == newest[row.target] and row.name in NAMES:
            key = (row.name, row.path)
            totals[key] = totals.get(key, 0.0) + row.value
    return totals


@dataclass(frozen=True)
class Headline:
    """The flag's results so far; None where the counters give no answer yet."""

    calls_optimized: int
    backend_optimized: int
    backend_saved: int | None
    call_reduction: float | None
    hit_rate: float | None
    eta: float | None
    cache_bytes: float | None
    cache_budget_bytes: float | None
    error_rate: dict[str, float | None]

    def lines(self) -> list[str]:
        """The headline as text, one figure a line (what `rollguard up` prints)."""
        errors = ", ".join(f"{path} {percent(rate)}" for path, rate in self.error_rate.items())
        return [
            f"backend calls saved against direct: {count(self.backend_saved)} "
            f"({self.calls_optimized:,} optimized calls made {self.backend_optimized:,} backend calls)",
            f"call reduction (optimized path): {percent(self.call_reduction)}",
            f"cache hit rate: {percent(self.hit_rate)}",
            f"eta, live efficiency (optimized path): {ratio(self.eta)}",
            f"cache memory: {megabytes(self.cache_bytes)} of {megabytes(self.cache_budget_bytes)}",
            f"error rate: {errors}",
        ]


def headline(totals: Totals, flag: Flag | None = None) -> Headline:
    """The headline from summed counters (see the module docstring) and the flag's cache budget."""

    def get(name: str, path: str | None = None) -> float:
        return totals.get((name, path), 0.0)

    calls, backend = get(REQUESTS, "optimized"), get(BACKEND, "optimized")
    direct_calls, direct_backend = get(REQUESTS, "direct"), get(BACKEND, "direct")
    # What the optimized calls would have cost on the direct path, at its own backend calls per call.
    per_call_direct = direct_backend / direct_calls if direct_calls else 1.0
    hits, misses = get(HITS), get(MISSES)
    cache = totals.get((CACHE_BYTES, None))
    return Headline(
        calls_optimized=round(calls),
        backend_optimized=round(backend),
        backend_saved=round(calls * per_call_direct - backend) if calls else None,
        call_reduction=1 - backend / calls if calls else None,
        hit_rate=hits / (hits + misses) if hits + misses else None,
        eta=eta(totals),
        cache_bytes=cache,
        cache_budget_bytes=cache_budget(flag),
        error_rate={
            path: get(ERRORS, path) / get(REQUESTS, path) if get(REQUESTS, path) else None for path in PATHS
        },
    )


def eta(totals: Totals, path: str = "optimized") -> float | None:
    """How much of the ideal call reduction `path` achieves (docs/eta.md), None without the ideal's count.

    eta = (N - C_actual) / (N - C_min): N the calls, C_actual the keys the backend
    fetched (backend calls - batch calls + batch keys), C_min the fetches of an
    ideal cache fresh within the flag's ttl_s + stale_s. Only the optimized path
    batches, and the batch counters carry no path.
    """
    ideal = totals.get((IDEAL, path))
    calls = totals.get((REQUESTS, path), 0.0)
    if ideal is None or calls <= ideal:
        return None
    batched = totals.get((BATCH_KEYS, None), 0.0) - totals.get((BATCH_CALLS, None), 0.0)
    actual = totals.get((BACKEND, path), 0.0) + (batched if path == "optimized" else 0.0)
    return (calls - actual) / (calls - ideal)


def cache_budget(flag: Flag | None) -> float | None:
    """The flag's cache budget: its payload's `max_bytes`, else its tightest cache_bytes guardrail."""
    if flag is None:
        return None
    given = flag.payload.get("max_bytes")
    if isinstance(given, int | float) and not isinstance(given, bool):
        return float(given)
    limits = [g.threshold for g in flag.guardrails if g.metric == "cache_bytes" and g.op in ("<", "<=")]
    return min(limits) if limits else None


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def megabytes(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1e6:.1f} MB"


def count(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"

"""Which of an app's impact metrics plays which part of the metric contract.

An app records impact metrics under names of its own choosing; the impact
source (`control.impact_source`) needs to know which counter counts requests,
which counts errors, which histogram times them. `ImpactNames` holds that
mapping; its defaults are the contract's own names (`control.promql`), and
ROLLGUARD_IMPACT_METRIC_NAMES (`role=name,...`, read by `control.settings`)
overrides any of them. docs/impact-metrics.md shows the mapping to guardrails.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from control import promql
from control.errors import PermanentError


@dataclass(frozen=True)
class ImpactNames:
    """The impact metric name of each role (counters, a histogram, gauges)."""

    #: counter: logical calls (requests) the app made, per flag state.
    requests: str = promql.REQUESTS
    #: counter: calls that failed.
    errors: str = promql.ERRORS
    #: histogram (seconds): latency of those calls.
    latency: str = promql.CALL_SECONDS
    #: counter: calls that reached the expensive backend.
    backend_calls: str = promql.BACKEND_CALLS
    #: counters: cache hits and misses.
    cache_hits: str = promql.CACHE_HITS
    cache_misses: str = promql.CACHE_MISSES
    #: gauge: bytes the cache holds.
    cache_bytes: str = promql.CACHE_BYTES
    #: gauge: resident memory of the process.
    rss: str = promql.RSS
    #: counter: calls of the optimized cohort that a local circuit breaker sent direct.
    gate_bypass: str = promql.GATE_BYPASS

    @classmethod
    def parse(cls, text: str) -> ImpactNames:
        """Return the defaults with the `role=name` pairs of the comma-separated `text` applied."""
        roles = {f.name for f in fields(cls)}
        chosen: dict[str, str] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            role, sep, name = (piece.strip() for piece in item.partition("="))
            if not sep or role not in roles or not name:
                raise PermanentError(
                    f"ROLLGUARD_IMPACT_METRIC_NAMES: {item!r} is not role=name with a role among "
                    f"{', '.join(sorted(roles))}"
                )
            chosen[role] = name
        return replace(cls(), **chosen)

    def inputs(self, metric: str) -> tuple[str, ...]:
        """The impact metric names the derived `metric` is computed from."""
        promql.check_metric(metric)
        by_metric = {
            "call_reduction": (self.requests, self.backend_calls),
            "error_rate": (self.requests, self.errors),
            "cache_hit_rate": (self.cache_hits, self.cache_misses),
            "p95_latency_s": (self.latency,),
            "cache_bytes": (self.cache_bytes,),
            "rss_bytes": (self.rss,),
            "request_rate": (self.requests,),
            "backend_rate": (self.backend_calls,),
            "breaker_bypass_rate": (self.requests, self.gate_bypass),
        }
        return by_metric[metric]

    def all(self) -> tuple[str, ...]:
        """Every mapped name, once."""
        return tuple(dict.fromkeys(getattr(self, f.name) for f in fields(self)))

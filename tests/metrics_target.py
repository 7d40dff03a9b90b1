"""A real /metrics endpoint (prometheus_client) exposing the optimizer's metric contract.

The controller's tests (`tests/control/conftest.py`) and the dashboard's
(`tests/dashboard/metrics.py`) build their targets on it and add the series
and the traffic they need.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from rollguard import free_port

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ContractTarget:
    """prometheus_client serving the contract's optimizer metrics on a free loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self._start()

    def _start(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("optimizer_requests", "logical calls", ["fn", "path"], registry=r)
        self.backend = Counter("optimizer_backend_calls", "backend calls", ["fn", "path"], registry=r)
        self.errors = Counter("optimizer_errors", "failed calls", ["fn", "path"], registry=r)
        self.hits = Counter("optimizer_cache_hits", "cache hits", ["fn"], registry=r)
        self.misses = Counter("optimizer_cache_misses", "cache misses", ["fn"], registry=r)
        self.latency = Histogram(
            "optimizer_call_seconds", "call latency", ["fn", "path"], buckets=BUCKETS, registry=r
        )
        self.cache_bytes = Gauge("optimizer_cache_bytes", "cache memory", ["fn"], registry=r)
        self._register(r)
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=r)

    def _register(self, registry: CollectorRegistry) -> None:
        """Add series beyond the contract's optimizer metrics (none by default)."""

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

"""Fixtures of the controller's tests: an injected clock and a real /metrics target we drive."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from control.store import ControlStore
from tests.support import free_port

FN = "get_all_exam_attempts"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class FakeClock:
    """A settable clock: tests move time explicitly instead of sleeping."""

    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class MetricsTarget:
    """A real HTTP /metrics endpoint (prometheus_client) exposing the contract's optimizer metrics."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self._start()

    def _start(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("optimizer_requests", "logical calls", ["fn", "path"], registry=r)
        self.backend = Counter("optimizer_backend_calls", "backend calls", ["fn", "path"], registry=r)
        self.errors = Counter("optimizer_errors", "failed calls", ["fn", "path"], registry=r)
        self.hits = Counter("optimizer_cache_hits", "cache hits", ["fn"], registry=r)
        self.misses = Counter("optimizer_cache_misses", "cache misses", ["fn"], registry=r)
        self.latency = Histogram(
            "optimizer_call_seconds", "call latency", ["fn", "path"], buckets=BUCKETS, registry=r
        )
        self.cache_bytes = Gauge("optimizer_cache_bytes", "cache memory", ["fn"], registry=r)
        self.unrelated = Counter("unrelated_thing", "not in the contract", registry=r)
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=r)

    def calls(
        self,
        path: str,
        n: int,
        *,
        errors: int = 0,
        backend: int | None = None,
        latency_s: float = 0.02,
        fn: str = FN,
    ) -> None:
        """Record `n` logical calls on `path`, `errors` of them failed, `backend` reaching the backend."""
        self.requests.labels(fn, path).inc(n)
        self.backend.labels(fn, path).inc(n if backend is None else backend)
        if errors:
            self.errors.labels(fn, path).inc(errors)
        for _ in range(n):
            self.latency.labels(fn, path).observe(latency_s)

    def restart(self) -> None:
        """Stop and start again with fresh counters (a process restart: counters reset)."""
        self.stop()
        self._start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics_target() -> Iterator[MetricsTarget]:
    target = MetricsTarget()
    yield target
    target.stop()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[ControlStore]:
    s = ControlStore(f"sqlite:///{tmp_path / 'control.db'}", clock=clock)
    yield s
    s.close()

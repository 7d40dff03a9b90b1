"""Fixtures of the controller's tests: an injected clock and a real /metrics target we drive."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from control.store import ControlStore
from tests.metrics_target import ContractTarget

FN = "get_all_exam_attempts"


@dataclass
class FakeClock:
    """A settable clock: tests move time explicitly instead of sleeping."""

    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class MetricsTarget(ContractTarget):
    """The contract's optimizer metrics plus a series outside it, which the scraper must skip."""

    def _register(self, registry: CollectorRegistry) -> None:
        self.unrelated = Counter("unrelated_thing", "not in the contract", registry=registry)
        self.bypass = Counter(
            "optimizer_gate_bypass", "calls sent direct by the gate", ["fn", "reason"], registry=registry
        )

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

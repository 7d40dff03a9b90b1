"""Fixtures of the optimizer tests: a fresh metrics registry, a fake clock, optimizers closed after use."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from optimizer import Optimizer


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class CountingBackend:
    """A backend function that counts its calls and may be held at a gate until released."""

    def __init__(self, *, hold: bool = False) -> None:
        self.calls: list[str] = []
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.version = 0
        self.error: Exception | None = None
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0

    def __call__(self, key: str) -> dict[str, Any]:
        with self._lock:
            self.calls.append(key)
        return self._serve(lambda: {"key": key, "version": self.version})

    def batch(self, keys: list[str]) -> dict[str, Any]:
        with self._lock:
            self.batches.append(list(keys))
        return self._serve(lambda: {k: {"key": k, "version": self.version} for k in keys})

    def _serve(self, make: Callable[[], Any]) -> Any:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            value = make()  # read at the start of the call, as a query sees the data of its start
            self.release.wait()
            if self.error is not None:
                raise self.error
            return value
        finally:
            with self._lock:
                self.in_flight -= 1


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_optimizer(registry: CollectorRegistry, clock: FakeClock) -> Iterator[Callable[..., Optimizer]]:
    built: list[Optimizer] = []

    def make(fn: Callable[[str], Any], **kwargs: Any) -> Optimizer:
        kwargs.setdefault("name", "get_all_exam_attempts")
        kwargs.setdefault("registry", registry)
        kwargs.setdefault("clock", clock)
        optimizer = Optimizer(fn, **kwargs)
        built.append(optimizer)
        return optimizer

    yield make
    for optimizer in built:
        optimizer.close()


def run_threads(
    count: int, target: Callable[[int], Any], *, while_running: Callable[[], None] | None = None
) -> list[Any]:
    """Run `target(i)` on `count` threads started together; return results (or exceptions) in order.

    `while_running` runs on the test's thread once all threads started, before they are joined.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as exc:  # noqa: BLE001 - returned to the test, which asserts on it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    if while_running is not None:
        while_running()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "threads did not finish"
    return results

"""A burst of calls from many threads at once: how many a second, and how long each one waited."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable


def timed_burst(action: Callable[[int], object], *, count: int, threads: int) -> dict[str, float]:
    """Call `action(0..count-1)` from `threads` threads as fast as they can; calls/s and p50/p95/max in ms."""
    waits: list[float] = []
    numbers = iter(range(count))
    lock = threading.Lock()

    def call_until_done() -> None:
        while True:
            with lock:
                n = next(numbers, None)
            if n is None:
                return
            started = time.perf_counter()
            action(n)
            elapsed = time.perf_counter() - started
            with lock:
                waits.append(elapsed)

    workers = [threading.Thread(target=call_until_done) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    ordered = sorted(waits)
    return {
        "per_s": round(len(waits) / wall, 1),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95)] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def spread(values: list[float]) -> dict[str, float]:
    """Min, median and max of repeated figures."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}

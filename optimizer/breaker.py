"""The local circuit breaker: sends optimized-cohort calls direct while the optimized path misbehaves.

`Optimizer` asks `check()` before each optimized call and reports each finished
one with `record()`. Thresholds come from the (payload-overridden) config on
every call, so a flag change retunes the breaker at the next call. This is the
first, in-process level of rollback in DESIGN.md; the controller turning the
flag off is the second.

Closed: calls go optimized and are recorded in a rolling window of `window_s`
seconds. Once the window holds `min_calls` calls and their error share reaches
`error_rate` (reason `breaker_error_rate`) or their p95 latency reaches
`p95_latency_s` (reason `breaker_latency`), it opens. Open: every call goes
direct for `cooldown_s`, counted under that reason. Then it closes with an empty
window: the optimized path must misbehave for `min_calls` calls again to reopen.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from optimizer.settings import BreakerConfig

REASON_ERROR_RATE = "breaker_error_rate"
REASON_LATENCY = "breaker_latency"

# The p95 sorts the window; do it every few records rather than on each one.
_P95_EVERY = 8
_SMALL_WINDOW = 64
_MAX_SAMPLES = 2048


class CircuitBreaker:
    """Rolling error-rate and p95-latency breaker; thread-safe, driven by an injectable clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, bool, float]] = deque()
        self._errors = 0
        self._open_until = 0.0
        self._reason: str | None = None
        self._since_p95 = 0
        self.trips = 0

    def check(self, config: BreakerConfig) -> str | None:
        """Return why the call must go direct (the open breaker's reason), or None to go optimized."""
        if self._reason is None:
            return None
        with self._lock:
            if self._reason is not None and self._clock() >= self._open_until:
                self._reason = None
            return self._reason

    @property
    def state(self) -> str:
        """`open` or `closed`, for stats and logs."""
        return "open" if self.check(BreakerConfig()) else "closed"

    def record(self, config: BreakerConfig, *, ok: bool, latency_s: float) -> str | None:
        """Record one finished optimized call; return the reason if this call tripped the breaker."""
        now = self._clock()
        with self._lock:
            if self._reason is not None:
                return None
            self._samples.append((now, ok, latency_s))
            if not ok:
                self._errors += 1
            self._expire(now - config.window_s)
            if len(self._samples) > _MAX_SAMPLES:
                self._drop_oldest()
            count = len(self._samples)
            if count < config.min_calls:
                return None
            reason = None
            if self._errors / count >= config.error_rate:
                reason = REASON_ERROR_RATE
            else:
                self._since_p95 += 1
                if self._since_p95 >= _P95_EVERY or count <= _SMALL_WINDOW:
                    self._since_p95 = 0
                    if _p95(self._samples) >= config.p95_latency_s:
                        reason = REASON_LATENCY
            if reason is not None:
                self._reason = reason
                self._open_until = now + config.cooldown_s
                self._samples.clear()
                self._errors = 0
                self.trips += 1
            return reason

    def _expire(self, horizon: float) -> None:
        while self._samples and self._samples[0][0] < horizon:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, ok, _ = self._samples.popleft()
        if not ok:
            self._errors -= 1


def _p95(samples: deque[tuple[float, bool, float]]) -> float:
    latencies = sorted(sample[2] for sample in samples)
    return latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]

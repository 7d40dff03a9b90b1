"""The local circuit breaker: sends optimized-cohort calls direct while the optimized path misbehaves.

`Optimizer` asks `check()` before each optimized call and reports each finished
one with `record()`. Thresholds come from the (payload-overridden) config on
every call, so a flag change retunes the breaker at the next call. This is the
first, in-process level of rollback; the controller turning the
flag off is the second.

Closed: calls go optimized and are recorded in a rolling window of `window_s`
seconds (at most its last 4096 calls, which bounds memory at high call rates). Once the window holds `min_calls` calls and their error share reaches
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

_MAX_SAMPLES = 4096


class CircuitBreaker:
    """Rolling error-rate and p95-latency breaker; thread-safe, driven by an injectable clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, bool, float]] = deque()
        self._errors = 0
        # Samples at or above the latency threshold: the p95 reaches the threshold exactly when
        # they are at least n - floor(0.95 n) of n, so no sorting is needed on the hot path.
        self._slow = 0
        self._slow_threshold = 0.0
        self._open_until = 0.0
        self._reason: str | None = None
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
            if config.p95_latency_s != self._slow_threshold:
                self._recount_slow(config.p95_latency_s)
            self._samples.append((now, ok, latency_s))
            self._errors += not ok
            self._slow += latency_s >= self._slow_threshold
            self._expire(now - config.window_s)
            if len(self._samples) > _MAX_SAMPLES:
                self._drop_oldest()
            count = len(self._samples)
            if count < config.min_calls:
                return None
            reason = None
            if self._errors / count >= config.error_rate:
                reason = REASON_ERROR_RATE
            elif self._slow >= count - int(0.95 * count):
                reason = REASON_LATENCY
            if reason is not None:
                self._reason = reason
                self._open_until = now + config.cooldown_s
                self._samples.clear()
                self._errors = self._slow = 0
                self.trips += 1
            return reason

    def _expire(self, horizon: float) -> None:
        while self._samples and self._samples[0][0] < horizon:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, ok, latency_s = self._samples.popleft()
        self._errors -= not ok
        self._slow -= latency_s >= self._slow_threshold

    def _recount_slow(self, threshold: float) -> None:
        self._slow_threshold = threshold
        self._slow = sum(1 for sample in self._samples if sample[2] >= threshold)

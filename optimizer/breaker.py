"""The local circuit breaker: sends optimized-cohort calls direct while the optimized path is at fault.

A fault of the optimization shows as the optimized path doing worse than the
direct path at the same moment; a saturated machine makes both paths slow
together. So the breaker judges the optimized path against the direct path's
own recent calls, and against absolute bounds only when there are too few
direct calls to compare with (the flag at 100%).

It reads nothing per call: `Optimizer` passes `outcomes`, which returns the
cumulative per-path counts its metrics keep anyway (calls, errors, latency
histogram), and calls `tick(now)` on the call path; at most every
`window_s / 10` seconds a tick takes a snapshot and judges the difference to
the snapshot of `window_s` ago, and to the one of three ticks ago, so that a
fault that just began is not diluted by the healthy second before it (see
`BreakerConfig` for the rule and its parameters, all retuned by the flag
payload at the next tick). Between ticks
the routing check is one attribute read.

States: closed (calls go optimized) -> open (every call goes direct for
`cooldown_s`) -> half-open (`probe_share` of the calls probe the optimized
path; once `min_calls` probes finished, they close the breaker if they pass
the rule and reopen it otherwise). `on_transition(state, reason)` is called
once per transition, from the calling thread, outside the breaker's lock.

`reset()` closes the breaker and forgets its window: `Optimizer` calls it when
the flag's served definition changes (a kill, a resume, a new rollout or
payload). Evidence gathered under the old definition says nothing about the new
one, and a breaker still open or probing after a resume would keep sending the
new stage's calls direct, which the controller reads as a fault of the stage.
A fault that is still there trips it again within its window.
"""

from __future__ import annotations

import bisect
import math
import random
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from optimizer.settings import BreakerConfig

REASON_ERROR_RATE = "breaker_error_rate"
REASON_LATENCY = "breaker_latency"
#: Why a breaker closed without its probes: the flag's definition changed (see `reset`).
REASON_FLAG_CHANGED = "flag_changed"

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)

OPTIMIZED, DIRECT = 0, 1
_TICKS_PER_WINDOW = 10
_RECENT_TICKS = 3
# Direct calls seen within this many seconds mean there is a direct cohort to compare with.
_DIRECT_COHORT_S = 30.0


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Cumulative counts per path (index OPTIMIZED, DIRECT): calls finished, errors, latency buckets.

    `buckets[path][i]` counts calls with latency in (bounds[i-1], bounds[i]]; the last one is open-ended.
    """

    calls: tuple[int, int]
    errors: tuple[int, int]
    buckets: tuple[tuple[int, ...], tuple[int, ...]]

    def minus(self, earlier: Outcomes) -> Outcomes:
        return Outcomes(
            calls=(self.calls[0] - earlier.calls[0], self.calls[1] - earlier.calls[1]),
            errors=(self.errors[0] - earlier.errors[0], self.errors[1] - earlier.errors[1]),
            buckets=(
                tuple(a - b for a, b in zip(self.buckets[0], earlier.buckets[0], strict=True)),
                tuple(a - b for a, b in zip(self.buckets[1], earlier.buckets[1], strict=True)),
            ),
        )


def judge(
    window: Outcomes, config: BreakerConfig, bounds: Sequence[float], *, direct_cohort: bool = False
) -> str | None:
    """Return why the optimized path is at fault over `window`, or None if it is not (or cannot say yet).

    `direct_cohort`: whether direct calls were seen lately. Then a window with too
    few of them is not judged on latency (completions come in bursts on a saturated
    machine); only without a direct cohort (the flag at 100%) do absolute bounds apply.
    """
    verdict = explain(window, config, bounds, direct_cohort=direct_cohort)
    return None if verdict is None else verdict.reason


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why the optimized path looks at fault; `corroborated`: latency alone, or with errors too."""

    reason: str
    evidence: str
    corroborated: bool = True


def explain(
    window: Outcomes, config: BreakerConfig, bounds: Sequence[float], *, direct_cohort: bool = False
) -> Verdict | None:
    """`judge`, with the evidence in words for the log line of the transition."""
    calls = window.calls[OPTIMIZED]
    if calls < config.min_calls:
        return None
    least_bad = math.ceil(config.min_calls / 2)
    errors = window.errors[OPTIMIZED]
    direct_calls = window.calls[DIRECT]
    has_baseline = direct_calls >= config.min_calls
    baseline_error = window.errors[DIRECT] / direct_calls if has_baseline else 0.0
    excess_errors = errors / calls - baseline_error if errors >= least_bad else 0.0
    if excess_errors >= config.error_rate:
        return Verdict(
            REASON_ERROR_RATE,
            f"{errors} errors in {calls} optimized calls, direct error share {baseline_error:.3f} "
            f"of {direct_calls} calls",
        )
    if has_baseline:
        p90 = _quantile(window.buckets[DIRECT], 0.9, bounds)
        slow_s = max(config.latency_floor_s, config.latency_ratio * p90)
    elif direct_cohort:
        return None
    else:
        p90, slow_s = math.nan, config.latency_s
    slow = _count_above(window.buckets[OPTIMIZED], slow_s, bounds)
    if slow >= least_bad and slow / calls >= config.slow_share:
        return Verdict(
            REASON_LATENCY,
            f"{slow} of {calls} optimized calls over {slow_s:.3f}s; direct p90 {p90:.3f}s "
            f"of {direct_calls} calls, {errors} optimized errors",
            # A cold cache right after a mass invalidation is slow without erring for a moment.
            corroborated=excess_errors >= config.error_rate / 2,
        )
    return None


def _quantile(buckets: Sequence[int], q: float, bounds: Sequence[float]) -> float:
    """The upper bound of the bucket holding quantile `q` (the last finite bound for the open bucket)."""
    rank = q * sum(buckets)
    running = 0
    for i, count in enumerate(buckets):
        running += count
        if running >= rank:
            return bounds[min(i, len(bounds) - 1)]
    return bounds[-1]


def _count_above(buckets: Sequence[int], threshold_s: float, bounds: Sequence[float]) -> int:
    """Calls in buckets lying wholly above `threshold_s` (a bucket starts at the previous bound)."""
    first = bisect.bisect_left(bounds, threshold_s) + 1
    return sum(buckets[first:])


class CircuitBreaker:
    """Closed / open / half-open breaker over snapshots of per-path outcomes; thread-safe."""

    def __init__(
        self,
        *,
        outcomes: Callable[[], Outcomes],
        bounds: Sequence[float],
        clock: Callable[[], float],
        on_transition: Callable[[str, str | None], None] = lambda state, reason: None,
    ) -> None:
        self._outcomes = outcomes
        self._bounds = tuple(bounds)
        self._clock = clock
        self._on_transition = on_transition
        self._lock = threading.Lock()
        self._snapshots: deque[tuple[float, Outcomes]] = deque()
        self._half_open_base: Outcomes | None = None
        self._open_until = 0.0
        self._probe_share = BreakerConfig().probe_share
        self.next_tick = -math.inf
        self.state = CLOSED
        self.reason: str | None = None
        self.evidence = ""  # what the last trip saw, for its log line
        self._direct_seen_at = -math.inf
        self._slow_since: float | None = None  # since when every tick found latency alone at fault
        self.trips = 0
        self.transitions = dict.fromkeys(STATES, 0)

    def admit(self) -> str | None:
        """Return None to send this call optimized, or the reason to send it direct (open or not probing)."""
        if self.state is CLOSED:
            return None
        if self.state is HALF_OPEN and random.random() < self._probe_share:
            return None
        return self.reason

    def tick(self, now: float, config: BreakerConfig) -> None:
        """Judge the window if a tick is due; callers check `now >= next_tick` first to stay cheap."""
        if not self._lock.acquire(blocking=False):
            return  # another thread is judging this very tick
        try:
            if now < self.next_tick:
                return
            self.next_tick = now + config.window_s / _TICKS_PER_WINDOW
            self._probe_share = config.probe_share
            change = self._advance(now, config)
        finally:
            self._lock.release()
        if change is not None:
            self._on_transition(*change)

    def _advance(self, now: float, config: BreakerConfig) -> tuple[str, str | None] | None:
        current = self._outcomes()
        snapshots = self._snapshots
        snapshots.append((now, current))
        # The window starts at the oldest snapshot inside it: after a lull without calls it is
        # short (or empty) rather than reaching back to calls older than window_s.
        while snapshots[0][0] < now - config.window_s:
            snapshots.popleft()
        if self.state is OPEN:
            if now < self._open_until:
                return None
            self.state = HALF_OPEN
            self._half_open_base = current
            return self._transition(HALF_OPEN)
        if self.state is HALF_OPEN:
            assert self._half_open_base is not None
            probes = current.minus(self._half_open_base)
            if probes.calls[OPTIMIZED] < config.min_calls:
                return None
            verdict = explain(probes, config, self._bounds, direct_cohort=self._direct_cohort(now))
            if verdict is None:
                self.state, self.reason = CLOSED, None
                self._slow_since = None
                snapshots.clear()
                snapshots.append((now, current))
                return self._transition(CLOSED)
            self.evidence = verdict.evidence
            return self._open(now, verdict.reason, config)
        # The whole window, and its last few ticks, where a fault that just began is most visible.
        recent = snapshots[max(0, len(snapshots) - 1 - _RECENT_TICKS)][1]
        window = current.minus(snapshots[0][1])
        if window.calls[DIRECT] >= config.min_calls:
            self._direct_seen_at = now
        cohort = self._direct_cohort(now)
        verdict = explain(window, config, self._bounds, direct_cohort=cohort) or explain(
            current.minus(recent), config, self._bounds, direct_cohort=cohort
        )
        if verdict is None or not verdict.corroborated:
            # Latency alone must last `latency_hold_s`; with errors too it trips at once.
            self._slow_since = None if verdict is None else (self._slow_since or now)
            if self._slow_since is None or now - self._slow_since < config.latency_hold_s:
                return None
        assert verdict is not None
        self._slow_since = None
        self.evidence = verdict.evidence
        return self._open(now, verdict.reason, config)

    def reset(self) -> None:
        """Close the breaker and drop its window; counted as a transition to closed only if it was not."""
        with self._lock:
            was_closed = self.state is CLOSED
            self.state, self.reason = CLOSED, None
            self._snapshots.clear()
            self._half_open_base = None
            self._slow_since = None
            self.next_tick = -math.inf
            change = None if was_closed else self._transition(CLOSED)
        if change is not None:
            self._on_transition(CLOSED, REASON_FLAG_CHANGED)

    def _direct_cohort(self, now: float) -> bool:
        return now - self._direct_seen_at <= _DIRECT_COHORT_S

    def _open(self, now: float, reason: str, config: BreakerConfig) -> tuple[str, str | None]:
        self.state, self.reason = OPEN, reason
        self._open_until = now + config.cooldown_s
        self.trips += 1
        return self._transition(OPEN)

    def _transition(self, state: str) -> tuple[str, str | None]:
        self.transitions[state] += 1
        return state, self.reason

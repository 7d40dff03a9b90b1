"""The ideal and eta: how close a caching layer came to the fewest possible backend calls.

Pure functions, called by the traffic generator and the bench. For a log of logical calls and invalidations and a
freshness bound tau, C_min is, for each key, the number of windows of length
tau that a greedy cover of that key's call times needs, where a window is cut
by any invalidation of the key after it opened. eta = (N - C_actual) / (N - C_min).

Ties: a call and an invalidation at the same instant count the call first,
so a window opened at time t is cut by an invalidation at t.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Call:
    """One logical call of the wrapped function: when, for which key."""

    time: float
    key: str


@dataclass(frozen=True, slots=True)
class Invalidation:
    """A write that makes every earlier fetch of `key` unusable."""

    time: float
    key: str


def minimum_calls(calls: Iterable[Call], invalidations: Iterable[Invalidation], tau: float) -> int:
    """Return C_min, the fewest backend calls any cache fresh within `tau` could make."""
    if tau < 0:
        raise ValueError("tau must be >= 0")
    times: dict[str, list[float]] = defaultdict(list)
    for call in calls:
        times[call.key].append(call.time)
    cuts: dict[str, list[float]] = defaultdict(list)
    for inv in invalidations:
        cuts[inv.key].append(inv.time)
    return sum(_windows(sorted(ts), sorted(cuts.get(key, ())), tau) for key, ts in times.items())


def _windows(times: Sequence[float], cuts: Sequence[float], tau: float) -> int:
    count = 0
    opened: float | None = None
    for t in times:
        if opened is not None and t - opened < tau and not _cut_between(cuts, opened, t):
            continue
        opened = t
        count += 1
    return count


def _cut_between(cuts: Sequence[float], start: float, end: float) -> bool:
    # Any invalidation v with start <= v < end cuts the window.
    i = bisect.bisect_left(cuts, start)
    return i < len(cuts) and cuts[i] < end


def minimum_batched_queries(c_min: int, batch_size: int) -> int:
    """Lower bound on backend queries when up to `batch_size` keys share a query."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    return math.ceil(c_min / batch_size)


def eta(*, n: int, c_actual: int, c_min: int) -> float | None:
    """Return (N - C_actual) / (N - C_min); above 1 means data staler than tau was served.

    When N == C_min there was nothing to save: eta is 1.0 if the layer saved
    nothing either, and None (undefined) if it made fewer calls than possible.
    """
    if n < 0 or c_actual < 0 or c_min < 0 or c_min > n:
        raise ValueError(f"inconsistent counts: n={n} c_actual={c_actual} c_min={c_min}")
    if n == c_min:
        return 1.0 if c_actual == c_min else None
    return (n - c_actual) / (n - c_min)


def summarize(
    *, calls: Sequence[Call], invalidations: Sequence[Invalidation], tau: float, c_actual: int
) -> Mapping[str, float | int | None]:
    """N, C_actual, C_min and eta for one run, as the traffic summary reports them."""
    c_min = minimum_calls(calls, invalidations, tau)
    n = len(calls)
    return {
        "n": n,
        "c_actual": c_actual,
        "c_min": c_min,
        "tau_s": tau,
        "eta": eta(n=n, c_actual=c_actual, c_min=c_min),
    }

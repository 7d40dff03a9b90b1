"""PromQL's `increase`, `histogram_quantile` and `*_over_time` in plain Python.

The embedded metric source (`control.embedded`) computes the derived series of
the metric contract from raw scraped samples with these functions, so that its numbers
are those Prometheus 2.x gives for the PromQL in `control.promql` over the same
samples. They follow `extrapolatedRate` and `bucketQuantile` of
prometheus/promql/functions.go and quantile.go (v2.42), including the range
selector's closed interval [t - range, t]. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Point = tuple[float, float]  # (epoch seconds, value)


def increase(points: Sequence[Point], *, range_start: float, range_end: float) -> float | None:
    """Return PromQL `increase()` of one counter series over [range_start, range_end].

    `points` are the series' samples inside the range, oldest first. None when
    there are fewer than two (Prometheus drops such series from the result).
    Counter resets add the value before the reset; the result is extrapolated
    to the range edges when the first/last samples are near them, and never
    extrapolated below a counter value of zero.
    """
    if len(points) < 2:
        return None
    first_t, first_v = points[0]
    last_t, last_v = points[-1]
    result = last_v - first_v
    previous = first_v
    for _t, value in points[1:]:
        if value < previous:
            result += previous
        previous = value
    sampled = last_t - first_t
    if sampled <= 0:
        return None
    to_start = first_t - range_start
    to_end = range_end - last_t
    average_step = sampled / (len(points) - 1)
    if result > 0 and first_v >= 0:
        to_zero = sampled * (first_v / result)
        to_start = min(to_start, to_zero)
    threshold = average_step * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average_step / 2
    interval += to_end if to_end < threshold else average_step / 2
    return result * (interval / sampled)


def sum_increase(series: Iterable[Sequence[Point]], *, range_start: float, range_end: float) -> float | None:
    """Return `sum(increase(...))` over several series; None when no series has two samples."""
    total: float | None = None
    for points in series:
        value = increase(points, range_start=range_start, range_end=range_end)
        if value is not None:
            total = value if total is None else total + value
    return total


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Return PromQL `histogram_quantile(q, ...)` of (upper bound, cumulative count) buckets.

    Linear interpolation inside the bucket holding the rank; the lowest bucket
    starts at 0 (when its bound is positive); a rank in the +Inf bucket returns
    the highest finite bound. None where PromQL gives NaN (no +Inf bucket, fewer
    than two buckets, no observations).
    """
    merged: dict[float, float] = {}
    for bound, count in buckets:
        merged[bound] = merged.get(bound, 0.0) + count
    ordered = sorted(merged.items())
    if not ordered or not math.isinf(ordered[-1][0]):
        return None
    # ensureMonotonic: interpolation and extrapolation can make a lower bucket
    # exceed a higher one; Prometheus raises the higher one to match.
    monotonic: list[tuple[float, float]] = []
    highest = -math.inf
    for bound, count in ordered:
        highest = max(highest, count)
        monotonic.append((bound, highest))
    if len(monotonic) < 2:
        return None
    observations = monotonic[-1][1]
    if observations == 0:
        return None
    rank = q * observations
    index = next((i for i in range(len(monotonic) - 1) if monotonic[i][1] >= rank), len(monotonic) - 1)
    if index == len(monotonic) - 1:
        return monotonic[-2][0]
    if index == 0 and monotonic[0][0] <= 0:
        return monotonic[0][0]
    start = 0.0
    end, count = monotonic[index]
    if index > 0:
        start = monotonic[index - 1][0]
        count -= monotonic[index - 1][1]
        rank -= monotonic[index - 1][1]
    return start + (end - start) * (rank / count)


def max_over_time(points: Sequence[Point]) -> float | None:
    """Return PromQL `max_over_time()` of one series' samples, None when there are none."""
    return max((value for _t, value in points), default=None)


def parse_le(le: str) -> float:
    """Parse a histogram bucket bound as exposed ("0.25", "+Inf")."""
    return math.inf if le in ("+Inf", "Inf", "inf") else float(le)

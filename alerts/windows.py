"""Burn-rate windows of the error-budget alerts: the SRE workbook's and the rollout's.

`alerts.rules` builds one alert per `BurnWindow`; `alerts.recording` records the
error ratio over each window; `alerts.cli` picks a profile by name
(`--windows rollout|workbook`). docs/alerts.md explains the choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BurnWindow:
    """One tier of a multi-window burn-rate alert: both windows must burn faster than `factor`."""

    severity: str
    factor: float
    long_s: int
    short_s: int


# The SRE workbook's recipe for a 30-day SLO (chapter "Alerting on SLOs", table 5-8).
WORKBOOK_WINDOWS = (
    BurnWindow("page", 14.4, 3600, 300),
    BurnWindow("page", 6.0, 6 * 3600, 1800),
    BurnWindow("ticket", 3.0, 24 * 3600, 7200),
    BurnWindow("ticket", 1.0, 3 * 24 * 3600, 6 * 3600),
)


def scaled(windows: Sequence[BurnWindow], divisor: int) -> tuple[BurnWindow, ...]:
    """Divide every window by `divisor`, rounding up to whole minutes (at least one)."""

    def minutes(seconds: int) -> int:
        return max(60, -(-seconds // (divisor * 60)) * 60)

    return tuple(BurnWindow(w.severity, w.factor, minutes(w.long_s), minutes(w.short_s)) for w in windows)


# The same factors with every window divided by 12, so that a rollout stage that
# lives minutes is caught while it runs; windows are whole minutes, at least one,
# so that a 15 s scrape gives every rate four samples. docs/alerts.md has the numbers.
ROLLOUT_WINDOWS = scaled(WORKBOOK_WINDOWS, 12)

WINDOW_PROFILES: dict[str, tuple[BurnWindow, ...]] = {
    "rollout": ROLLOUT_WINDOWS,
    "workbook": WORKBOOK_WINDOWS,
}


def duration(seconds: int) -> str:
    """Format seconds as a Prometheus duration (`90s`, `5m`, `6h`, `3d`)."""
    if seconds <= 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

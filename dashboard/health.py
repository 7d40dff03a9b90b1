"""Guardrail health as the operator sees it: badges and breaches.

Pure functions over verdicts: the controller's recorded ones (`VerdictRecord`)
or the dashboard's own live checks, which `data.live_checks` makes with the
controller's `control.checks.check_flag`, so both judge alike. The overview
and flag pages call these through `status.py` and `banners.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Protocol

from control import PastVerdict
from flags.client import Flag


class Health(Enum):
    """The badge shown next to a flag."""

    HEALTHY = "healthy"
    BREACHED = "breached"
    NO_DATA = "no data"
    UNKNOWN = "unknown"
    OFF = "off"

    @property
    def icon(self) -> str:
        return {
            Health.HEALTHY: "●",
            Health.BREACHED: "▲",
            Health.NO_DATA: "○",
            Health.UNKNOWN: "?",
            Health.OFF: "■",
        }[self]

    @property
    def label(self) -> str:
        text = self.value.upper() if self is Health.BREACHED else self.value
        return f"{self.icon} {text}"


class Judged(Protocol):
    """A guardrail's verdict as the dashboard shows it (live check or recorded)."""

    @property
    def guardrail(self) -> str: ...
    @property
    def verdict(self) -> str: ...
    @property
    def value(self) -> float | None: ...
    @property
    def threshold(self) -> float: ...
    @property
    def samples(self) -> int: ...


def describe(judged: Judged) -> str:
    """One line for a banner: `error_rate[optimized]<=0.01: 0.25 (1200 samples)`."""
    shown = "no value" if judged.value is None else f"{judged.value:.4g}"
    return f"{judged.guardrail}: {shown} ({judged.samples} samples)"


def latest_verdicts(verdicts: Iterable[PastVerdict]) -> dict[str, PastVerdict]:
    """The newest verdict of each guardrail, by guardrail name."""
    latest: dict[str, PastVerdict] = {}
    for record in verdicts:
        seen = latest.get(record.guardrail)
        if seen is None or record.time >= seen.time:
            latest[record.guardrail] = record
    return latest


def badge(flag: Flag, verdicts: Iterable[str]) -> Health:
    """Summarise a flag's health from the outcomes (pass, fail, no_data) of its latest verdicts."""
    if not flag.enabled:
        return Health.OFF
    outcomes = list(verdicts)
    if not outcomes:
        return Health.UNKNOWN
    if "fail" in outcomes:
        return Health.BREACHED
    if all(o == "no_data" for o in outcomes):
        return Health.NO_DATA
    return Health.HEALTHY


def breaches(judged: Iterable[Judged]) -> list[Judged]:
    """The failed verdicts, for the breach banner."""
    return [j for j in judged if j.verdict == "fail"]

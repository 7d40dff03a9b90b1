"""Guardrail health as the operator sees it: badges, live checks, breaches.

Pure functions over the controller's verdict records and the metric source's
window values; the overview and flag pages call them, `data.py` feeds them.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol

from flags.client import Flag, Guardrail

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


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


class Verdict(Protocol):
    """What the dashboard reads of a controller verdict record."""

    @property
    def time(self) -> datetime: ...
    @property
    def guardrail(self) -> str: ...
    @property
    def verdict(self) -> str: ...
    @property
    def value(self) -> float | None: ...
    @property
    def threshold(self) -> float | None: ...


class Window(Protocol):
    """What the dashboard reads of a metric window."""

    @property
    def value(self) -> float | None: ...
    @property
    def samples(self) -> int: ...


@dataclass(frozen=True)
class Check:
    """One guardrail checked against the metric source right now."""

    guardrail: Guardrail
    verdict: str  # pass | fail | no_data
    value: float | None
    samples: int

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    def describe(self) -> str:
        shown = "no value" if self.value is None else f"{self.value:.4g}"
        return f"{self.guardrail.name}: {shown} over {self.guardrail.window_s}s ({self.samples} samples)"


def check(guardrail: Guardrail, window: Window, direct: Window | None = None) -> Check:
    """Judge one guardrail from its window (and, for comparative ones, the direct cohort's)."""
    if window.value is None or window.samples < guardrail.min_samples:
        return Check(guardrail, "no_data", window.value, window.samples)
    if guardrail.kind == "comparative":
        if direct is None or direct.value is None or direct.samples < guardrail.min_samples:
            return Check(guardrail, "no_data", None, min(window.samples, direct.samples if direct else 0))
        difference = window.value - direct.value
        verdict = "pass" if difference <= guardrail.threshold else "fail"
        return Check(guardrail, verdict, difference, min(window.samples, direct.samples))
    compare = _OPS.get(guardrail.op)
    if compare is None:
        raise ValueError(f"unknown guardrail operator {guardrail.op!r}")
    verdict = "pass" if compare(window.value, guardrail.threshold) else "fail"
    return Check(guardrail, verdict, window.value, window.samples)


def latest_verdicts(verdicts: Iterable[Verdict]) -> dict[str, Verdict]:
    """The newest verdict of each guardrail, by guardrail name."""
    latest: dict[str, Verdict] = {}
    for record in verdicts:
        seen = latest.get(record.guardrail)
        if seen is None or record.time >= seen.time:
            latest[record.guardrail] = record
    return latest


def badge(flag: Flag, verdicts: Iterable[str], checks: Sequence[Check] = ()) -> Health:
    """Summarise a flag's health from its latest verdicts and any live checks."""
    if not flag.enabled:
        return Health.OFF
    outcomes = [*verdicts, *(c.verdict for c in checks)]
    if not outcomes:
        return Health.UNKNOWN
    if "fail" in outcomes:
        return Health.BREACHED
    if all(o == "no_data" for o in outcomes):
        return Health.NO_DATA
    return Health.HEALTHY


def breaches(checks: Iterable[Check]) -> list[Check]:
    """The failed checks, for the breach banner."""
    return [c for c in checks if c.failed]

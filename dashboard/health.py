"""Guardrail health as the operator sees it: badges and breaches.

Pure functions over the controller's recorded verdicts (`VerdictRecord`): the
dashboard judges no guardrail itself. The overview and flag pages call these
through `status.py` and `banners.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Protocol

from flags.client import Flag, Guardrail

#: How an operator reads each metric's value: rates in %, latency in ms, memory in MB.
PERCENT_METRICS = frozenset({"call_reduction", "cache_hit_rate", "error_rate", "breaker_bypass_rate"})


class Health(Enum):
    """The badge shown next to a flag."""

    HEALTHY = "healthy"
    BREACHED = "breached"
    NO_DATA = "no data"
    NOT_JUDGED = "not judged"
    UNKNOWN = "unknown"
    OFF = "off"

    @property
    def icon(self) -> str:
        return {
            Health.HEALTHY: "●",
            Health.BREACHED: "▲",
            Health.NO_DATA: "○",
            Health.NOT_JUDGED: "◌",
            Health.UNKNOWN: "?",
            Health.OFF: "■",
        }[self]

    @property
    def label(self) -> str:
        text = self.value.upper() if self is Health.BREACHED else self.value
        return f"{self.icon} {text}"


class Judged(Protocol):
    """A guardrail's verdict as the dashboard shows it (the controller's `VerdictRecord`)."""

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


def describe(judged: Judged, guardrails: Sequence[Guardrail] = ()) -> str:
    """One line for a banner: `error_rate[optimized]<=0.01: 25% (1200 samples)`.

    The value is in its metric's unit when `guardrails` holds the judged one.
    """
    guardrail = next((g for g in guardrails if g.name == judged.guardrail), None)
    name = label(guardrail) if guardrail else judged.guardrail
    shown = value_text(guardrail.metric if guardrail else None, judged.value)
    return f"{name}: {shown} ({judged.samples} samples)"


def value_text(metric: str | None, value: float | None) -> str:
    """A metric's value as an operator reads it: `25%`, `180 ms`, `14.2 MB`."""
    if value is None:
        return "no value"
    if metric in PERCENT_METRICS:
        return f"{value * 100:.3g}%"
    if metric == "p95_latency_s":
        return f"{value * 1000:.4g} ms"
    if metric is not None and metric.endswith("_bytes"):
        return f"{value / 1e6:.4g} MB"
    return f"{value:.4g}"


def label(guardrail: Guardrail) -> str:
    """The guardrail's name with a memory threshold in MB: `cache_bytes<=15 MB`, not `cache_bytes<=1.5e+07`."""
    if not guardrail.metric.endswith("_bytes"):
        return guardrail.name
    return guardrail.name.removesuffix(f"{guardrail.threshold:g}") + f"{guardrail.threshold / 1e6:g} MB"


def labels(guardrails: Iterable[Guardrail]) -> dict[str, str]:
    """Each guardrail's label by its name."""
    return {g.name: label(g) for g in guardrails}


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

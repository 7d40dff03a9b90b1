"""Validation of the guardrail editor's rows before they go to the flag service.

The flag page's editor hands its widget values here as `GuardrailRow`s; what
passes becomes `Guardrail`s for `FlagsClient.update_flag`. The flag service
validates again; this catches mistakes while the operator is still typing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from flags.client import GUARDRAIL_METRICS, GUARDRAIL_OPS, PATH_METRICS, Guardrail

RATE_METRICS = ("call_reduction", "cache_hit_rate", "error_rate")
PATHS = ("optimized", "direct")
KINDS = ("threshold", "comparative")
MIN_WINDOW_S = 5


@dataclass(frozen=True)
class GuardrailRow:
    """One row of the editor as the operator left it."""

    metric: str
    op: str
    threshold: float
    window_s: int
    min_samples: int
    path: str | None = None
    kind: str = "threshold"

    @classmethod
    def from_guardrail(cls, guardrail: Guardrail) -> GuardrailRow:
        return cls(
            metric=guardrail.metric,
            op=guardrail.op,
            threshold=guardrail.threshold,
            window_s=guardrail.window_s,
            min_samples=guardrail.min_samples,
            path=guardrail.path,
            kind=guardrail.kind,
        )


def problems(row: GuardrailRow) -> list[str]:
    """What is wrong with one row; empty when it is a valid guardrail."""
    found: list[str] = []
    if row.metric not in GUARDRAIL_METRICS:
        found.append(f"unknown metric {row.metric!r}")
    if row.op not in GUARDRAIL_OPS:
        found.append(f"unknown operator {row.op!r}")
    if row.kind not in KINDS:
        found.append(f"unknown kind {row.kind!r}")
    if not math.isfinite(row.threshold):
        found.append("threshold must be a finite number")
    elif row.metric in RATE_METRICS and row.kind == "threshold" and not 0.0 <= row.threshold <= 1.0:
        found.append(f"{row.metric} is a fraction: threshold must be within 0..1")
    elif row.threshold < 0 and row.kind == "threshold":
        found.append(f"{row.metric} cannot be negative")
    if row.window_s < MIN_WINDOW_S:
        found.append(f"window must be at least {MIN_WINDOW_S}s")
    if row.min_samples < 1:
        found.append("min samples must be at least 1")
    if row.path is not None and row.path not in PATHS:
        found.append(f"unknown cohort {row.path!r}")
    if row.path is not None and row.metric not in PATH_METRICS:
        found.append(f"{row.metric} has no cohorts: leave the cohort empty")
    if row.kind == "comparative" and row.metric not in PATH_METRICS:
        found.append(f"a comparative guardrail needs a per-cohort metric ({', '.join(PATH_METRICS)})")
    return found


def validate(rows: Iterable[GuardrailRow]) -> tuple[list[Guardrail], list[str]]:
    """Turn editor rows into guardrails, or list every problem with the row number."""
    guardrails: list[Guardrail] = []
    errors: list[str] = []
    names: set[str] = set()
    for number, row in enumerate(rows, start=1):
        found = problems(row)
        if found:
            errors.extend(f"guardrail {number}: {problem}" for problem in found)
            continue
        guardrail = Guardrail(
            metric=row.metric,
            op=row.op,
            threshold=float(row.threshold),
            window_s=int(row.window_s),
            min_samples=int(row.min_samples),
            path=row.path,
            kind=row.kind,
        )
        if guardrail.name in names:
            errors.append(f"guardrail {number}: duplicates {guardrail.name}")
            continue
        names.add(guardrail.name)
        guardrails.append(guardrail)
    return guardrails, errors

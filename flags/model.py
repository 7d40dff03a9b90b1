"""The flag model: one vocabulary and one set of rules for the flag service, its client and the dashboard.

Pure: dataclasses, enums and validation, no I/O. The API's schemas refuse what
`Guardrail.problems` and `guardrail_list_problems` find (422), the dashboard's
editor shows the same sentences while the operator types, and the controller
can judge every guardrail that passes: a guardrail it could never judge (a
comparative one on a metric without cohorts, a cohort on a metric without
cohorts) or one that can never fail (a rate compared with 5) is refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class FlagState(StrEnum):
    DRAFT = "draft"
    ROLLING_OUT = "rolling_out"
    PAUSED = "paused"
    COMPLETE = "complete"
    ROLLED_BACK = "rolled_back"


class GuardrailKind(StrEnum):
    THRESHOLD = "threshold"
    COMPARATIVE = "comparative"


class Cohort(StrEnum):
    OPTIMIZED = "optimized"
    DIRECT = "direct"


GUARDRAIL_METRICS = (
    "call_reduction",
    "cache_hit_rate",
    "error_rate",
    "p95_latency_s",
    "cache_bytes",
    "rss_bytes",
    "breaker_bypass_rate",
)
#: Metrics measured per cohort (the `path` label): the only ones a guardrail may name a cohort for.
PATH_METRICS = ("call_reduction", "error_rate", "p95_latency_s")
#: Metrics the controller compares between cohorts (a proportion test, a latency test).
COMPARATIVE_METRICS = ("error_rate", "p95_latency_s")
#: Metrics that are fractions: their thresholds lie within 0..1.
RATE_METRICS = ("call_reduction", "cache_hit_rate", "error_rate", "breaker_bypass_rate")
GUARDRAIL_OPS = ("<", "<=", ">", ">=")
FLAG_STATES = tuple(state.value for state in FlagState)
GUARDRAIL_KINDS = tuple(kind.value for kind in GuardrailKind)
COHORTS = tuple(cohort.value for cohort in Cohort)
#: The shortest window a guardrail may judge, in seconds.
MIN_WINDOW_S = 1
#: Flag fields whose change starts a new stage: who gets the optimization (`enabled`, `rollout`),
#: whether the controller guards it (`state`) and what the optimized path does (`payload`: its TTLs,
#: limits and breaker, and `fn`, the series the guardrails read). The traffic before such a change is
#: not the exposure the guardrails judge after it. Guardrails, the plan and the description judge or
#: describe the exposure without changing it.
STAGE_FIELDS = ("enabled", "rollout", "state", "payload")


@dataclass(frozen=True)
class Guardrail:
    """A check on one derived metric: passes while `value op threshold` holds.

    `kind="comparative"` compares the optimized cohort against the direct one on
    `metric` and fails when optimized is worse by more than `threshold` and the
    difference is significant.
    """

    metric: str
    op: str
    threshold: float
    window_s: int = 60
    min_samples: int = 20
    path: str | None = None
    kind: str = "threshold"

    @property
    def name(self) -> str:
        cohort = f"[{self.path}]" if self.path else ""
        if self.kind == GuardrailKind.COMPARATIVE:
            return f"{self.metric}[optimized-direct]<={self.threshold:g}"
        return f"{self.metric}{cohort}{self.op}{self.threshold:g}"

    def problems(self) -> list[str]:
        """What makes this guardrail one the controller cannot judge or that can never fail; empty if none."""
        found = [
            *_vocabulary_problems(self),
            *_threshold_problems(self),
            *_cohort_problems(self),
        ]
        if self.window_s < MIN_WINDOW_S:
            found.append(f"window must be at least {MIN_WINDOW_S}s")
        if self.min_samples < 1:
            found.append("min samples must be at least 1")
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "op": self.op,
            "threshold": self.threshold,
            "window_s": self.window_s,
            "min_samples": self.min_samples,
            "path": self.path,
            "kind": self.kind,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Guardrail:
        return cls(
            metric=data["metric"],
            op=data.get("op", "<="),
            threshold=float(data["threshold"]),
            window_s=int(data.get("window_s", 60)),
            min_samples=int(data.get("min_samples", 20)),
            path=data.get("path"),
            kind=data.get("kind", "threshold"),
        )


def _vocabulary_problems(g: Guardrail) -> list[str]:
    found = []
    if g.metric not in GUARDRAIL_METRICS:
        found.append(f"unknown metric {g.metric!r}")
    if g.op not in GUARDRAIL_OPS:
        found.append(f"unknown operator {g.op!r}")
    if g.kind not in GUARDRAIL_KINDS:
        found.append(f"unknown kind {g.kind!r}")
    if g.path is not None and g.path not in COHORTS:
        found.append(f"unknown cohort {g.path!r}")
    return found


def _threshold_problems(g: Guardrail) -> list[str]:
    if not math.isfinite(g.threshold):
        return ["threshold must be a finite number"]
    if g.metric in RATE_METRICS and not 0.0 <= g.threshold <= 1.0:
        return [f"{g.metric} is a fraction: threshold must be within 0..1"]
    if g.threshold < 0:
        what = "a comparison's margin" if g.kind == GuardrailKind.COMPARATIVE else g.metric
        return [f"{what} cannot be negative"]
    return []


def _cohort_problems(g: Guardrail) -> list[str]:
    found = []
    if g.path is not None and g.metric not in PATH_METRICS:
        found.append(f"{g.metric} has no cohorts: leave the cohort empty")
    if g.kind == GuardrailKind.COMPARATIVE and g.metric not in COMPARATIVE_METRICS:
        found.append(f"a comparative guardrail needs one of {', '.join(COMPARATIVE_METRICS)}")
    elif g.kind == GuardrailKind.COMPARATIVE and g.path is not None:
        found.append("a comparative guardrail compares both cohorts: leave the cohort empty")
    return found


def guardrail_list_problems(guardrails: Iterable[Guardrail]) -> list[tuple[int, str]]:
    """Problems of a flag's guardrails as (1-based position, problem), a repeated name included."""
    found: list[tuple[int, str]] = []
    names: set[str] = set()
    for number, guardrail in enumerate(guardrails, start=1):
        problems = guardrail.problems()
        found.extend((number, problem) for problem in problems)
        if not problems and guardrail.name in names:
            found.append((number, f"duplicates {guardrail.name}"))
        names.add(guardrail.name)
    return found


@dataclass(frozen=True)
class RollbackPolicy:
    consecutive_failures: int = 2
    on_no_data: str = "hold"


@dataclass(frozen=True)
class Flag:
    key: str
    enabled: bool
    rollout: int
    stages: tuple[int, ...]
    stage_hold_s: int
    auto_promote: bool
    guardrails: tuple[Guardrail, ...]
    rollback: RollbackPolicy
    state: str
    payload: dict[str, Any]
    version: int
    description: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: When the current stage began (the flag service's stamp), and who began it.
    stage_started_at: datetime | None = None
    stage_started_by: str | None = None

    @property
    def next_stage(self) -> int | None:
        """The first stage above the current rollout, or None at the last stage."""
        higher = [stage for stage in self.stages if stage > self.rollout]
        return min(higher) if higher else None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Flag:
        rollback = data.get("rollback") or {}
        return cls(
            key=data["key"],
            enabled=bool(data["enabled"]),
            rollout=int(data["rollout"]),
            stages=tuple(int(s) for s in data.get("stages", (10, 50, 100))),
            stage_hold_s=int(data.get("stage_hold_s", 300)),
            auto_promote=bool(data.get("auto_promote", False)),
            guardrails=tuple(Guardrail.from_json(g) for g in data.get("guardrails", ())),
            rollback=RollbackPolicy(
                consecutive_failures=int(rollback.get("consecutive_failures", 2)),
                on_no_data=rollback.get("on_no_data", "hold"),
            ),
            state=data.get("state", "draft"),
            payload=dict(data.get("payload") or {}),
            version=int(data["version"]),
            description=data.get("description") or "",
            created_at=parse_time(data.get("created_at")),
            updated_at=parse_time(data.get("updated_at")),
            stage_started_at=parse_time(data.get("stage_started_at")),
            stage_started_by=data.get("stage_started_by"),
        )


def changes_stage(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> bool:
    """Whether a change from `before` to `after` (a flag's API form; None: absent) starts a new stage.

    Creating a flag starts its first stage; deleting one ends the last.
    """
    if before is None or after is None:
        return True
    return any(before.get(name) != after.get(name) for name in STAGE_FIELDS)


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time from the API (a trailing Z accepted), or None for none."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))

"""Backtest: replay recorded metrics through the rollout policy with a simulated clock.

Run by `rollguard control backtest --flag KEY`. Starting from the flag's
configuration (guardrails, stages, hold, policy) at its first stage, it steps a
simulated clock through [start, end] every `step_s`, judges the guardrails on
the embedded store's samples exactly as the loop does (`control.checks`), and
feeds the verdicts to the same `decide()`. It reports when the policy would
have promoted or rolled back. The traffic is what was recorded: a simulated
promotion does not change which cohort the recorded calls went to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from control.checks import check_flag
from control.decisions import DEFAULT_ALPHA, ActionKind, decide
from control.metrics import MetricSource
from flags.client import Flag


@dataclass(frozen=True)
class SimulatedVerdict:
    time: datetime
    guardrail: str
    verdict: str
    value: float | None
    threshold: float
    samples: int


@dataclass(frozen=True)
class BacktestEvent:
    """A change the policy would have made at `time`."""

    time: datetime
    action: str
    rollout_before: int
    rollout_after: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["time"] = self.time.isoformat()
        return data


@dataclass(frozen=True)
class BacktestResult:
    flag: str
    start: datetime
    end: datetime
    checks: int
    events: tuple[BacktestEvent, ...]
    verdict_counts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "flag": self.flag,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "checks": self.checks,
            "verdicts": self.verdict_counts,
            "events": [e.to_json() for e in self.events],
        }


def backtest(
    flag: Flag,
    source: MetricSource,
    *,
    start: datetime,
    end: datetime,
    step_s: float = 5.0,
    start_rollout: int | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> BacktestResult:
    """Replay [start, end] through the policy for `flag`, beginning at `start_rollout` (default: first stage)."""
    rollout = (
        start_rollout if start_rollout is not None else (min(flag.stages) if flag.stages else flag.rollout)
    )
    simulated = replace(flag, enabled=True, state="rolling_out", rollout=rollout)
    max_gap_s = max(3 * step_s, 30.0)
    history: list[SimulatedVerdict] = []
    events: list[BacktestEvent] = []
    counts = {"pass": 0, "fail": 0, "no_data": 0}
    stage_started = start
    now, checks = start, 0
    while now <= end and simulated.enabled and simulated.state == "rolling_out":
        checks += 1
        for v in check_flag(simulated, source, now=now, since=stage_started, alpha=alpha):
            counts[v.verdict] += 1
            history.append(SimulatedVerdict(now, v.guardrail, v.verdict, v.value, v.threshold, v.samples))
        action = decide(simulated, history, now=now, stage_started_at=stage_started, max_gap_s=max_gap_s)
        if action.kind is ActionKind.ROLLBACK:
            events.append(BacktestEvent(now, "rollback", simulated.rollout, 0, action.reason))
            simulated = replace(simulated, enabled=False, state="rolled_back")
        elif action.kind is ActionKind.PROMOTE:
            after = action.rollout if action.rollout is not None else simulated.rollout
            events.append(
                BacktestEvent(
                    now, "complete" if action.complete else "promote", simulated.rollout, after, action.reason
                )
            )
            simulated = replace(
                simulated, rollout=after, state="complete" if action.complete else "rolling_out"
            )
            # Like the loop, the check that led to the promotion belongs to the old stage.
            stage_started = now + timedelta(microseconds=1)
            history = []
        now += timedelta(seconds=step_s)
    return BacktestResult(flag.key, start, end, checks, tuple(events), counts)

"""Backtest: replay recorded metrics through the rollout policy with a simulated clock.

Run by `rollguard control backtest --flag KEY`. Starting from the flag's
configuration (guardrails, stages, hold, policy) at its first stage, it steps a
simulated clock through [start, end] every `step_s`, judges the guardrails on
the embedded store's samples exactly as the loop does (`control.checks`), and
feeds the verdicts to the same `decide()`. It reports when the policy would
have promoted or rolled back. The traffic is what was recorded: a simulated
promotion does not change which cohort the recorded calls went to.

Given `times` (the instants the live loop checked, which are scrape times) and
the flag's audit `events`, it replays the live loop itself: the same instants,
the same stage starts (`control.stages`), the same samples, so the same
decisions (tests/control/test_backtest.py checks this against a live run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from control.checks import check_flag
from control.decisions import DEFAULT_ALPHA, GUARDED_STATES, ActionKind, decide
from control.metrics import MetricSource
from control.stages import stage_started_at
from flags.client import Event, Flag


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
    step_s: float = 1.0,
    start_rollout: int | None = None,
    alpha: float = DEFAULT_ALPHA,
    times: Sequence[datetime] | None = None,
    events: Sequence[Event] = (),
) -> BacktestResult:
    """Replay [start, end] through the policy for `flag`, beginning at `start_rollout` (default: first stage).

    Checks every `step_s` from `start`, or at `times` within [start, end]. With
    `events` (the flag's audit log) a stage starts as in the live loop;
    without, at `start` and after each simulated action.
    """
    rollout = (
        start_rollout if start_rollout is not None else (min(flag.stages) if flag.stages else flag.rollout)
    )
    simulated = replace(flag, enabled=True, state="rolling_out", rollout=rollout)
    max_gap_s = max(3 * step_s, 30.0)
    history: list[SimulatedVerdict] = []
    events_out: list[BacktestEvent] = []
    counts = {"pass": 0, "fail": 0, "no_data": 0}
    acted: list[datetime] = []
    checks = 0
    for now in _instants(start, end, step_s, times):
        if not (simulated.enabled and simulated.state in GUARDED_STATES):
            break
        seen = [e for e in events if e.time <= now]
        stage_started = stage_started_at(seen, acted, fallback=start) or start
        if stage_started > now:
            continue
        checks += 1
        for v in check_flag(simulated, source, now=now, since=stage_started, alpha=alpha):
            counts[v.verdict] += 1
            history.append(SimulatedVerdict(now, v.guardrail, v.verdict, v.value, v.threshold, v.samples))
        action = decide(simulated, history, now=now, stage_started_at=stage_started, max_gap_s=max_gap_s)
        if action.kind is ActionKind.ROLLBACK:
            events_out.append(BacktestEvent(now, "rollback", simulated.rollout, 0, action.reason))
            simulated = replace(simulated, enabled=False, state="rolled_back")
        elif action.kind is ActionKind.PROMOTE:
            after = action.rollout if action.rollout is not None else simulated.rollout
            kind = "complete" if action.complete else "promote"
            events_out.append(BacktestEvent(now, kind, simulated.rollout, after, action.reason))
            simulated = replace(
                simulated, rollout=after, state="complete" if action.complete else "rolling_out"
            )
            acted.append(now)
    return BacktestResult(flag.key, start, end, checks, tuple(events_out), counts)


def _instants(
    start: datetime, end: datetime, step_s: float, times: Sequence[datetime] | None
) -> list[datetime]:
    if times is not None:
        return sorted({t for t in times if start <= t <= end})
    out, now = [], start
    while now <= end:
        out.append(now)
        now += timedelta(seconds=step_s)
    return out

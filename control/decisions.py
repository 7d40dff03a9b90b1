"""The rollout policy: guardrail verdicts and what to do with a flag. Pure logic, no I/O.

Called by the decision loop (`control.loop`) every interval and by the
backtest (`control.backtest`) with a simulated clock, so that both follow the
same policy. The state machine is documented in docs/controller.md:

    rolling_out + enabled --(a guardrail fails `consecutive_failures` checks in a row)--> rollback (kill)
    rolling_out + enabled --(every guardrail passing for `stage_hold_s`, auto_promote)--> promote to next stage
    rolling_out + enabled --(promoted to 100, or healthy at the last stage)--------------> complete
    complete + enabled ----(a guardrail fails `consecutive_failures` checks in a row)--> rollback (kill)
    anything else (paused, draft, rolled_back, killed) -----------------------------------> noop

A complete rollout stays guarded: the optimization is as risky at 100% as on
the way there, so its guardrails keep rolling it back; it is never promoted.

No data follows the flag's `rollback.on_no_data`: "hold" (default) holds and
breaks a failure streak; "rollback" counts it as a failing check.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from itertools import groupby
from typing import TYPE_CHECKING, Protocol

from control.metrics import WindowValue
from flags.client import COMPARATIVE_METRICS

if TYPE_CHECKING:
    from flags.client import Flag, Guardrail

#: States whose guardrails the controller acts on (paused only records verdicts).
GUARDED_STATES = ("rolling_out", "complete")
#: States whose guardrails the controller judges and records: a draft or a killed flag is not judged.
JUDGED_STATES = (*GUARDED_STATES, "paused")
#: One-sided significance level of the comparative guardrail's z-test, per check.
DEFAULT_ALPHA = 0.001
#: Metrics a comparative guardrail can compare soundly: a proportion per cohort here,
#: latency histograms in `control.latency`.

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def max_gap_s(interval_s: float) -> float:
    """The longest silence between two checks that still counts as judging: 3 intervals, at least 30 s."""
    return max(3 * interval_s, 30.0)


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "no_data"


class ActionKind(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    HOLD = "hold"
    NOOP = "noop"


@dataclass(frozen=True)
class Verdict:
    """A guardrail's outcome at one check, with the value and threshold it was judged on."""

    guardrail: str
    outcome: Outcome
    value: float | None
    threshold: float
    samples: int
    detail: str = ""

    @property
    def verdict(self) -> str:
        return self.outcome.value


class PastVerdict(Protocol):
    """A recorded verdict as decide() reads it (the store's VerdictRecord fits)."""

    @property
    def time(self) -> datetime: ...
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


@dataclass(frozen=True)
class Action:
    """What to do with a flag now; `rollout` is the target of a promotion, `complete` ends the rollout."""

    kind: ActionKind
    reason: str
    rollout: int | None = None
    complete: bool = False
    guardrail: str | None = None


def evaluate(guardrail: Guardrail, window: WindowValue) -> Verdict:
    """Judge a threshold guardrail: no_data below `min_samples`, else pass while `value op threshold`."""
    if window.value is None or window.samples < guardrail.min_samples:
        return Verdict(
            guardrail.name,
            Outcome.NO_DATA,
            window.value,
            guardrail.threshold,
            window.samples,
            f"{window.samples} samples < {guardrail.min_samples} needed",
        )
    holds = _OPS[guardrail.op](window.value, guardrail.threshold)
    return Verdict(
        guardrail.name,
        Outcome.PASS if holds else Outcome.FAIL,
        window.value,
        guardrail.threshold,
        window.samples,
    )


def evaluate_comparative(
    guardrail: Guardrail, optimized: WindowValue, direct: WindowValue, *, alpha: float = DEFAULT_ALPHA
) -> Verdict:
    """Judge optimized against direct: fail only when worse by more than the margin, significantly.

    The guardrail's `threshold` is the margin on the difference of proportions
    (optimized - direct). Test: one-sided two-proportion z-test of
    H0: p_opt - p_dir <= margin against H1: p_opt - p_dir > margin, with the
    Agresti-Caffo adjustment (one success and one failure added to each
    cohort) so that a cohort with no errors still has a variance. Fails when
    the observed difference exceeds the margin and p < alpha. The verdict's
    value is the observed difference.
    """
    name, margin = guardrail.name, guardrail.threshold
    if guardrail.metric != "error_rate":
        return Verdict(
            name,
            Outcome.NO_DATA,
            None,
            margin,
            0,
            f"comparative guardrails support {COMPARATIVE_METRICS} only",
        )
    n_opt, n_dir = optimized.samples, direct.samples
    if optimized.value is None or direct.value is None or min(n_opt, n_dir) < guardrail.min_samples:
        return Verdict(
            name,
            Outcome.NO_DATA,
            None,
            margin,
            min(n_opt, n_dir),
            f"samples optimized {n_opt}, direct {n_dir} < {guardrail.min_samples} needed",
        )
    difference = optimized.value - direct.value
    z, p_value = two_proportion_test(
        optimized.value * n_opt, n_opt, direct.value * n_dir, n_dir, margin=margin
    )
    worse = difference > margin and p_value < alpha
    detail = (
        f"optimized {optimized.value:.4f} (n={n_opt}) vs direct {direct.value:.4f} (n={n_dir}): "
        f"z={z:.2f} p={p_value:.2g} alpha={alpha:g}"
    )
    return Verdict(
        name, Outcome.FAIL if worse else Outcome.PASS, difference, margin, min(n_opt, n_dir), detail
    )


def two_proportion_test(
    x1: float, n1: float, x0: float, n0: float, *, margin: float = 0.0
) -> tuple[float, float]:
    """Return (z, one-sided p-value) for H1: p1 - p0 > margin, Agresti-Caffo adjusted."""
    p1, p0 = (x1 + 1) / (n1 + 2), (x0 + 1) / (n0 + 2)
    se = math.sqrt(p1 * (1 - p1) / (n1 + 2) + p0 * (1 - p0) / (n0 + 2))
    z = (p1 - p0 - margin) / se
    return z, 0.5 * math.erfc(z / math.sqrt(2))


def decide(
    flag: Flag,
    history: Sequence[PastVerdict],
    *,
    now: datetime,
    stage_started_at: datetime | None = None,
    max_gap_s: float = 30.0,
) -> Action:
    """Decide what to do with `flag` now from its recorded verdicts (oldest first).

    Only verdicts since `stage_started_at` (the last rollout change) and of the
    flag's current guardrails count. Checks further apart than `max_gap_s`
    (the controller was down) break both failure and health streaks.
    """
    if not flag.enabled:
        return Action(ActionKind.NOOP, "flag is off (killed)")
    if flag.state == "paused":
        return Action(ActionKind.NOOP, "paused: manual override, verdicts recorded only")
    if flag.state not in GUARDED_STATES:
        return Action(ActionKind.NOOP, f"state is {flag.state}, not rolling_out or complete")
    if not flag.guardrails:
        return Action(ActionKind.HOLD, "no guardrails to judge the stage by")
    names = [g.name for g in flag.guardrails]
    relevant = [v for v in history if stage_started_at is None or v.time >= stage_started_at]
    rounds = _rounds(relevant, names)
    if not rounds or (now - rounds[-1][0]).total_seconds() > max_gap_s:
        return Action(ActionKind.HOLD, "no recent check")

    failing = {Outcome.FAIL.value}
    if flag.rollback.on_no_data == "rollback":
        failing.add(Outcome.NO_DATA.value)
    needed = max(1, flag.rollback.consecutive_failures)
    latest = rounds[-1][1]
    streaks = {name: _failing_streak(rounds, name, failing, max_gap_s) for name in names}
    for name in names:
        if streaks[name] >= needed:
            last = latest[name]
            return Action(
                ActionKind.ROLLBACK,
                f"guardrail {name} {_outcome_phrase(last.verdict)} {streaks[name]} consecutive checks: "
                f"value {_fmt(last.value)}, threshold {last.threshold:g}, {last.samples} samples",
                guardrail=name,
            )
    for name in names:
        current = latest.get(name)
        if current is None:
            return Action(ActionKind.HOLD, f"guardrail {name} not checked yet")
        if current.verdict == Outcome.FAIL.value:
            return Action(
                ActionKind.HOLD,
                f"guardrail {name} failing (value {_fmt(current.value)}, threshold {current.threshold:g}): "
                f"{streaks[name]} of {needed} consecutive failing checks needed to roll back",
                guardrail=name,
            )
        if current.verdict == Outcome.NO_DATA.value:
            return Action(
                ActionKind.HOLD, f"guardrail {name}: no data ({current.samples} samples)", guardrail=name
            )

    if flag.state == "complete":
        return Action(ActionKind.HOLD, f"complete at {flag.rollout}%: guardrails passing, still guarded")
    streak_rounds = _streak(
        rounds, lambda r: all(r.get(n) and r[n].verdict == "pass" for n in names), max_gap_s
    )
    healthy_since = rounds[len(rounds) - streak_rounds][0]
    healthy_s = (now - healthy_since).total_seconds()
    if healthy_s < flag.stage_hold_s:
        return Action(
            ActionKind.HOLD,
            f"all guardrails passing for {healthy_s:.0f}s of {flag.stage_hold_s}s at {flag.rollout}%",
        )
    if not flag.auto_promote:
        return Action(
            ActionKind.HOLD, f"healthy for {healthy_s:.0f}s at {flag.rollout}%; auto_promote is off"
        )
    target = flag.next_stage
    if target is None:
        return Action(
            ActionKind.PROMOTE,
            f"last stage {flag.rollout}% healthy for {healthy_s:.0f}s: rollout complete",
            rollout=flag.rollout,
            complete=True,
        )
    return Action(
        ActionKind.PROMOTE,
        f"all guardrails passing for {healthy_s:.0f}s at {flag.rollout}%: promote to {target}%",
        rollout=target,
        complete=target >= 100,
    )


Round = tuple[datetime, dict[str, PastVerdict]]


def _rounds(history: Sequence[PastVerdict], names: Sequence[str]) -> list[Round]:
    wanted = set(names)
    ordered = sorted((v for v in history if v.guardrail in wanted), key=lambda v: v.time)
    return [(time, {v.guardrail: v for v in group}) for time, group in groupby(ordered, key=lambda v: v.time)]


def _failing_streak(rounds: Sequence[Round], name: str, failing: set[str], max_gap_s: float) -> int:
    def matches(verdicts: dict[str, PastVerdict]) -> bool:
        verdict = verdicts.get(name)
        return verdict is not None and verdict.verdict in failing

    return _streak(rounds, matches, max_gap_s)


def _streak(
    rounds: Sequence[Round], matches: Callable[[dict[str, PastVerdict]], bool], max_gap_s: float
) -> int:
    """How many of the latest rounds in a row match, stopping at a gap longer than `max_gap_s`."""
    count = 0
    later: datetime | None = None
    for time, verdicts in reversed(rounds):
        if later is not None and (later - time).total_seconds() > max_gap_s:
            break
        if not matches(verdicts):
            break
        count += 1
        later = time
    return count


def _outcome_phrase(verdict: str) -> str:
    return "had no data for" if verdict == Outcome.NO_DATA.value else "failed"


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"

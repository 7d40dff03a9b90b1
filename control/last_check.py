"""A flag's last check as an operator reads it: the controller's latest verdicts, or why there are none.

Pure: the flag, the verdicts of the controller's newest check of it and the
lease in, a `LastCheck` out. `control.history.ControlHistory.last_check` reads
the inputs from the store; the dashboard shows the result instead of judging
the guardrails itself. The reasons follow the loop's own rules
(`control.loop`): it judges only flags in `JUDGED_STATES` that have
guardrails, records a check only when its metric source has data newer than
its last check, and a check older than `max_gap_s` of its interval no longer
counts as judging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from control.decisions import JUDGED_STATES
from control.store import ControllerStatus, VerdictRecord
from flags.client import Flag


@dataclass(frozen=True)
class LastCheck:
    """The controller's newest verdicts of one flag, or the reason it has none that count now.

    `verdicts` holds the newest check's verdicts, one per guardrail, while they are
    recent (within `stale_after_s` of now) and the flag is still judged; `judged_at` is
    that check's time even when it is old. `not_judged` says why nothing counts now;
    `notes` say what the controller does with the verdicts (paused, auto-promote off,
    stopped), whether or not there are any.
    """

    flag: str
    verdicts: tuple[VerdictRecord, ...]
    judged_at: datetime | None
    not_judged: str | None
    notes: tuple[str, ...] = ()

    @property
    def judged(self) -> bool:
        return self.not_judged is None


def last_check(
    flag: Flag,
    newest: Sequence[VerdictRecord],
    status: ControllerStatus | None,
    *,
    now: datetime,
    stale_after_s: float,
) -> LastCheck:
    """What the controller's newest check of `flag` (`newest`, all of one time) says at `now`."""
    judged_at = max((v.time for v in newest), default=None)
    reason = _not_judged(flag, judged_at, status, now=now, stale_after_s=stale_after_s)
    if reason is not None:
        return LastCheck(flag.key, (), judged_at, reason, _notes(flag))
    stopped = status is None or not status.is_live
    notes = ("the controller has stopped: nothing acts on these verdicts",) if stopped else ()
    return LastCheck(flag.key, tuple(newest), judged_at, None, notes + _notes(flag))


def _not_judged(
    flag: Flag,
    judged_at: datetime | None,
    status: ControllerStatus | None,
    *,
    now: datetime,
    stale_after_s: float,
) -> str | None:
    if not flag.guardrails:
        return "no guardrails to judge"
    if flag.state == "draft":
        return "draft: the controller judges a flag once it rolls out"
    if flag.state not in JUDGED_STATES:
        return "killed: the controller does not judge a killed flag"
    if judged_at is not None and (now - judged_at).total_seconds() <= stale_after_s:
        return None
    if status is None:
        return "no controller has run against this store"
    if not status.is_live:
        return "no controller running"
    evaluated = status.last_evaluation_at
    if evaluated is None or (now - evaluated).total_seconds() > stale_after_s:
        return f"controller {status.holder} holds the lease but has not evaluated lately"
    return "no fresh metrics: the controller checks a flag only on data newer than its last check"


def _notes(flag: Flag) -> tuple[str, ...]:
    """What the controller does with a judged flag's verdicts, when it is not the usual."""
    if not flag.guardrails or flag.state not in JUDGED_STATES:
        return ()
    if flag.state == "paused":
        return ("paused: judged and recorded, never acted on",)
    if not flag.enabled:
        return ("off: judged and recorded, never acted on",)
    if flag.state == "rolling_out" and not flag.auto_promote:
        return ("auto-promote off: a failing guardrail still rolls it back, promotion is manual",)
    return ()

"""A flag's last check: the controller's recent verdicts, or why it is not judged (pure, table-tested)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from control.last_check import last_check
from control.store import ControllerStatus, VerdictRecord
from flags.client import Flag, Guardrail, RollbackPolicy

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ERRORS = Guardrail("error_rate", "<=", 0.01, window_s=60, min_samples=5, path="optimized")
STALE_S = 30.0

FLAG = Flag(
    key="f",
    enabled=True,
    rollout=10,
    stages=(10, 50, 100),
    stage_hold_s=60,
    auto_promote=True,
    guardrails=(ERRORS,),
    rollback=RollbackPolicy(2, "hold"),
    state="rolling_out",
    payload={},
    version=1,
)


def checked(seconds_ago: float, outcome: str = "pass") -> list[VerdictRecord]:
    """The verdicts of one check `seconds_ago` before NOW."""
    return [
        VerdictRecord(
            NOW - timedelta(seconds=seconds_ago), "f", ERRORS.name, outcome, 0.0, 0.01, 400, "error_rate"
        )
    ]


def lease(*, live: bool = True, evaluated_ago: float | None = 1.0) -> ControllerStatus:
    return ControllerStatus(
        holder="controller-a",
        acquired_at=NOW - timedelta(hours=1),
        expires_at=NOW + timedelta(seconds=10 if live else -10),
        last_evaluation_at=None if evaluated_ago is None else NOW - timedelta(seconds=evaluated_ago),
        is_live=live,
    )


@pytest.mark.parametrize(
    "flag, newest, status, not_judged, notes",
    [
        # A controller judged it 3 s ago: its verdicts count.
        (FLAG, checked(3), lease(), None, ()),
        # ... and still count for a few intervals after it stopped, with a note that nothing acts on them.
        (
            FLAG,
            checked(3, "fail"),
            lease(live=False),
            None,
            ("the controller has stopped: nothing acts on these verdicts",),
        ),
        # Older than a few intervals: not judged, and why.
        (FLAG, checked(31), lease(live=False), "no controller running", ()),
        (FLAG, [], None, "no controller has run against this store", ()),
        (
            FLAG,
            checked(31),
            lease(evaluated_ago=40),
            "controller controller-a holds the lease but has not evaluated lately",
            (),
        ),
        (
            FLAG,
            checked(31),
            lease(),
            "no fresh metrics: the controller checks a flag only on data newer than its last check",
            (),
        ),
        # What the controller never judges, however recent its last check of it.
        (
            replace(FLAG, enabled=False, state="rolled_back"),
            checked(1),
            lease(),
            "killed: the controller does not judge a killed flag",
            (),
        ),
        (
            replace(FLAG, enabled=False, rollout=0, state="draft"),
            [],
            lease(),
            "draft: the controller judges a flag once it rolls out",
            (),
        ),
        (replace(FLAG, guardrails=()), [], lease(), "no guardrails to judge", ()),
        # Judged, but the controller will not act on it the usual way.
        (
            replace(FLAG, state="paused"),
            checked(2),
            lease(),
            None,
            ("paused: judged and recorded, never acted on",),
        ),
        (
            replace(FLAG, state="paused"),
            [],
            lease(live=False),
            "no controller running",
            ("paused: judged and recorded, never acted on",),
        ),
        (
            replace(FLAG, auto_promote=False),
            checked(2),
            lease(),
            None,
            ("auto-promote off: a failing guardrail still rolls it back, promotion is manual",),
        ),
        (replace(FLAG, auto_promote=False, state="complete"), checked(2), lease(), None, ()),
        (
            replace(FLAG, enabled=False),
            checked(2),
            lease(),
            None,
            ("off: judged and recorded, never acted on",),
        ),
    ],
)
def test_last_check(
    flag: Flag,
    newest: list[VerdictRecord],
    status: ControllerStatus | None,
    not_judged: str | None,
    notes: tuple[str, ...],
) -> None:
    check = last_check(flag, newest, status, now=NOW, stale_after_s=STALE_S)

    assert check.not_judged == not_judged
    assert check.judged is (not_judged is None)
    assert check.verdicts == (tuple(newest) if not_judged is None else ())
    assert check.judged_at == (newest[0].time if newest else None)
    assert check.notes == notes


def test_the_limit_of_recent_is_inclusive() -> None:
    assert last_check(FLAG, checked(STALE_S), lease(), now=NOW, stale_after_s=STALE_S).judged
    assert not last_check(FLAG, checked(STALE_S + 0.001), lease(), now=NOW, stale_after_s=STALE_S).judged

"""When the current stage began: from the flag's stamp (the loop) and from the audit log (the backtest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from control.stages import AFTER_ACTION, current_stage_started_at, stage_started_at
from flags.client import Event, Flag, RollbackPolicy

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def flag(**changes: Any) -> Flag:
    fields: dict[str, Any] = {
        "key": "opt",
        "enabled": True,
        "rollout": 10,
        "stages": (10, 50, 100),
        "stage_hold_s": 60,
        "auto_promote": True,
        "guardrails": (),
        "rollback": RollbackPolicy(),
        "state": "rolling_out",
        "payload": {},
        "version": 3,
        "updated_at": T0 + timedelta(minutes=9),
    }
    return Flag(**{**fields, **changes})


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("stamp", "by", "last_acted", "expected"),
    [
        pytest.param(at(5), "alice", None, at(5), id="operator-stamp"),
        pytest.param(at(5), "alice", at(2), at(5), id="operator-change-after-own-action"),
        pytest.param(at(5), "alice", at(6), at(6) + AFTER_ACTION, id="own-action-after-operator-stamp"),
        # The controller's own change counts at the check that decided it, not at the stamp the
        # flag service put on it, whichever clock is ahead.
        pytest.param(at(5), "controller", at(4.9), at(4.9) + AFTER_ACTION, id="own-stamp-check-before"),
        pytest.param(at(5), "controller", at(7), at(7) + AFTER_ACTION, id="own-stamp-check-after"),
        pytest.param(at(5), "controller", None, at(5), id="own-stamp-no-store"),
        pytest.param(None, None, None, at(9), id="service-without-stamp"),
    ],
)
def test_current_stage_start(
    stamp: datetime | None, by: str | None, last_acted: datetime | None, expected: datetime
) -> None:
    assert current_stage_started_at(flag(stage_started_at=stamp, stage_started_by=by), last_acted) == expected


def event(event_id: int, minutes: float, actor: str, before: dict[str, Any], after: dict[str, Any]) -> Event:
    return Event(event_id, at(minutes), "opt", actor, "update", None, before, after)


@pytest.mark.parametrize(
    ("before", "after", "starts"),
    [
        pytest.param({"rollout": 10}, {"rollout": 50}, True, id="rollout"),
        pytest.param({"enabled": True}, {"enabled": False}, True, id="enabled"),
        pytest.param({"state": "rolling_out"}, {"state": "paused"}, True, id="state"),
        pytest.param({"payload": {"ttl_s": 5}}, {"payload": {"ttl_s": 60}}, True, id="payload"),
        pytest.param({"description": "a"}, {"description": "b"}, False, id="description"),
        pytest.param({"guardrails": []}, {"guardrails": [{"metric": "error_rate"}]}, False, id="guardrails"),
        pytest.param({"stage_hold_s": 60}, {"stage_hold_s": 30}, False, id="hold"),
    ],
)
def test_the_audit_log_rule_matches_the_stamp(
    before: dict[str, Any], after: dict[str, Any], starts: bool
) -> None:
    events = [Event(1, at(0), "opt", "alice", "create", None, None, {}), event(2, 3, "bob", before, after)]
    assert stage_started_at(events, (), fallback=None) == (at(3) if starts else at(0))

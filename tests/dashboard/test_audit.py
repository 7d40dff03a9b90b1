"""The audit log page's change column: what an event changed, without the service's bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime

from dashboard.audit import changes
from flags.client import Event


def test_a_rollout_change_shows_the_rollout_not_the_stamps_it_moved() -> None:
    before = {
        "rollout": 10,
        "version": 3,
        "updated_at": "a",
        "stage_started_at": "a",
        "stage_started_by": "x",
    }
    after = {"rollout": 50, "version": 4, "updated_at": "b", "stage_started_at": "b", "stage_started_by": "y"}
    event = Event(7, datetime(2026, 11, 20, tzinfo=UTC), "opt", "y", "set_rollout", None, before, after)
    assert changes(event) == "rollout: 10 -> 50"

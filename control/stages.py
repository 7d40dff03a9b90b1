"""When a flag's current stage began: the rule the decision loop and the backtest share.

A stage begins with the latest audit event by someone other than the
controller that changed `rollout`, `enabled` or `state` (or created the flag),
or just after the controller's own last promotion or rollback, whichever is
later: the check that led to an action belongs to the stage before it. The
controller's own actions count at the instant of the check that decided them,
not when the flag service recorded them, so that a replay of the same checks
(`control.backtest`) finds the same stages. Pure: events and times in, a time out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from flags.client import Event

#: Flag fields whose change starts a new stage (and restarts the hold).
STAGE_FIELDS = ("rollout", "enabled", "state")
#: How long after the controller's own action its next stage starts.
AFTER_ACTION = timedelta(milliseconds=1)
#: The audit actor of the controller's own changes.
CONTROLLER_ACTOR = "controller"
#: The controller's recorded decisions that end a stage (each changes `rollout`, `enabled` or `state`).
STAGE_ACTIONS = ("promote", "complete", "rollback")


def stage_started_at(
    events: Sequence[Event], acted: Iterable[datetime], *, fallback: datetime | None
) -> datetime | None:
    """Return the start of the current stage from the flag's audit `events` and the controller's `acted` times."""
    started = next(
        (
            e.time
            for e in sorted(events, key=lambda e: e.id, reverse=True)
            if e.actor != CONTROLLER_ACTOR and starts_stage(e)
        ),
        fallback,
    )
    after = [time + AFTER_ACTION for time in acted if started is None or time >= started]
    if started is None:
        return max(after) if after else None
    return max([started, *after])


def starts_stage(event: Event) -> bool:
    """Whether an audit event created the flag or changed one of STAGE_FIELDS."""
    if event.action == "create" or event.before is None or event.after is None:
        return True
    return any(event.before.get(name) != event.after.get(name) for name in STAGE_FIELDS)


def rollout_at(
    events: Sequence[Event], at: datetime, *, acted: Iterable[tuple[datetime, int]] = ()
) -> int | None:
    """The flag's rollout just after `at`.

    It is set by the latest audit event at or before `at` by someone other than
    the controller, or by the controller's own later action (`acted`: the check
    instant and the rollout after it), for the same reason as in
    `stage_started_at`: the flag service records the controller's changes on
    the wall clock, the checks happen on the check clock.
    """
    changes = [
        (event.time, int(event.after["rollout"]))
        for event in events
        if event.actor != CONTROLLER_ACTOR
        and event.time <= at
        and event.after is not None
        and isinstance(event.after.get("rollout"), int)
    ]
    changes += [(time, rollout) for time, rollout in acted if time <= at]
    return max(changes, key=lambda change: change[0])[1] if changes else None

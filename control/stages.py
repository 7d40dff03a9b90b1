"""When a flag's current stage began: the rule the decision loop and the backtest share.

A stage begins with the latest change by someone other than the controller
that created the flag or changed one of `flags.model.STAGE_FIELDS` (enabled,
rollout, state, payload), or just after the controller's own last promotion or
rollback, whichever is later: the check that led to an action belongs to the
stage before it. The controller's own actions count at the instant of the check
that decided them, not when the flag service recorded them, so that a replay
of the same checks (`control.backtest`) finds the same stages.

The loop reads the latest change from the flag itself (`stage_started_at` and
`stage_started_by`, stamped by the flag service in the transaction of the
change, at the time of its audit event): `current_stage_started_at`. The
backtest, which replays a past window with many stages, finds each change in
the audit log: `stage_started_at`. Pure: flags, events and times in, a time out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from flags.client import Event, Flag
from flags.model import changes_stage

#: How long after the controller's own action its next stage starts.
AFTER_ACTION = timedelta(milliseconds=1)
#: The audit actor of the controller's own changes.
CONTROLLER_ACTOR = "controller"
#: The controller's recorded decisions that end a stage (each changes `rollout`, `enabled` or `state`).
STAGE_ACTIONS = ("promote", "complete", "rollback")


def current_stage_started_at(flag: Flag, last_acted: datetime | None) -> datetime | None:
    """Return the start of `flag`'s current stage from its stamp and the check of the controller's `last_acted`.

    A stamp the controller's own change set is replaced by the instant of the
    check that decided it; without the stamp (a flag service that predates it)
    the flag's last change stands in.
    """
    stamp = flag.stage_started_at or flag.updated_at
    if flag.stage_started_by == CONTROLLER_ACTOR and last_acted is not None:
        return last_acted + AFTER_ACTION
    return _after_actions(stamp, () if last_acted is None else (last_acted,))


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
    return _after_actions(started, acted)


def _after_actions(started: datetime | None, acted: Iterable[datetime]) -> datetime | None:
    """The later of `started` and just after each of the controller's `acted` checks since it."""
    after = [time + AFTER_ACTION for time in acted if started is None or time >= started]
    if started is None:
        return max(after) if after else None
    return max([started, *after])


def starts_stage(event: Event) -> bool:
    """Whether an audit event created the flag or changed one of `flags.model.STAGE_FIELDS`."""
    return event.action == "create" or changes_stage(event.before, event.after)


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

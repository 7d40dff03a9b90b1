"""Audit events as the audit log page shows them: filters and table rows.

Pure functions over `flags.client.Event`; `views/audit.py` calls them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flags.client import Event


def matches(event: Event, *, actor: str = "", action: str = "") -> bool:
    """Whether `event` passes the page's text filters (case-insensitive substrings)."""
    return actor.lower() in event.actor.lower() and action.lower() in event.action.lower()


#: Fields the flag service keeps itself on every change: the event's own time and actor say it.
_BOOKKEEPING = ("version", "updated_at", "stage_started_at", "stage_started_by")


def changes(event: Event) -> str:
    """The fields an event changed, as `field: before -> after`."""
    before, after = event.before or {}, event.after or {}
    changed = [
        f"{name}: {before.get(name)!r} -> {after.get(name)!r}"
        for name in sorted(set(before) | set(after))
        if name not in _BOOKKEEPING and before.get(name) != after.get(name)
    ]
    return "; ".join(changed)


def event_rows(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Table rows, newest first as given."""
    return [
        {
            "time": f"{event.time:%Y-%m-%d %H:%M:%S}",
            "flag": event.flag or "",
            "actor": event.actor,
            "action": event.action,
            "reason": event.reason or "",
            "changes": changes(event),
        }
        for event in events
    ]

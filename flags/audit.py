"""The audit log: who changed what and why, written in the same transaction as the change.

`flags.store`, `flags.tokens` and `flags.imports` call `record`; the admin API
reads it through `query`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.orm import Session

from flags.models import EventRow, utcnow

logger = logging.getLogger(__name__)

CHANGES = Counter("rollguard_flags_changes", "Audited changes made through this process", ["action"])


@dataclass(frozen=True)
class Actor:
    """Who acts: `name` goes into the log as the actor, `token_name` names the credential used."""

    name: str
    token_name: str


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    flag: str | None,
    reason: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    time: datetime | None = None,
) -> EventRow:
    """Append one event to the log in the caller's transaction, at `time` (naive UTC; default now)."""
    row = EventRow(
        time=time or utcnow(),
        flag=flag,
        actor=actor.name,
        token_name=actor.token_name,
        action=action,
        reason=reason,
        before=before,
        after=after,
    )
    session.add(row)
    session.flush()
    CHANGES.labels(action).inc()
    logger.info(
        "%s %s by %s (token %s): %s", action, flag or "-", actor.name, actor.token_name, reason or "-"
    )
    return row


def to_utc_naive(value: datetime) -> datetime:
    """Convert an aware datetime (or naive UTC) to the naive UTC form stored in the tables."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def iso(value: datetime | None) -> str | None:
    """Render a stored naive-UTC timestamp as ISO 8601 with a Z."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def query(
    session: Session,
    *,
    flag: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    order: str = "desc",
) -> list[dict[str, Any]]:
    """Events matching the filters, newest first unless `order` is "asc"."""
    stmt = select(EventRow)
    if flag:
        stmt = stmt.where(EventRow.flag == flag)
    if since:
        stmt = stmt.where(EventRow.time >= to_utc_naive(since))
    if until:
        stmt = stmt.where(EventRow.time <= to_utc_naive(until))
    stmt = stmt.order_by(EventRow.id.asc() if order == "asc" else EventRow.id.desc()).limit(limit)
    return [event_json(row) for row in session.scalars(stmt)]


def event_json(row: EventRow) -> dict[str, Any]:
    """The API form of an event."""
    return {
        "id": row.id,
        "time": iso(row.time),
        "flag": row.flag,
        "actor": row.actor,
        "token_name": row.token_name,
        "action": row.action,
        "reason": row.reason,
        "before": row.before,
        "after": row.after,
    }

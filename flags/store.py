"""Rollguard flags: create, change, kill, resume, delete, each audited in one transaction.

The admin API (`flags.admin`) and the importer call these inside
`Database.write()`, so the global revision is already bumped and writers are
serialised when they read the current version. A change of one of
`flags.model.STAGE_FIELDS` (and a create) stamps `stage_started_at` and
`stage_started_by` in the same transaction, with the time of its audit event.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flags import audit
from flags.audit import Actor
from flags.errors import Conflict, NotFound
from flags.model import changes_stage
from flags.models import FlagRow, UnleashFeatureRow, utcnow

DEFAULT_STAGES = [10, 50, 100]
DEFAULT_ROLLBACK = {"consecutive_failures": 2, "on_no_data": "hold"}
MUTABLE_FIELDS = (
    "description",
    "enabled",
    "rollout",
    "stages",
    "stage_hold_s",
    "auto_promote",
    "guardrails",
    "rollback",
    "state",
    "payload",
)


def flag_json(row: FlagRow) -> dict[str, Any]:
    """The API form of a flag."""
    return {
        "key": row.key,
        "description": row.description,
        "enabled": row.enabled,
        "rollout": row.rollout,
        "stages": list(row.stages),
        "stage_hold_s": row.stage_hold_s,
        "auto_promote": row.auto_promote,
        "guardrails": list(row.guardrails),
        "rollback": dict(row.rollback),
        "state": row.state,
        "payload": dict(row.payload),
        "version": row.version,
        "created_at": audit.iso(row.created_at),
        "updated_at": audit.iso(row.updated_at),
        "stage_started_at": audit.iso(row.stage_started_at),
        "stage_started_by": row.stage_started_by,
    }


def list_flags(session: Session) -> list[dict[str, Any]]:
    """Every flag, ordered by key."""
    return [flag_json(row) for row in session.scalars(select(FlagRow).order_by(FlagRow.key))]


def get_flag(session: Session, key: str) -> dict[str, Any]:
    """One flag; NotFound if there is none with that key."""
    return flag_json(_row(session, key))


def _row(session: Session, key: str) -> FlagRow:
    row = session.get(FlagRow, key)
    if row is None:
        raise NotFound(f"no flag {key!r}", code="flag_not_found")
    return row


def _check_version(row: FlagRow, version: int | None) -> None:
    if version is not None and version != row.version:
        raise Conflict(
            f"flag {row.key!r} is at version {row.version}, the write carried {version}",
            code="version_conflict",
            # The fresh state rides along, so the caller can show it without another read.
            details={"current_version": row.version, "sent_version": version, "current": flag_json(row)},
        )


def create_flag(
    session: Session, *, actor: Actor, fields: dict[str, Any], reason: str | None
) -> dict[str, Any]:
    """Create a flag from validated fields; Conflict if the key is taken."""
    key = fields["key"]
    if session.get(FlagRow, key) is not None or session.get(UnleashFeatureRow, key) is not None:
        raise Conflict(f"a flag or feature named {key!r} exists", code="flag_exists")
    now = utcnow()
    row = FlagRow(
        key=key,
        description=fields.get("description", ""),
        enabled=fields.get("enabled", False),
        rollout=fields.get("rollout", 0),
        stages=fields.get("stages", list(DEFAULT_STAGES)),
        stage_hold_s=fields.get("stage_hold_s", 300),
        auto_promote=fields.get("auto_promote", False),
        guardrails=fields.get("guardrails", []),
        rollback={**DEFAULT_ROLLBACK, **fields.get("rollback", {})},
        state=fields.get("state") or _initial_state(fields),
        payload=fields.get("payload", {}),
        version=1,
        created_at=now,
        updated_at=now,
        stage_started_at=now,
        stage_started_by=actor.name,
    )
    session.add(row)
    session.flush()
    after = flag_json(row)
    audit.record(
        session, actor=actor, action="create", flag=key, reason=reason, before=None, after=after, time=now
    )
    return after


def _initial_state(fields: dict[str, Any]) -> str:
    if not fields.get("enabled", False):
        return "draft"
    return _state_after_rollout("draft", fields.get("rollout", 0))


def _apply(
    session: Session,
    row: FlagRow,
    *,
    actor: Actor,
    action: str,
    changes: dict[str, Any],
    reason: str | None,
) -> dict[str, Any]:
    """Apply changes, bump the version and log it; a change that changes nothing writes nothing."""
    before = flag_json(row)
    if "rollback" in changes:
        changes = {**changes, "rollback": {**row.rollback, **changes["rollback"]}}
    if all(before.get(name) == value for name, value in changes.items()):
        return before
    now = utcnow()
    if changes_stage(before, {**before, **changes}):
        row.stage_started_at, row.stage_started_by = now, actor.name
    for name, value in changes.items():
        setattr(row, name, value)
    row.version += 1
    row.updated_at = now
    session.flush()
    after = flag_json(row)
    audit.record(
        session, actor=actor, action=action, flag=row.key, reason=reason, before=before, after=after, time=now
    )
    return after


def update_flag(
    session: Session,
    *,
    actor: Actor,
    key: str,
    changes: dict[str, Any],
    version: int,
    reason: str | None,
) -> dict[str, Any]:
    """Change fields of a flag at `version`; Conflict if the version is stale."""
    row = _row(session, key)
    _check_version(row, version)
    return _apply(session, row, actor=actor, action="update", changes=changes, reason=reason)


def _state_after_rollout(state: str, rollout: int) -> str:
    # A paused or rolled-back flag stays so until an operator resumes it.
    if state in ("paused", "rolled_back"):
        return state
    if rollout >= 100:
        return "complete"
    if rollout == 0 and state == "draft":
        return "draft"
    return "rolling_out"


def set_rollout(
    session: Session,
    *,
    actor: Actor,
    key: str,
    rollout: int,
    version: int | None,
    reason: str | None,
) -> dict[str, Any]:
    """Set the rollout percentage; the state follows (rolling_out, or complete at 100)."""
    row = _row(session, key)
    _check_version(row, version)
    changes = {"rollout": rollout, "state": _state_after_rollout(row.state, rollout)}
    return _apply(session, row, actor=actor, action="set_rollout", changes=changes, reason=reason)


def kill(
    session: Session, *, actor: Actor, key: str, reason: str | None, version: int | None = None
) -> dict[str, Any]:
    """Switch the flag off for everyone and mark it rolled back; idempotent."""
    row = _row(session, key)
    _check_version(row, version)
    changes = {"enabled": False, "state": "rolled_back"}
    return _apply(session, row, actor=actor, action="kill", changes=changes, reason=reason)


def resume(
    session: Session, *, actor: Actor, key: str, reason: str | None, version: int | None = None
) -> dict[str, Any]:
    """Switch the flag back on at its current rollout; idempotent."""
    row = _row(session, key)
    _check_version(row, version)
    changes = {"enabled": True, "state": "rolling_out"}
    return _apply(session, row, actor=actor, action="resume", changes=changes, reason=reason)


def delete_flag(session: Session, *, actor: Actor, key: str, version: int | None, reason: str | None) -> None:
    """Delete a flag; its audit events stay."""
    row = _row(session, key)
    _check_version(row, version)
    before = flag_json(row)
    session.delete(row)
    session.flush()
    audit.record(session, actor=actor, action="delete", flag=key, reason=reason, before=before, after=None)


def upsert_flag(
    session: Session, *, actor: Actor, fields: dict[str, Any], reason: str | None
) -> dict[str, Any]:
    """Create the flag or overwrite its fields (used by import)."""
    row = session.get(FlagRow, fields["key"])
    if row is None:
        return create_flag(session, actor=actor, fields=fields, reason=reason)
    changes = {name: fields[name] for name in MUTABLE_FIELDS if name in fields}
    return _apply(session, row, actor=actor, action="import", changes=changes, reason=reason)

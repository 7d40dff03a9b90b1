"""when each flag's current stage started, and who started it

Backfilled from the audit log: the newest event of the flag that created it or
changed one of its stage fields, else the flag's creation time (actor unknown).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 20:00:00.000000
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The rule as of this revision (flags.model.STAGE_FIELDS then), frozen here so that a later
# change of the rule does not change what this migration did.
_STAGE_FIELDS = ("enabled", "rollout", "state", "payload")

_flags = sa.table(
    "flags",
    sa.column("key", sa.String),
    sa.column("created_at", sa.DateTime),
    sa.column("stage_started_at", sa.DateTime),
    sa.column("stage_started_by", sa.String),
)
_events = sa.table(
    "events",
    sa.column("id", sa.Integer),
    sa.column("time", sa.DateTime),
    sa.column("flag", sa.String),
    sa.column("actor", sa.String),
    sa.column("action", sa.String),
    sa.column("before", sa.JSON),
    sa.column("after", sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stage_started_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("stage_started_by", sa.String(length=200), nullable=True))
    connection = op.get_bind()
    for key, created_at in connection.execute(sa.select(_flags.c.key, _flags.c.created_at)).all():
        started_at, started_by = _stage_start(connection, key) or (created_at, None)
        connection.execute(
            _flags.update()
            .where(_flags.c.key == key)
            .values(stage_started_at=started_at, stage_started_by=started_by)
        )
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.alter_column("stage_started_at", existing_type=sa.DateTime(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.drop_column("stage_started_by")
        batch_op.drop_column("stage_started_at")


def _stage_start(connection: sa.Connection, key: str) -> tuple[Any, str] | None:
    """(time, actor) of the newest event that started `key`'s current stage, None when there is none."""
    newest_first = (
        sa.select(_events.c.time, _events.c.actor, _events.c.action, _events.c.before, _events.c.after)
        .where(_events.c.flag == key)
        .order_by(_events.c.id.desc())
        .execution_options(yield_per=500)
    )
    result = connection.execute(newest_first)
    try:
        for time, actor, action, before, after in result:
            if action == "delete":
                # An older flag of the same key: the current one was created after it.
                return None
            if before is None or after is None or action == "create":
                return time, actor
            if any(before.get(name) != after.get(name) for name in _STAGE_FIELDS):
                return time, actor
        return None
    finally:
        result.close()

"""Schema migrations upgrade a database that already holds flags and their audit log.

Each test builds the previous schema with Alembic on a real SQLite file and a
real PostgreSQL database, writes rows as the service of that time did, then
runs the service's own `migrate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from flags.db import Database, make_engine, migrate
from flags.store import get_flag

T0 = datetime(2026, 11, 20, 9, 0, 0)

_flags = sa.table(
    "flags",
    *(sa.column(name, sa.String) for name in ("key", "description", "state")),
    *(sa.column(name, sa.Integer) for name in ("rollout", "stage_hold_s", "version")),
    *(sa.column(name, sa.Boolean) for name in ("enabled", "auto_promote")),
    *(sa.column(name, sa.JSON) for name in ("stages", "guardrails", "rollback", "payload")),
    *(sa.column(name, sa.DateTime) for name in ("created_at", "updated_at")),
)
_events = sa.table(
    "events",
    sa.column("time", sa.DateTime),
    *(sa.column(name, sa.String) for name in ("flag", "actor", "token_name", "action", "reason")),
    *(sa.column(name, sa.JSON) for name in ("before", "after")),
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'flags.db'}"
        return
    yield request.getfixturevalue("fresh_postgres_url")


def _upgrade(engine: sa.Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", "flags:migrations")
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        conn.commit()


def _downgrade(engine: sa.Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", "flags:migrations")
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
        conn.commit()


def _state(rollout: int, *, enabled: bool = True, payload: dict[str, Any] | None = None, **rest: Any) -> Any:
    """A flag's API form as the audit log of revision 0002 holds it (the fields that matter here)."""
    return {
        "enabled": enabled,
        "rollout": rollout,
        "state": "rolling_out" if enabled else "rolled_back",
        "payload": payload or {},
        "description": "",
        "guardrails": [],
        **rest,
    }


class _History:
    """Flags and audit events written straight into a revision-0002 database."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def flag(self, key: str, created_at: datetime, **state: Any) -> None:
        self.conn.execute(
            _flags.insert().values(
                key=key,
                description="",
                enabled=state.get("enabled", True),
                rollout=state.get("rollout", 10),
                stages=[10, 50, 100],
                stage_hold_s=300,
                auto_promote=True,
                guardrails=[],
                rollback={"consecutive_failures": 2, "on_no_data": "hold"},
                state=state.get("state", "rolling_out"),
                payload=state.get("payload", {}),
                version=1,
                created_at=created_at,
                updated_at=created_at,
            )
        )

    def event(self, key: str, minute: int, actor: str, action: str, before: Any, after: Any) -> datetime:
        time = T0 + timedelta(minutes=minute)
        self.conn.execute(
            _events.insert().values(
                time=time, flag=key, actor=actor, token_name="t", action=action, before=before, after=after
            )
        )
        return time


def test_upgrade_backfills_the_stage_start_from_the_audit_log(database_url: str) -> None:
    engine = make_engine(database_url)
    _upgrade(engine, "0002")
    expected: dict[str, tuple[datetime, str | None]] = {}
    with engine.begin() as conn:
        h = _History(conn)

        # Promoted by the controller, then edited in ways that change no exposure.
        h.flag("promoted", T0, rollout=50)
        h.event("promoted", 0, "alice", "create", None, _state(10))
        promoted = h.event("promoted", 5, "controller", "set_rollout", _state(10), _state(50))
        h.event("promoted", 6, "bob", "update", _state(50), _state(50, description="why"))
        h.event("promoted", 7, "bob", "update", _state(50), _state(50, guardrails=[{"metric": "error_rate"}]))
        expected["promoted"] = (promoted, "controller")

        # Only edits since its creation: the create started the stage.
        h.flag("described", T0)
        created = h.event("described", 1, "alice", "create", None, _state(10))
        for minute in range(2, 130):  # more than a page of the audit log
            h.event("described", minute, "bob", "update", _state(10), _state(10, description=str(minute)))
        expected["described"] = (created, "alice")

        # A new payload is a new exposure.
        h.flag("retuned", T0, payload={"ttl_s": 60})
        h.event("retuned", 0, "alice", "create", None, _state(10, payload={"ttl_s": 5}))
        retuned = h.event(
            "retuned",
            3,
            "tuner",
            "update",
            _state(10, payload={"ttl_s": 5}),
            _state(10, payload={"ttl_s": 60}),
        )
        expected["retuned"] = (retuned, "tuner")

        # Killed: a stage change by whoever killed it.
        h.flag("killed", T0, enabled=False, state="rolled_back")
        h.event("killed", 0, "alice", "create", None, _state(10))
        killed = h.event("killed", 2, "alertmanager", "kill", _state(10), _state(10, enabled=False))
        expected["killed"] = (killed, "alertmanager")

        # Deleted and created again: the new flag's creation, not the old flag's history.
        h.event("again", 0, "alice", "create", None, _state(10))
        h.event("again", 1, "alice", "set_rollout", _state(10), _state(50))
        h.event("again", 2, "alice", "delete", _state(50), None)
        h.flag("again", T0 + timedelta(minutes=3))
        recreated = h.event("again", 3, "carol", "create", None, _state(10))
        h.event("again", 4, "carol", "update", _state(10), _state(10, description="back"))
        expected["again"] = (recreated, "carol")

        # No audit events at all: its creation time, by no one known.
        h.flag("orphan", T0 - timedelta(days=1))
        expected["orphan"] = (T0 - timedelta(days=1), None)
    engine.dispose()

    engine = make_engine(database_url)
    migrate(engine)
    engine.dispose()
    db = Database(database_url)
    with db.session() as session:
        stamped = {key: get_flag(session, key) for key in expected}
    db.dispose()
    for key, (time, actor) in expected.items():
        flag = stamped[key]
        assert (flag["stage_started_at"], flag["stage_started_by"]) == (f"{time.isoformat()}Z", actor), key


def test_the_stamp_columns_go_away_on_downgrade(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    _downgrade(engine, "0002")
    columns = {column["name"] for column in sa.inspect(engine).get_columns("flags")}
    assert "stage_started_at" not in columns and "stage_started_by" not in columns
    _upgrade(engine, "head")
    columns = {column["name"] for column in sa.inspect(engine).get_columns("flags")}
    assert {"stage_started_at", "stage_started_by"} <= columns
    engine.dispose()

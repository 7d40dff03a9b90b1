"""Database access of the flag service: engine, sessions, migrations, revision.

`flags.cli serve` calls `migrate` once before starting workers; `create_app`
builds a `Database` per process. Several processes (gunicorn workers, or
several `serve` commands on one PostgreSQL database) share the data safely:
migrations run under a lock (a PostgreSQL advisory lock, or a file lock next to
a SQLite file), and every write transaction first bumps the single revision row,
which serialises writers and tells readers that something changed.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, select, text, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from flags.errors import connection_lost
from flags.models import RevisionRow

logger = logging.getLogger(__name__)

_MIGRATION_LOCK_ID = 727_274_242
# PostgreSQL NOTIFY channel of committed writes; `flags.notices` listens on it.
CHANGE_CHANNEL = "rollguard_flags_changed"
T = TypeVar("T")


def make_engine(url: str) -> Engine:
    """Create an engine; for SQLite, make the directory and use WAL with a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            conn.commit()
            try:
                yield conn
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID})
                conn.commit()
        return
    database = engine.url.database
    lock_path = Path(f"{database}.migrate.lock") if database and database != ":memory:" else None
    if lock_path is None:
        with engine.connect() as conn:
            yield conn
        return
    with open(lock_path, "a+b") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def migrate(engine: Engine, after: Callable[[Session], None] | None = None) -> None:
    """Bring the schema to the newest revision, then run `after` under the same lock."""
    config = Config()
    config.set_main_option("script_location", "flags:migrations")
    with _migration_lock(engine) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        conn.commit()
        with Session(bind=conn) as session:
            if session.get(RevisionRow, 1) is None:
                session.add(RevisionRow(id=1, value=0))
            if after is not None:
                after(session)
            session.commit()
        conn.commit()


class Database:
    """The engine and session factory one process uses."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.after_commit: list[Callable[[], None]] = []

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reads and for writes that change nothing served (no revision bump)."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction that starts by bumping the global revision.

        Bumping first takes the write lock (SQLite) or the revision row lock
        (PostgreSQL) before anything is read, so read-check-write sequences in
        the transaction cannot interleave with another writer.
        """
        with self._sessions() as session:
            with session.begin():
                session.execute(
                    update(RevisionRow).where(RevisionRow.id == 1).values(value=RevisionRow.value + 1)
                )
                if self.engine.dialect.name == "postgresql":
                    # Delivered at commit, to every process listening, and never for a rollback.
                    session.execute(text(f"NOTIFY {CHANGE_CHANNEL}"))
                yield session
            for callback in self.after_commit:
                callback()

    def read(self, query: Callable[[Session], T]) -> T:
        """Run a read-only `query`, once more on a fresh connection if the first one was lost."""
        try:
            with self._sessions() as session:
                return query(session)
        except SQLAlchemyError as exc:
            if not connection_lost(exc):
                raise
            logger.warning("database connection lost during a read; retrying once")
        with self._sessions() as session:
            return query(session)

    def revision(self) -> int:
        """The current global revision."""
        value = self.read(
            lambda session: session.scalar(select(RevisionRow.value).where(RevisionRow.id == 1))
        )
        return int(value or 0)

    def ping(self) -> None:
        """Raise if the database does not answer."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()

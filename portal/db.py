"""The portal's engine: a bounded connection pool, query counting and schema creation.

`create_app`, `rollguard portal seed` and the tests call `make_engine`. The pool is
bounded on purpose (default 20 + 0 overflow): it stands in for the original
system's database connection limit, so exhausting it shows up as 503s rather
than as an unbounded pile of connections. `connection_lost` tells a lost
connection (a restart, a terminated backend) from a bug: the first answers 503
with Retry-After (`portal.errors`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool

from portal.models import Base


def make_engine(
    url: str,
    *,
    pool_size: int = 20,
    pool_overflow: int = 0,
    pool_timeout_s: float = 5.0,
    idle_ping_s: float | None = None,
    on_query: Callable[[], None] | None = None,
) -> Engine:
    """Create an engine with a bounded QueuePool; `on_query` runs once per statement executed.

    On a server database a pooled connection idle for `idle_ping_s` (default
    `IDLE_PING_S`) is pinged before use (`IdlePing`).
    """
    parsed = make_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Connections move between gunicorn threads; busy_timeout lets concurrent writers wait.
        connect_args = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(
        url,
        poolclass=QueuePool,
        pool_size=pool_size,
        max_overflow=pool_overflow,
        pool_timeout=pool_timeout_s,
        connect_args=connect_args,
    )
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        IdlePing(engine, idle_s=IDLE_PING_S if idle_ping_s is None else idle_ping_s)
    if on_query is not None:
        event.listen(engine, "before_cursor_execute", lambda *_args: on_query())
    return engine


def connection_lost(error: BaseException) -> bool:
    """Whether `error` means the database connection failed (restart, terminated backend, refused connect)."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, exc.OperationalError | exc.InterfaceError | exc.DisconnectionError)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed while a submission writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


#: A pooled connection idle for longer than this is pinged before it is handed out.
IDLE_PING_S = 1.0


class IdlePing:
    """Check a pooled connection before use only when it sat idle, not on every checkout.

    SQLAlchemy's `pool_pre_ping` costs a round trip per checkout: under load a third
    of a cached page miss's round trips. A connection that was in use a moment ago
    is almost surely alive; one idle for a while may have been dropped (a database
    restart, an idle timeout), so that one is pinged, and replaced if it is dead.
    A connection lost while in use fails its statement instead; the portal's reads
    retry once on a fresh connection (`portal.data.read`).
    """

    def __init__(self, engine: Engine, *, idle_s: float = IDLE_PING_S) -> None:
        self._idle_s = idle_s
        event.listen(engine.pool, "connect", self._mark)
        event.listen(engine.pool, "checkin", self._mark)
        event.listen(engine.pool, "checkout", self._checkout)

    @staticmethod
    def _mark(_dbapi_connection: Any, record: Any, *_args: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def _checkout(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < self._idle_s:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            if not dbapi_connection.autocommit:
                dbapi_connection.rollback()
        except Exception as error:  # any failure means this connection is unusable
            raise exc.DisconnectionError(f"pooled connection is dead: {error}") from error


def create_schema(engine: Engine) -> None:
    """Create the portal's tables if they do not exist."""
    Base.metadata.create_all(engine)


def drop_schema(engine: Engine) -> None:
    """Drop the portal's tables (used by `seed --reset`)."""
    Base.metadata.drop_all(engine)


class PoolWatch:
    """Counts connections checked out of an engine's pool now and in all, and the most ever out at once.

    The high-water mark catches peaks that a scrape every half second misses:
    SQLite queries take well under a millisecond. The count of checkouts tells
    whether any connection was out at all between two scrapes.
    """

    def __init__(self, engine: Engine) -> None:
        self._lock = threading.Lock()
        self.in_use = 0
        self.peak = 0
        self.checkouts = 0
        event.listen(engine.pool, "checkout", self._checkout)
        event.listen(engine.pool, "checkin", self._checkin)

    def _checkout(self, *_args: Any) -> None:
        with self._lock:
            self.in_use += 1
            self.checkouts += 1
            self.peak = max(self.peak, self.in_use)

    def _checkin(self, *_args: Any) -> None:
        with self._lock:
            self.in_use -= 1

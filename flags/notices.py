"""Change notices: what wakes `flags.broadcast` when the served document may have changed.

On PostgreSQL every write transaction sends `NOTIFY` on `CHANNEL` (see
`flags.db.Database.write`), delivered at commit to every flag-service process
that listens, so a change made through any process reaches the streams of all
of them. `PostgresNotices` holds one dedicated LISTEN connection per process.
On SQLite `LocalNotices` is woken by this process's own commits; the caller's
wait timeout (the revision check interval) notices the writes of other
processes on the same file.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.engine import make_url

from flags.db import CHANGE_CHANNEL

if TYPE_CHECKING:
    import psycopg
# psycopg itself is imported on first use, in the worker: importing this module from
# gunicorn's master (deploy/gunicorn.conf.py) must not import it before gevent patches.

logger = logging.getLogger(__name__)

_RECONNECT_DELAY_S = 1.0


class Notices(Protocol):
    """Blocks until a change may have happened."""

    def wait(self, timeout: float) -> bool:
        """Return True when notified (or when notices may have been missed), False on timeout."""


class LocalNotices:
    """Notices of this process's own commits."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def notify(self) -> None:
        """Wake the waiter (called after every commit of a write)."""
        self._event.set()

    def wait(self, timeout: float) -> bool:
        notified = self._event.wait(timeout)
        self._event.clear()
        return notified


def libpq_url(database_url: str) -> str:
    """The libpq connection string for an SQLAlchemy PostgreSQL URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresNotices:
    """Notices from PostgreSQL LISTEN on a connection of their own, reconnected when it breaks."""

    def __init__(self, database_url: str) -> None:
        self._conninfo = libpq_url(database_url)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _listening(self) -> tuple[psycopg.Connection[tuple[object, ...]], bool]:
        if self._conn is not None and not self._conn.closed:
            return self._conn, False
        import psycopg

        conn = psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=10
        )
        conn.execute(f"LISTEN {CHANGE_CHANNEL}")
        self._conn = conn
        return conn, True

    def wait(self, timeout: float) -> bool:
        import psycopg

        try:
            conn, fresh = self._listening()
            if fresh:
                # Whatever changed while nobody listened was not announced.
                return True
            for _notice in conn.notifies(timeout=timeout, stop_after=1):
                return True
            return False
        except psycopg.Error as exc:
            logger.warning("LISTEN %s failed (%s); reconnecting", CHANGE_CHANNEL, exc)
            self.close()
            time.sleep(_RECONNECT_DELAY_S)
            return True

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

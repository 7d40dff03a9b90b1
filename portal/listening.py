"""`Listener`: one PostgreSQL LISTEN connection whose notifications any thread may read.

`portal.invalidation` reads a worker's invalidations here. Its listener
thread waits for input and reads it; a request thread that finds input
waiting reads it too (`PgInvalidations.caught_up`), instead of treating the
worker as behind until the listener thread gets the GIL back. Under a burst
the input waiting is mostly this worker's own NOTIFYs and acknowledgements,
and treating them as "behind" made a third of the burst's pages miss a warm
cache.

A request thread asks whether input waits (`pending`) with a non-blocking
peek at the socket made through `ctypes.PyDLL`, which keeps the GIL for
the call: `select` releases it, and under load a thread that releases the
GIL in the middle of a request queues for it again behind every other
request thread, once more per request.

Reads are serialised by a lock, taken only to pull the received bytes out of
libpq (no callbacks run under it), so a reader never waits for another's
handling. The connection is never used through psycopg's `Connection` after
LISTEN: that would hold its lock for the whole of a `notifies()` wait.

A backend that is terminated sends its FATAL error and then closes the socket,
and it leaves `pg_stat_activity` in between, when other workers stop waiting
for this one. libpq takes an error that arrives between statements as a
notice, and the connection still looks healthy until the close is read; so a
notice on this connection, which runs no statements, counts as its loss.
"""

from __future__ import annotations

import ctypes
import errno
import select
import socket
import threading
from collections.abc import Callable

import psycopg
from psycopg import sql


def _gil_holding_peek() -> Callable[[int], int] | None:
    """recv(fd, 1 byte, MSG_PEEK | MSG_DONTWAIT) from libc, called with the GIL held; None without a libc."""
    try:
        recv = ctypes.PyDLL(None, use_errno=True).recv
    except (AttributeError, OSError):
        return None
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    recv.restype = ctypes.c_ssize_t
    flags = socket.MSG_PEEK | socket.MSG_DONTWAIT
    # The peeked byte is never read, so every thread may peek into the same buffer.
    scratch = ctypes.create_string_buffer(1)

    def peek(fd: int) -> int:
        got = int(recv(fd, scratch, 1, flags))
        return got if got >= 0 else -ctypes.get_errno()

    return peek


_peek = _gil_holding_peek()
_NOTHING_YET = (-errno.EAGAIN, -errno.EWOULDBLOCK, -errno.EINTR)


class Listener:
    """A LISTEN connection; `wait` and `read` from any thread, `lost` once it cannot be trusted."""

    def __init__(self, dsn: str, *, application_name: str, channels: tuple[str, ...]) -> None:
        self._conn = psycopg.connect(dsn, autocommit=True, application_name=application_name)
        for name in channels:
            self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
        #: The backend pid, kept: a connection that was lost can no longer be asked for it.
        self.pid = self._conn.info.backend_pid
        self._encoding = self._conn.info.encoding
        self._noticed = False
        self._conn.add_notice_handler(self._on_notice)
        self._lock = threading.Lock()

    @property
    def lost(self) -> bool:
        """Whether the connection is gone or said it is going (a notice)."""
        return self._noticed or self._conn.pgconn.status != psycopg.pq.ConnStatus.OK

    def wait(self, timeout_s: float) -> bool:
        """Whether input is waiting now or arrives within `timeout_s`.

        :raise psycopg.OperationalError: the connection is lost.
        """
        fd = self._socket()
        try:
            readable, _, _ = select.select([fd], [], [], timeout_s)
        except (OSError, ValueError) as exc:  # closed by another reader meanwhile
            raise psycopg.OperationalError(f"the listening connection is lost: {exc}") from exc
        return bool(readable)

    def pending(self) -> bool:
        """Whether input waits now (`wait(0)`), asked without releasing the GIL.

        :raise psycopg.OperationalError: the connection is lost.
        """
        if _peek is None:
            return self.wait(0)
        got = _peek(self._socket())
        if got in _NOTHING_YET:
            return False
        if got < 0:
            raise psycopg.OperationalError(f"the listening connection is lost: errno {-got}")
        return True  # bytes to read, or 0: the server closed the connection, which a read reports

    def _socket(self) -> int:
        """The connection's socket. :raise psycopg.OperationalError: the connection is lost (psycopg's
        own once it is closed)."""
        if self.lost:
            raise psycopg.OperationalError("the listening connection is lost")
        return self._conn.pgconn.socket

    def read(self) -> list[tuple[str, str]]:
        """The notifications received so far, as (channel, payload); does not block.

        :raise psycopg.OperationalError: the connection is lost (read now or before).
        """
        with self._lock:
            pgconn = self._conn.pgconn
            pgconn.consume_input()
            received = []
            while (note := pgconn.notifies()) is not None:
                received.append((note.relname.decode(self._encoding), note.extra.decode(self._encoding)))
        if self._noticed:
            raise psycopg.OperationalError("the listening connection's backend is going away")
        return received

    def close(self) -> None:
        self._conn.close()

    def _on_notice(self, _diagnostic: psycopg.errors.Diagnostic) -> None:
        self._noticed = True

"""One process's fan-out of document changes to its open streams.

`Broadcaster` runs one watcher (a greenlet under gunicorn's gevent worker, a
thread elsewhere) that waits on `flags.notices`, rebuilds the served snapshot
when woken and, if the document changed, publishes it with its
`unleash-updated` frame, computed once for every stream. `flags.streaming`
reads the latest publication and waits for the next one. The watcher starts
with the first stream, so an app that never streams runs no background work.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from flags import deltas
from flags.auth import TokenCache
from flags.notices import Notices
from flags.served import ServedState, Snapshot

logger = logging.getLogger(__name__)

# Distinct Authorization headers remembered for stream re-authorization before starting afresh.
_MAX_HEADERS = 10_000


@dataclass(frozen=True)
class Publication:
    """The document at `revision` and the frame that brings a stream from document `previous_etag` to it."""

    revision: int
    etag: str
    state: dict[str, Any]
    previous_etag: str
    update: bytes


def _first(snapshot: Snapshot) -> Publication:
    return Publication(
        revision=snapshot.revision,
        etag=snapshot.etag,
        state=snapshot.state,
        previous_etag=snapshot.etag,
        update=b"",
    )


class Broadcaster:
    """The latest publication of one process, and a way to wait for the next."""

    def __init__(
        self,
        served: ServedState,
        notices: Notices,
        tokens: TokenCache,
        *,
        fallback_s: float,
        max_streams: int,
    ) -> None:
        self._served = served
        self._notices = notices
        self._tokens = tokens
        self._authorized: dict[str, tuple[int, bool]] = {}
        self._checking: dict[str, threading.Lock] = {}
        self._fallback_s = fallback_s
        self._max_streams = max_streams
        self._streams = 0
        self._changed = threading.Condition()
        self._latest: Publication | None = None
        self._watcher: threading.Thread | None = None
        self._closed = False

    @property
    def streams(self) -> int:
        """Streams open in this process."""
        return self._streams

    @property
    def closed(self) -> bool:
        """Whether the process is stopping, so streams should end."""
        return self._closed

    def close(self) -> None:
        """End every stream at once (the worker is stopping) and admit no more."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def admit(self) -> bool:
        """Count one more open stream, unless closed or holding `max_streams` already."""
        with self._changed:
            if self._closed or self._streams >= self._max_streams:
                return False
            self._streams += 1
            return True

    def leave(self) -> None:
        """Count one stream closed."""
        with self._changed:
            self._streams -= 1

    def still_authorized(self, header: str) -> bool:
        """Whether the Authorization header a stream opened with still grants the client scope.

        Asked by every stream at its heartbeat. Answered from memory within one
        revision (revoking a token moves it), and only one stream per header asks
        the database, so 1,000 streams sharing a token cost one query, not 1,000.
        """
        revision = self._served.revision()
        answer = self._authorized.get(header)
        if answer is not None and answer[0] == revision:
            return answer[1]
        with self._changed:
            if len(self._checking) > _MAX_HEADERS:
                self._authorized, self._checking = {}, {}
            checking = self._checking.setdefault(header, threading.Lock())
        with checking:
            answer = self._authorized.get(header)
            if answer is None or answer[0] != revision:
                principal = self._tokens.lookup(header)
                answer = (revision, principal is not None and principal.allows("client"))
                self._authorized[header] = answer
        return answer[1]

    def current(self) -> Publication:
        """The freshest publication (published now if the served document moved), watching from now on."""
        snapshot = self._served.snapshot()
        with self._changed:
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="rollguard-broadcast", daemon=True)
                self._watcher.start()
        return self._publish(snapshot)

    def next_after(self, revision: int, *, timeout: float) -> Publication | None:
        """The first publication newer than `revision`, or None after `timeout` seconds or on close."""
        with self._changed:
            self._changed.wait_for(lambda: self._newer(revision), timeout=timeout)
            latest = self._latest
        return latest if latest is not None and latest.revision > revision else None

    def _newer(self, revision: int) -> bool:
        return self._closed or (self._latest is not None and self._latest.revision > revision)

    def _watch(self) -> None:
        while True:
            self._notices.wait(self._fallback_s)
            self._served.invalidate()
            try:
                snapshot = self._served.snapshot()
            # The loop outlives a database outage: log it and try again at the next notice or timeout.
            except SQLAlchemyError:
                logger.exception("cannot rebuild the served document for streams")
                continue
            self._publish(snapshot)

    def _publish(self, snapshot: Snapshot) -> Publication:
        with self._changed:
            latest = self._latest
            if latest is None:
                latest = self._latest = _first(snapshot)
            elif latest.revision >= snapshot.revision:
                pass
            elif latest.etag == snapshot.etag:
                # Nothing served changed (a token, say): no frame to send.
                latest = self._latest = replace(latest, revision=snapshot.revision)
            else:
                events = deltas.changes(latest.state, snapshot.state, event_id=snapshot.revision)
                latest = self._latest = Publication(
                    revision=snapshot.revision,
                    etag=snapshot.etag,
                    state=snapshot.state,
                    previous_etag=latest.etag,
                    update=deltas.frame(deltas.UPDATED, events, event_id=snapshot.revision),
                )
                self._changed.notify_all()
            return latest

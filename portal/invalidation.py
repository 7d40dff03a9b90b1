"""Invalidations between the portal's worker processes through PostgreSQL LISTEN/NOTIFY, acknowledged.

When the portal runs on PostgreSQL without Redis, every worker process keeps
its own in-process cache. A submission must drop the key it changed in every
worker before it is acknowledged (read-your-writes across workers). The
group's INSERT carries a NOTIFY of its keys (`notice`; `portal.submits`):
PostgreSQL delivers it to every listening worker when the attempts commit, and
the same statement counts the workers listening (`NOTIFY_SQL`), so a group
of submits costs one round trip for both. Each other worker drops the keys
(`apply`; the messages call them tags) and acknowledges the batch once, on a
second channel (every batch it read at once from one sender in one message); a
submit answers once every worker counted has (`confirm`). A
peer that started after the count has an empty cache and needs no
acknowledgement; one that dies drops its connection and leaves the count. A
batch that is not confirmed within `timeout_s` raises
`portal.errors.InvalidationUnconfirmed` (the submit answers 503).

Each worker has one listening connection (`portal.listening`), named in
`application_name` so that the count finds it in `pg_stat_activity`, and a
listener thread that applies the invalidations of others and acknowledges them
over a sending connection of its own; a request thread that finds
notifications waiting (`caught_up`) reads and handles them itself.

A worker whose listening connection is lost (a restart, a terminated backend)
leaves the count too, so submits on other workers stop waiting for it: it is
told `listening(False)`, and its cache (`portal.peercache`) serves nothing
until it listens again and is told `listening(True)`. While it is not
listening it cannot hear acknowledgements either, so `notice` refuses and its
own submits write nothing. A lost sending connection is replaced and its
acknowledgement sent once more (acknowledgements are counted per worker).

Built by `portal.runtime.build_portal`; `close()` stops the thread.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import psycopg

from portal.errors import InvalidationUnconfirmed
from portal.listening import Listener

logger = logging.getLogger(__name__)

_APP_PREFIX = "rollguard-portal"


#: What a statement selects to send a `PeerNotice` (its `params`) and count the other workers listening
#: (`peers`): the notification goes out when that statement commits.
NOTIFY_SQL = (
    "pg_notify(%s, %s), (SELECT count(*) FROM pg_stat_activity"
    " WHERE application_name = %s AND datname = current_database() AND pid <> %s) AS peers"
)


class _Batch:
    """Tags sent in one NOTIFY: which peers confirmed them, and how many must (known once it is sent)."""

    def __init__(self) -> None:
        self.tags: set[str] = set()
        self.seq = 0
        self.expected: int | None = None
        self.acked: set[str] = set()
        self.done = threading.Event()

    def settle(self) -> bool:
        """Mark the batch done if every expected peer confirmed; return whether it is."""
        if self.expected is not None and len(self.acked) >= self.expected:
            self.done.set()
        return self.done.is_set()


@dataclass(frozen=True)
class PeerNotice:
    """A NOTIFY for another statement to send: `NOTIFY_SQL` with `params`; its caller reports `peers` to `sent`.

    `params`: the channel, the payload, the workers' listening `application_name`
    and this worker's own listening backend (not a peer). From `PgInvalidations.notice`.
    """

    params: tuple[str, str, str, int]
    batch: _Batch = field(repr=False, compare=False)


class PgInvalidations:
    """Send and apply tag invalidations between the portal's workers over one PostgreSQL database."""

    def __init__(
        self,
        dsn: str,
        *,
        channel: str,
        apply: Callable[[str], None],
        listening: Callable[[bool], None],
        timeout_s: float = 5.0,
        poll_s: float = 0.5,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._acks = f"{channel}_ack"
        self._apply = apply
        self._listening = listening
        self._timeout_s = timeout_s
        self._poll_s = poll_s
        self.worker = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._app_name = f"{_APP_PREFIX}:{channel}"
        self._seq = itertools.count(1)
        self._pending: dict[int, _Batch] = {}  # sent, awaiting acknowledgements, by seq
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._sender = psycopg.connect(dsn, autocommit=True)
        self._listener = self._connect_listener()
        self._closed = threading.Event()
        # Set while the listening connection is up: acknowledgements reach this worker only then.
        self._hearing = threading.Event()
        self._hearing.set()
        listening(True)
        self._thread = threading.Thread(target=self._listen, name="portal-invalidations", daemon=True)
        self._thread.start()

    @property
    def listener_pid(self) -> int:
        """The backend pid of the listening connection (the latest one), as pg_stat_activity shows it."""
        return self._listener.pid

    def caught_up(self) -> bool:
        """Whether the listening connection is up and holds nothing unread.

        Unread data is an invalidation not applied yet, or the news that the connection
        was lost: a terminated backend sends its error and leaves `pg_stat_activity`
        before this worker's listener thread has read it, and from then on other
        workers' submits stop waiting for this one. Until that is read, this worker
        must not serve its cache (`portal.peercache`). So input waiting is read and
        handled here, by the calling thread: it is mostly this worker's own NOTIFYs
        and acknowledgements, and the listener thread may not get the GIL for a while.
        """
        listener = self._listener
        try:
            if listener.pending():
                self._handle_all(listener.read())
        except psycopg.Error:
            return False
        return not listener.lost

    def notice(self, tags: Collection[str]) -> PeerNotice:
        """A NOTIFY of `tags` for the caller's own statement to send; then `sent` (or `withdraw`), `confirm`."""
        self._await_hearing(tags)
        batch = _Batch()
        batch.tags.update(tags)
        with self._lock:
            batch.seq = next(self._seq)
            self._pending[batch.seq] = batch
        payload = json.dumps({"tags": sorted(tags), "from": self.worker, "seq": batch.seq})
        return PeerNotice((self._channel, payload, self._app_name, self.listener_pid), batch)

    def sent(self, notice: PeerNotice, peers: int) -> None:
        """The statement carrying `notice` committed; `peers` other workers were listening."""
        batch = notice.batch
        with self._lock:
            batch.expected = peers
            if batch.settle():
                self._pending.pop(batch.seq, None)

    def withdraw(self, notice: PeerNotice) -> None:
        """The statement carrying `notice` failed: nothing to wait for."""
        with self._lock:
            self._pending.pop(notice.batch.seq, None)

    def confirm(self, notice: PeerNotice) -> int:
        """Return once every live peer confirmed `notice` (their count); raise if one did not in time."""
        batch = notice.batch
        confirmed = batch.done.wait(self._timeout_s)
        if not confirmed:
            with self._lock:
                self._pending.pop(batch.seq, None)
            raise InvalidationUnconfirmed(
                f"{len(batch.acked)} of {batch.expected} workers confirmed dropping"
                f" {', '.join(sorted(batch.tags))} within {self._timeout_s}s"
            )
        return batch.expected or 0

    def _await_hearing(self, tags: Collection[str]) -> None:
        # Sent while our own listener is down, the acknowledgements would never reach us.
        if not self._hearing.wait(self._timeout_s):
            raise InvalidationUnconfirmed(
                f"not listening for acknowledgements; {', '.join(sorted(tags))} was not sent"
            )

    def close(self) -> None:
        """Stop listening and close both connections."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join(timeout=self._poll_s * 4 + 1)
        self._sender.close()
        self._listener.close()

    def _connect_listener(self) -> Listener:
        return Listener(self._dsn, application_name=self._app_name, channels=(self._channel, self._acks))

    def _notify(self, channel: str, message: dict[str, object]) -> None:
        self._send_statement("SELECT pg_notify(%s, %s)", (channel, json.dumps(message)))

    def _send_statement(self, statement: str, params: tuple[object, ...]) -> None:
        """Run `statement` on the sending connection, once more on a new one if that one was lost.

        An acknowledgement may then go out twice; they are counted per worker.
        """
        with self._send_lock:
            for attempt in (1, 2):
                if self._sender.closed:
                    self._sender = psycopg.connect(self._dsn, autocommit=True)
                try:
                    self._sender.execute(statement, params)
                    return
                except psycopg.OperationalError:
                    if attempt == 2 or not self._sender.closed:
                        raise

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                if self._listener.wait(self._poll_s):
                    self._handle_all(self._listener.read())
            except psycopg.Error as exc:
                if self._closed.is_set():
                    return
                # Notifications sent while we were not listening are lost: the cache is not
                # served until we listen again, and forgotten then (portal.peercache).
                self._hearing.clear()
                self._listening(False)
                logger.warning("portal invalidations: listening failed (%s); reconnecting", exc)
                self._reconnect()

    def _reconnect(self) -> None:
        self._listener.close()
        while not self._closed.is_set():
            try:
                self._listener = self._connect_listener()
            except psycopg.Error:
                logger.warning("portal invalidations: PostgreSQL unreachable; retrying")
                self._closed.wait(self._poll_s)
                continue
            self._listening(True)
            self._hearing.set()
            logger.info("portal invalidations: listening again")
            return

    def _handle_all(self, received: list[tuple[str, str]]) -> None:
        """Apply the others' invalidations and acknowledge them, one NOTIFY per sender for all read at once."""
        owed: dict[str, list[int]] = {}
        for channel, payload in received:
            message = json.loads(payload)
            sender = str(message.get("from"))
            if channel == self._channel and sender != self.worker:
                tags = message["tags"]
                for tag in tags if isinstance(tags, list) else ():
                    self._apply(str(tag))
                owed.setdefault(sender, []).append(int(message["seq"]))
            elif channel == self._acks and message.get("to") == self.worker:
                self._acknowledged(sender, message["seqs"])
        for sender, seqs in owed.items():
            self._notify(self._acks, {"to": sender, "seqs": seqs, "from": self.worker})

    def _acknowledged(self, peer: str, seqs: list[int]) -> None:
        with self._lock:
            for seq in seqs:
                batch = self._pending.get(seq)
                if batch is not None:
                    batch.acked.add(peer)
                    if batch.settle():
                        del self._pending[seq]

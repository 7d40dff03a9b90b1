"""Invalidations between the portal's worker processes through PostgreSQL LISTEN/NOTIFY, acknowledged.

When the portal runs on PostgreSQL without Redis, every worker process keeps
its own in-process cache. A submission drops the key it changed in the worker
that took it, then `publish` sends that name on a NOTIFY channel and waits
until every other live worker has dropped it too (`apply`; the portal's drops
a key, and the messages call what they carry tags) and said so: only then is the
submission acknowledged, so the student's next page, on whichever worker,
shows it (read-your-writes across workers).

Each worker has one listening connection (`portal.listening`), named in
`application_name` so that the publisher counts the live peers it waits for
(`pg_stat_activity`), and a listener thread that applies the invalidations of
others and acknowledges them on a second channel; a request thread that finds
notifications waiting (`caught_up`) reads and handles them itself.

A submit's NOTIFY rides in its group's INSERT (`notice`, `sent`, `confirm`;
`portal.submits`): PostgreSQL delivers it when that statement commits, and the
same statement reads the peer count, so a group of submits costs one round
trip for both. `publish` sends a NOTIFY on its own connection instead, group-
committed: the tags of every publish that arrives while a NOTIFY is on its way
go out together in the next one (at most `MAX_BATCH_TAGS`). Each peer
acknowledges a batch once. A peer that started after the count has an empty
cache and needs no acknowledgement; one that dies drops its connection and
leaves the count. A batch that is not confirmed within `timeout_s` raises
`portal.errors.InvalidationUnconfirmed` (the submit answers 503).

A worker whose listening connection is lost (a restart, a terminated backend)
leaves the count too, so submits on other workers stop waiting for it: it is
told `listening(False)`, and its cache (`portal.peercache`) serves nothing
until it listens again and is told `listening(True)`. A lost sending connection
is replaced and its statement sent once more (a notification sent twice is
harmless: acknowledgements are counted per worker).

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


#: Tags per NOTIFY: PostgreSQL caps a payload at 8,000 bytes; a tag is about 20 with its JSON quoting.
MAX_BATCH_TAGS = 200

#: The other workers listening, in SQL: parameters `PeerNotice.listeners` and `PeerNotice.own_pid`.
COUNT_PEERS_SQL = (
    "(SELECT count(*) FROM pg_stat_activity"
    " WHERE application_name = %s AND datname = current_database() AND pid <> %s)"
)


class _Batch:
    """Tags sent in one NOTIFY: which peers confirmed them, and how many must (known once it is sent)."""

    def __init__(self) -> None:
        self.tags: set[str] = set()
        self.seq = 0
        self.expected: int | None = None
        self.acked: set[str] = set()
        self.done = threading.Event()
        self.error: InvalidationUnconfirmed | None = None

    def settle(self) -> bool:
        """Mark the batch done if every expected peer confirmed; return whether it is."""
        if self.expected is not None and len(self.acked) >= self.expected:
            self.done.set()
        return self.done.is_set()

    def fail(self, error: InvalidationUnconfirmed) -> None:
        self.error = error
        self.done.set()


@dataclass(frozen=True)
class PeerNotice:
    """A NOTIFY for another statement to send (`SELECT pg_notify(channel, payload)`), and its peer count.

    From `PgInvalidations.notice`; that statement also reads `COUNT_PEERS_SQL`
    with `listeners` and `own_pid`, and its caller reports the count with `sent`.
    """

    channel: str
    payload: str
    listeners: str  # the application_name of the workers' listening connections
    own_pid: int  # this worker's own listening backend: not a peer
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
        self._queue: list[_Batch] = []  # not sent yet; the last one still takes tags
        self._sending = False
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
            if listener.wait(0):
                self._handle_all(listener.read())
        except psycopg.Error:
            return False
        return not listener.lost

    def publish(self, tag: str) -> int:
        """Tell every other worker to drop `tag`; return once all live ones confirmed (their count)."""
        self._await_hearing(tag)
        with self._lock:
            if not self._queue or len(self._queue[-1].tags) >= MAX_BATCH_TAGS:
                self._queue.append(_Batch())
            batch = self._queue[-1]
            batch.tags.add(tag)
        self._send_queued()
        return self._confirmed(batch, tag)

    def notice(self, tags: Collection[str]) -> PeerNotice:
        """A NOTIFY of `tags` for the caller's own statement to send; then `sent` (or `withdraw`), `confirm`."""
        self._await_hearing(", ".join(sorted(tags)))
        batch = _Batch()
        batch.tags.update(tags)
        with self._lock:
            batch.seq = next(self._seq)
            self._pending[batch.seq] = batch
        payload = json.dumps({"tags": sorted(tags), "from": self.worker, "seq": batch.seq})
        return PeerNotice(self._channel, payload, self._app_name, self.listener_pid, batch)

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
        return self._confirmed(notice.batch, ", ".join(sorted(notice.batch.tags)))

    def _await_hearing(self, what: str) -> None:
        # Sent while our own listener is down, the acknowledgements would never reach us.
        if not self._hearing.wait(self._timeout_s):
            raise InvalidationUnconfirmed(f"not listening for acknowledgements; {what} was not sent")

    def _confirmed(self, batch: _Batch, what: str) -> int:
        confirmed = batch.done.wait(self._timeout_s)
        with self._lock:
            if not confirmed:
                self._pending.pop(batch.seq, None)
        if batch.error is not None:
            raise batch.error
        if not confirmed:
            raise InvalidationUnconfirmed(
                f"{len(batch.acked)} of {batch.expected} workers confirmed dropping {what} within {self._timeout_s}s"
            )
        return batch.expected or 0

    def _send_queued(self) -> None:
        """Send the queued batches, one NOTIFY each, unless another thread is sending them already."""
        while True:
            with self._lock:
                if self._sending or not self._queue:
                    return
                self._sending = True
                batch = self._queue.pop(0)
                batch.seq = next(self._seq)
                self._pending[batch.seq] = batch
            try:
                self._send(batch)
            finally:
                with self._lock:
                    self._sending = False

    def _send(self, batch: _Batch) -> None:
        tags = sorted(batch.tags)
        try:
            peers = self._notify_counting_peers({"tags": tags, "from": self.worker, "seq": batch.seq})
        except psycopg.Error as exc:
            with self._lock:
                self._pending.pop(batch.seq, None)
            batch.fail(
                InvalidationUnconfirmed(f"could not send the invalidation of {', '.join(tags)}: {exc}")
            )
            return
        with self._lock:
            batch.expected = peers
            if batch.settle():
                self._pending.pop(batch.seq, None)

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

    def _notify_counting_peers(self, message: dict[str, object]) -> int:
        """NOTIFY `message` on the channel; return how many other workers listen (read in the same statement)."""
        row = self._send_statement(
            "SELECT pg_notify(%s, %s), " + COUNT_PEERS_SQL,
            # Our own listening connection is not a peer (and if it is down, its pid is gone anyway).
            (self._channel, json.dumps(message), self._app_name, self.listener_pid),
        )
        return int(str(row[1])) if row else 0

    def _notify(self, channel: str, message: dict[str, object]) -> None:
        self._send_statement("SELECT pg_notify(%s, %s)", (channel, json.dumps(message)))

    def _send_statement(self, statement: str, params: tuple[object, ...]) -> tuple[object, ...] | None:
        """Run `statement` on the sending connection, once more on a new one if that one was lost.

        A notification may then go out twice; dropping a tag twice is harmless.
        """
        with self._send_lock:
            for attempt in (1, 2):
                if self._sender.closed:
                    self._sender = psycopg.connect(self._dsn, autocommit=True)
                try:
                    return self._sender.execute(statement, params).fetchone()
                except psycopg.OperationalError:
                    if attempt == 2 or not self._sender.closed:
                        raise
        return None  # unreachable: the second attempt returns or raises

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
        for channel, payload in received:
            self._handle(channel, json.loads(payload))

    def _handle(self, channel: str, message: dict[str, object]) -> None:
        sender = str(message.get("from"))
        if channel == self._channel:
            if sender == self.worker:
                return
            tags = message["tags"]
            for tag in tags if isinstance(tags, list) else ():
                self._apply(str(tag))
            self._notify(self._acks, {"to": sender, "seq": message["seq"], "from": self.worker})
        elif channel == self._acks and message.get("to") == self.worker:
            with self._lock:
                batch = self._pending.get(int(str(message["seq"])))
                if batch is None:
                    return
                batch.acked.add(sender)
                if batch.settle():
                    del self._pending[batch.seq]

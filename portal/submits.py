"""Submissions written in groups: one transaction, so one commit flushed to disk, for every submit waiting.

A mass submission makes hundreds of submits a second, and each must be on disk
before it is acknowledged. Written one by one, each pays its own commit and
flush, and they queue for the connection pool behind each other. `AttemptWriter`
groups them: a submit joins the queue and, when fewer than `max_writers`
writes are in flight, writes everything queued (up to `max_batch`) in one
multi-row INSERT and one commit; the submits that queued meanwhile go in the
next group, written by one of them. A lone submit is written at once, as
before.

One write in flight (the default) groups the most: in the mass submission's
burst, four at once left almost every submit its own statement, and with it
PostgreSQL's work per statement (the NOTIFY's count of listening workers among
it). `bench/portal_burst_cost.py` at 1,500 students: 535 INSERTs against 1,448
with four writers, PostgreSQL's CPU 557 against 914 us a student. A submit
waits at most for the write before its own (a commit takes milliseconds); the
capacity run's p95 did not move either way (`bench/portal_capacity.py`).

If a group's write fails, its attempts are written again one by one, so that
one bad attempt fails only its own submit; unless the connection was lost
(`portal.db.connection_lost`): the commit may then have landed, and writing the
group again could store every attempt twice, so each of its submits fails
instead (503, Retry-After) and its student decides whether to send it again.

A submit may ask for keys to read back (`read_back`): the group's INSERT then
reads the fragments of every key its submits asked for, in the same statement
(`portal.pgfragments.insert_reading_back`, PostgreSQL), and each submit gets
its own (`Recorded.fragments`) for the optimizer's write-through.

With `invalidations` (workers on PostgreSQL without Redis), a group's INSERT
also carries the NOTIFY that tells the other workers which keys it changed
(`portal.invalidation`): one round trip for both. Each submit then confirms
that notice (`confirm`) once it has dropped its key in its own worker.
While this worker cannot hear the acknowledgements, nothing is written and the
group's submits fail (503).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from optimizer import HandOff
from portal import data, pgfragments
from portal.data import AttemptRow, Inserted, NewAttempt
from portal.db import connection_lost
from portal.errors import InvalidationUnconfirmed, Unavailable
from portal.invalidation import PeerNotice, PgInvalidations

#: Attempts per INSERT: a page of rows, far below any statement-size limit.
MAX_BATCH = 100
#: Groups written at once, each on its own pooled connection.
MAX_WRITERS = 1


@dataclass(eq=False)
class _Queued:
    attempt: NewAttempt
    read_back: tuple[str, ...] = ()
    row: AttemptRow | None = None
    notice: PeerNotice | None = None
    fragments: dict[str, bytes] = field(default_factory=dict)
    error: Exception | None = field(default=None)


@dataclass(frozen=True)
class Recorded:
    """A committed attempt, the NOTIFY that carried its key to the other workers (to `confirm`) if any,
    and the fragments of the keys its submit asked to read back."""

    row: AttemptRow
    notice: PeerNotice | None
    fragments: dict[str, bytes] = field(default_factory=dict)


class AttemptWriter:
    """Records attempts, grouping the submits that arrive while a write is in flight; thread-safe.

    The writes run on the optimizer's `HandOff`, as its grouped loads do: a finished write hands
    its turn straight to the thread of the oldest queued submit, with the group it is to write,
    and wakes only the threads whose attempts it wrote.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        invalidations: PgInvalidations | None = None,
        max_batch: int = MAX_BATCH,
        max_writers: int = MAX_WRITERS,
    ) -> None:
        self._engine = engine
        self._invalidations = invalidations
        self._max_batch = max_batch
        self._max_writers = max_writers
        self._writes: HandOff[_Queued] = HandOff(self._write_group)

    @property
    def groups(self) -> int:
        """Writes made, for the portal's metrics and tests."""
        return self._writes.runs

    @property
    def waiting(self) -> int:
        """Submits queued for the next group (not counting the group being written)."""
        return self._writes.waiting

    def record(
        self, *, student_id: int, series_id: int, exam_id: int, score: int, read_back: tuple[str, ...] = ()
    ) -> Recorded:
        """Insert one attempt (its own submission time) and return it once it is committed.

        `read_back`: keys whose fragments the INSERT reads back (PostgreSQL only).
        """
        queued = _Queued(NewAttempt(student_id, series_id, exam_id, score, datetime.now(UTC)), read_back)
        self._writes.join(queued, max_batch=self._max_batch, max_in_flight=self._max_writers)
        if queued.error is not None:
            raise queued.error
        assert queued.row is not None
        return Recorded(queued.row, queued.notice, queued.fragments)

    def confirm(self, recorded: Recorded) -> int:
        """Return once every other worker dropped `recorded`'s key (their count; 0 with no invalidations).

        :raise portal.errors.InvalidationUnconfirmed: a worker did not confirm in time.
        """
        if recorded.notice is None:
            return 0
        assert self._invalidations is not None  # a notice comes only from them
        return self._invalidations.confirm(recorded.notice)

    def _write_group(self, group: list[_Queued]) -> None:
        """Write `group`; if something stops this thread on the way (KeyboardInterrupt and the like), its
        other submits fail instead of waiting for a write that will not come."""
        try:
            self._write(group)
        except BaseException:
            for queued in group:
                if queued.row is None and queued.error is None:
                    queued.error = Unavailable(
                        "the write of this attempt was interrupted", code="write_interrupted"
                    )
            raise

    def _write(self, group: list[_Queued]) -> None:
        try:
            inserted, notice = self._insert(group)
        except Exception as exc:  # noqa: BLE001 - every waiting submit must finish; each raises it itself
            if len(group) == 1 or connection_lost(exc) or isinstance(exc, InvalidationUnconfirmed):
                for queued in group:
                    queued.error = exc
            else:
                for queued in group:
                    self._write_alone(queued)
            return
        for queued, row in zip(group, inserted.rows, strict=True):
            queued.row, queued.notice = row, notice
            queued.fragments = {key: inserted.fragments[key] for key in queued.read_back}

    def _write_alone(self, queued: _Queued) -> None:
        try:
            inserted, queued.notice = self._insert([queued])
            queued.row = inserted.rows[0]
            queued.fragments = {key: inserted.fragments[key] for key in queued.read_back}
        except Exception as exc:  # noqa: BLE001 - raised by the submit that made it
            queued.error = exc

    def _insert(self, group: list[_Queued]) -> tuple[Inserted, PeerNotice | None]:
        attempts = [q.attempt for q in group]
        keys = [key for q in group for key in q.read_back]
        invalidations = self._invalidations
        if invalidations is None:
            return self._statement(attempts, keys, None), None
        notice = invalidations.notice({data.attempts_key(a.student_id, a.series_id) for a in attempts})
        try:
            inserted = self._statement(attempts, keys, notice)
        except BaseException:
            invalidations.withdraw(notice)
            raise
        invalidations.sent(notice, inserted.peers)
        return inserted, notice

    def _statement(self, attempts: list[NewAttempt], keys: list[str], notice: PeerNotice | None) -> Inserted:
        if keys:
            return pgfragments.insert_reading_back(self._engine, attempts, keys, notice)
        if notice is None:
            return Inserted(data.record_attempts(self._engine, attempts), {}, 0)
        rows, peers = data.record_attempts_notifying(self._engine, attempts, notice)
        return Inserted(rows, {}, peers)

"""The portal's queries: the attempts read the pages are built from, submissions, the catalog.

`get_all_exam_attempts` is the expensive function of the original incident and
stays a plain query; `portal.app` wraps it in the optimizer under the key
`"<student_id>:<series_id>"`. `get_exam_attempts_many` is the batched form the
optimizer uses on its optimized path on SQLite; on PostgreSQL it reads the
fragments the database renders (`portal.pgfragments`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, insert, select, tuple_
from sqlalchemy.exc import DBAPIError

from portal import driver
from portal.invalidation import NOTIFY_SQL, PeerNotice
from portal.keys import attempts_key as attempts_key
from portal.keys import parse_key as parse_key
from portal.models import Attempt, Exam, Student, TestSeries

# (id, exam_id, score, submitted_at in epoch milliseconds): tuples of ints take half the
# cache memory of the equivalent dicts; pages turn them into JSON with `render_attempts`.
AttemptRow = tuple[int, int, int, int]


@dataclass(frozen=True)
class Catalog:
    """The test series with their exam ids, and the range of student ids."""

    series: dict[int, str]
    exams: dict[int, tuple[int, ...]]
    exam_series: dict[int, int]
    max_student_id: int

    @property
    def empty(self) -> bool:
        return not self.series or self.max_student_id == 0


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def _epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch, rounded down, exactly as PostgreSQL's `floor(extract(epoch ...) * 1000)`."""
    # SQLite hands back naive datetimes; everything is stored as UTC.
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return (aware - _EPOCH) // _MILLISECOND


def _utc(moment: datetime) -> datetime:
    """An aware time in UTC; a naive one is taken as UTC already (as `_epoch_ms` takes it)."""
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment


def _row(row: Any) -> AttemptRow:
    return (int(row.id), int(row.exam_id), int(row.score), _epoch_ms(row.submitted_at))


def render_attempt(attempt: AttemptRow) -> dict[str, Any]:
    """One attempt as the JSON API shows it."""
    attempt_id, exam_id, score, submitted_ms = attempt
    submitted_at = datetime.fromtimestamp(submitted_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return {"id": attempt_id, "exam_id": exam_id, "score": score, "submitted_at": submitted_at}


def render_attempts(attempts: Sequence[AttemptRow]) -> list[dict[str, Any]]:
    """Attempts as the JSON API shows them, oldest first."""
    return [render_attempt(a) for a in attempts]


_COLUMNS = (
    Attempt.id,
    Attempt.student_id,
    Attempt.series_id,
    Attempt.exam_id,
    Attempt.score,
    Attempt.submitted_at,
)


# The batched insert on PostgreSQL (its parameters: `insert_params`): SQLAlchemy's multi-row VALUES is a new
# statement per batch size, which psycopg parses anew (a regex over the whole text) every time.
# The ids come from the table's sequence in the order of the SELECT, so sorted they follow `position`.
INSERT_POSTGRESQL = (
    "INSERT INTO attempts (student_id, series_id, exam_id, score, submitted_at)"
    " SELECT student_id, series_id, exam_id, score, submitted_at"
    " FROM unnest(%s::integer[], %s::integer[], %s::integer[], %s::integer[], %s::timestamptz[])"
    " WITH ORDINALITY AS n(student_id, series_id, exam_id, score, submitted_at, position)"
    " ORDER BY position RETURNING id"
)
# The same INSERT, and in its statement the NOTIFY that tells the other workers (delivered when it
# commits) and their count (`portal.invalidation`): one round trip for both.
_INSERT_NOTIFYING_POSTGRESQL = (
    f"WITH inserted AS ({INSERT_POSTGRESQL}),"
    f" notified AS (SELECT {NOTIFY_SQL})"
    " SELECT inserted.id, notified.peers FROM inserted CROSS JOIN notified"
)

T = TypeVar("T")


def read(engine: Engine, query: Callable[[Connection], T]) -> T:
    """Run a read on a pooled connection in autocommit, retried once on a fresh one if it was lost.

    Autocommit spares a read the BEGIN and ROLLBACK round trips of a transaction. A
    connection the database dropped (a restart, a terminated backend) fails the
    first try; the pool then discards every connection it held from before, so the
    retry gets a new one. A read is idempotent, so retrying it is safe.
    """

    def once() -> T:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return query(conn)

    return retried(once)


def retried(attempt: Callable[[], T]) -> T:
    """Run a read; once more if its connection was lost (the pool has replaced its connections then)."""
    try:
        return attempt()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return attempt()


def get_all_exam_attempts(engine: Engine, student_id: int, series_id: int) -> tuple[AttemptRow, ...]:
    """Return every attempt of one student in one test series, oldest first."""
    query = (
        select(*_COLUMNS)
        .where(Attempt.student_id == student_id, Attempt.series_id == series_id)
        .order_by(Attempt.id)
    )
    return read(engine, lambda conn: tuple(_row(row) for row in conn.execute(query)))


def get_exam_attempts_many(engine: Engine, keys: Sequence[str]) -> dict[str, tuple[AttemptRow, ...]]:
    """Return the attempts for many keys in one query; keys without attempts map to ().

    On PostgreSQL the portal reads its fragments with `portal.pgfragments` instead.
    """
    pairs = {key: parse_key(key) for key in keys}
    if not pairs:
        return {}
    found: dict[tuple[int, int], list[AttemptRow]] = {pair: [] for pair in pairs.values()}
    # The students' own IN lets SQLite search the (student, series) index: on the pairs alone it
    # scans the whole table (5.6 against 0.7 ms for 100 keys among 48,000 attempts).
    students = sorted({student for student, _ in found})
    query = (
        select(*_COLUMNS)
        .where(Attempt.student_id.in_(students), tuple_(Attempt.student_id, Attempt.series_id).in_(found))
        .order_by(Attempt.id)
    )
    for row in read(engine, lambda conn: list(conn.execute(query))):
        found[(row.student_id, row.series_id)].append(_row(row))
    return {key: tuple(found[pair]) for key, pair in pairs.items()}


@dataclass(frozen=True)
class NewAttempt:
    """An attempt to record: who, which exam (and its series), the score, when it was submitted."""

    student_id: int
    series_id: int
    exam_id: int
    score: int
    submitted_at: datetime


@dataclass(frozen=True)
class Inserted:
    """What one INSERT of a group wrote and read: its rows (in the group's order), the fragments of
    the keys it read back (`portal.pgfragments.insert_reading_back`) and the other workers it told."""

    rows: list[AttemptRow]
    fragments: dict[str, bytes]
    peers: int


def record_attempts(engine: Engine, attempts: Sequence[NewAttempt]) -> list[AttemptRow]:
    """Insert attempts in one transaction (one commit) and return them in the same order."""
    if not attempts:
        return []
    if engine.dialect.name == "postgresql":
        # One statement in autocommit: its own transaction, one commit.
        attempt_ids = sorted(
            row[0] for row in driver.fetch_all(engine, INSERT_POSTGRESQL, insert_params(attempts))
        )
    else:
        with engine.begin() as conn:
            # The fields are the columns. SQLite keeps a time's clock reading and drops its offset: store UTC.
            values = [dataclasses.asdict(a) | {"submitted_at": _utc(a.submitted_at)} for a in attempts]
            ids = conn.execute(insert(Attempt).returning(Attempt.id, sort_by_parameter_order=True), values)
            attempt_ids = [int(attempt_id) for attempt_id in ids.scalars()]
    return attempt_rows(attempt_ids, attempts)


def record_attempts_notifying(
    engine: Engine, attempts: Sequence[NewAttempt], notice: PeerNotice
) -> tuple[list[AttemptRow], int]:
    """PostgreSQL: `record_attempts`, sending `notice` in the same statement; the rows and the peer count."""
    found = driver.fetch_all(engine, _INSERT_NOTIFYING_POSTGRESQL, (*insert_params(attempts), *notice.params))
    peers = int(found[0][1]) if found else 0
    return attempt_rows(sorted(row[0] for row in found), attempts), peers


def attempt_rows(attempt_ids: Sequence[int], attempts: Sequence[NewAttempt]) -> list[AttemptRow]:
    return [
        (attempt_id, a.exam_id, a.score, _epoch_ms(a.submitted_at))
        for attempt_id, a in zip(attempt_ids, attempts, strict=True)
    ]


def insert_params(attempts: Sequence[NewAttempt]) -> tuple[str, ...]:
    """The INSERT's five columns as array literals: psycopg dumps a list element by element in
    Python, a third of the statement's CPU for a group of ten (70-130 us a statement)."""
    return (
        _int_array([a.student_id for a in attempts]),
        _int_array([a.series_id for a in attempts]),
        _int_array([a.exam_id for a in attempts]),
        _int_array([a.score for a in attempts]),
        "{" + ",".join(f'"{a.submitted_at.isoformat()}"' for a in attempts) + "}",
    )


def _int_array(values: list[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def record_attempt(
    engine: Engine, *, student_id: int, series_id: int, exam_id: int, score: int
) -> AttemptRow:
    """Insert one attempt and return it."""
    attempt = NewAttempt(student_id, series_id, exam_id, score, datetime.now(UTC))
    return record_attempts(engine, [attempt])[0]


def load_catalog(engine: Engine) -> Catalog:
    """Read the series, their exams and the highest student id."""
    return read(engine, _catalog)


def _catalog(conn: Connection) -> Catalog:
    series = {row.id: row.name for row in conn.execute(select(TestSeries.id, TestSeries.name))}
    exams: dict[int, list[int]] = {sid: [] for sid in series}
    exam_series: dict[int, int] = {}
    for row in conn.execute(select(Exam.id, Exam.series_id).order_by(Exam.id)):
        exams.setdefault(row.series_id, []).append(row.id)
        exam_series[row.id] = row.series_id
    max_student = conn.execute(select(func.coalesce(func.max(Student.id), 0))).scalar_one()
    return Catalog(
        series=dict(sorted(series.items())),
        exams={sid: tuple(ids) for sid, ids in exams.items()},
        exam_series=exam_series,
        max_student_id=int(max_student),
    )


def count_attempts(engine: Engine, student_ids: Iterable[int] | None = None) -> int:
    """Count attempts, optionally only those of some students."""
    query = select(func.count()).select_from(Attempt)
    if student_ids is not None:
        query = query.where(Attempt.student_id.in_(list(student_ids)))
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())

"""Submissions written in groups: every submit gets its own committed attempt, and one bad attempt fails alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy

from portal import pgfragments
from portal.data import AttemptRow, get_all_exam_attempts
from portal.db import make_engine
from portal.errors import Unavailable
from portal.submits import AttemptWriter, Recorded
from tests.portal.conftest import SMALL, seed_database
from tests.support import wait_until

pytestmark = pytest.mark.integration

UNKNOWN_STUDENT = 10_000


@contextmanager
def attempts_locked(engine: sqlalchemy.Engine) -> Iterator[None]:
    """Hold the attempts table so that the first write waits and every later submit queues behind it."""
    with engine.connect() as conn, conn.begin():
        conn.execute(sqlalchemy.text("LOCK TABLE attempts IN EXCLUSIVE MODE"))
        yield


def submit_all(
    writer: AttemptWriter, students: list[int]
) -> tuple[list[threading.Thread], dict[int, object]]:
    results: dict[int, object] = {}

    def submit(student: int) -> None:
        try:
            results[student] = writer.record(
                student_id=student, series_id=1, exam_id=1, score=student % 100
            ).row
        except BaseException as exc:  # noqa: BLE001 - the test inspects which submits failed, and how
            results[student] = exc

    threads = [threading.Thread(target=submit, args=(s,)) for s in students]
    for thread in threads:
        thread.start()
    return threads, results


def inserts_waiting_for_lock(engine: sqlalchemy.Engine) -> int:
    with engine.connect() as conn:
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE '%INSERT INTO attempts%' AND datname = current_database()"
        )
        return int(conn.execute(sqlalchemy.text(query)).scalar_one())


def submit_behind_a_held_write(
    writer: AttemptWriter, engine: sqlalchemy.Engine, students: list[int], *, writes: int = 1
):
    """The first `writes` students' writes wait on the locked table, one after another; all the others
    queue behind them."""
    threads: list[threading.Thread] = []
    results: list[dict[int, object]] = []  # each filled by its threads as they finish
    with attempts_locked(engine):
        for held, student in enumerate(students[:writes], start=1):
            started, result = submit_all(writer, [student])
            threads += started
            results.append(result)

            def all_held(held: int = held) -> bool:
                return inserts_waiting_for_lock(engine) == held

            wait_until(all_held, what=f"write {held} to wait for the lock")
        others, rest = submit_all(writer, students[writes:])
        wait_until(lambda: writer.waiting == len(students) - writes, what="every other submit queued")
    for thread in threads + others:
        thread.join(timeout=30)
    return {student: row for result in [*results, rest] for student, row in result.items()}


def commits_of_new_attempts(engine: sqlalchemy.Engine, above_id: int) -> int:
    """Transactions that wrote the attempts above `above_id` (rows of one transaction share its xmin)."""
    with engine.connect() as conn:
        query = "SELECT count(DISTINCT xmin::text) FROM attempts WHERE id > :id"
        return int(conn.execute(sqlalchemy.text(query), {"id": above_id}).scalar_one())


def max_attempt_id(engine: sqlalchemy.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sqlalchemy.text("SELECT max(id) FROM attempts")).scalar_one())


@pytest.fixture
def engine(fresh_postgres_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = make_engine(seed_database(fresh_postgres_url))
    yield engine
    engine.dispose()


def test_submits_that_arrive_together_share_one_commit_and_each_gets_its_own_attempt(engine):
    writer = AttemptWriter(engine)  # by default one write in flight: the rest queue
    students = list(range(1, SMALL.students + 1))
    before = max_attempt_id(engine)
    results = submit_behind_a_held_write(writer, engine, students)

    rows: dict[int, AttemptRow] = {s: r for s, r in results.items() if isinstance(r, tuple)}
    assert sorted(rows) == students
    assert len({row[0] for row in rows.values()}) == len(students)
    for student, (_id, exam_id, score, _at) in rows.items():
        assert (exam_id, score) == (1, student % 100)
        assert rows[student] in get_all_exam_attempts(engine, student, 1)
    assert commits_of_new_attempts(engine, before) == 2  # the first submit alone, then all the others


def test_with_two_writers_a_second_group_is_written_while_the_first_waits(engine):
    writer = AttemptWriter(engine, max_writers=2)
    students = list(range(1, SMALL.students + 1))
    before = max_attempt_id(engine)
    results = submit_behind_a_held_write(writer, engine, students, writes=2)

    assert sorted(s for s, r in results.items() if isinstance(r, tuple)) == students
    assert commits_of_new_attempts(engine, before) == 3  # two alone, then the queued ones together


def test_a_bad_attempt_in_a_group_fails_only_its_own_submit(engine):
    writer = AttemptWriter(engine, max_writers=1)  # one write in flight: the rest must queue
    students = [1, 2, UNKNOWN_STUDENT, 3]
    results = submit_behind_a_held_write(writer, engine, students)

    assert isinstance(results[UNKNOWN_STUDENT], sqlalchemy.exc.IntegrityError)
    for student in (1, 2, 3):
        assert results[student] in get_all_exam_attempts(engine, student, 1)


def test_queued_submits_are_written_a_group_at_a_time_each_group_handing_the_next_its_turn(engine):
    # One write in flight and groups of 3: after the held write, each finished group hands the
    # turn to the oldest queued submit, whose thread writes the next 3. None may be left waiting.
    writer = AttemptWriter(engine, max_writers=1, max_batch=3)
    students = list(range(1, SMALL.students + 1))
    queued = len(students) - 1
    assert queued > 3  # several groups behind the held one
    before = max_attempt_id(engine)
    results = submit_behind_a_held_write(writer, engine, students)

    rows = {s: r for s, r in results.items() if isinstance(r, tuple)}
    assert sorted(rows) == students
    groups = 1 + -(-queued // 3)
    assert writer.groups == groups
    assert writer.waiting == 0
    assert commits_of_new_attempts(engine, before) == groups


class Interrupted(BaseException):
    """What stops a thread outside the errors a write handles (as KeyboardInterrupt would)."""


def test_a_write_interrupted_mid_group_fails_its_other_submits_instead_of_leaving_them_waiting(engine):
    writer = AttemptWriter(engine, max_writers=1)
    students = list(range(1, SMALL.students + 1))
    before = max_attempt_id(engine)
    inserts = []

    def interrupt_the_second_insert(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO attempts"):
            inserts.append(statement)
            if len(inserts) == 2:  # the queued group's, after the held write
                raise Interrupted

    sqlalchemy.event.listen(engine, "before_cursor_execute", interrupt_the_second_insert)
    try:
        results = submit_behind_a_held_write(writer, engine, students)
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", interrupt_the_second_insert)

    assert isinstance(results[1], tuple)  # the held write
    assert isinstance(results[2], Interrupted)  # the oldest queued submit: its thread wrote the group
    for student in students[2:]:
        assert isinstance(results[student], Unavailable)
        assert results[student].code == "write_interrupted"
    assert writer.waiting == 0
    assert commits_of_new_attempts(engine, before) == 1  # the interrupted group wrote nothing


def test_a_group_reads_back_the_keys_each_submit_asked_for_with_its_own_attempt(engine):
    writer = AttemptWriter(engine, max_writers=1, max_batch=10)
    asked = {student: (f"{student}:1", f"{student}:2") for student in (1, 2, 3)}
    recorded: dict[int, object] = {}

    def submit(student: int) -> None:
        recorded[student] = writer.record(
            student_id=student, series_id=1, exam_id=1, score=60 + student, read_back=asked[student]
        )

    with attempts_locked(engine):
        first = threading.Thread(target=submit, args=(1,))
        first.start()
        wait_until(lambda: inserts_waiting_for_lock(engine) > 0, what="the first write to wait for the lock")
        others = [threading.Thread(target=submit, args=(s,)) for s in (2, 3)]
        for thread in others:
            thread.start()
        wait_until(lambda: writer.waiting == 2, what="the other submits queued")
    for thread in [first, *others]:
        thread.join(timeout=30)

    assert writer.groups == 2  # 1 alone, then 2 and 3 together
    for student, keys in asked.items():
        result = recorded[student]
        assert isinstance(result, Recorded)
        assert result.fragments == pgfragments.read_many(engine, keys)
        assert get_all_exam_attempts(engine, student, 1)[-1] == result.row
        assert f'"score":{60 + student}'.encode() in result.fragments[f"{student}:1"]

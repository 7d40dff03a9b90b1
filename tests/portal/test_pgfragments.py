"""The batched read on PostgreSQL writes the same fragment bytes as `fragments.encode` of the same rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from portal import data, fragments, pgfragments
from portal.db import make_engine
from portal.invalidation import PeerNotice
from portal.models import Attempt, Exam
from tests.portal.conftest import seed_database

pytestmark = pytest.mark.integration

_ATTEMPT = st.tuples(
    st.integers(min_value=0, max_value=4),  # which of the series' exams
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)),
)


@pytest.fixture
def engine(fresh_postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(seed_database(fresh_postgres_url))
    yield engine
    engine.dispose()


def _replace_attempts(
    engine: Engine, student_id: int, series_id: int, attempts: list[tuple[int, int, int, datetime]]
) -> None:
    with engine.begin() as conn:
        exams = (
            conn.execute(sqlalchemy.select(Exam.id).where(Exam.series_id == series_id).order_by(Exam.id))
            .scalars()
            .all()
        )
        conn.execute(
            sqlalchemy.delete(Attempt).where(Attempt.student_id == student_id, Attempt.series_id == series_id)
        )
        for attempt_id, exam, score, submitted_at in attempts:
            conn.execute(
                sqlalchemy.insert(Attempt).values(
                    id=attempt_id,
                    student_id=student_id,
                    series_id=series_id,
                    exam_id=exams[exam % len(exams)],
                    score=score,
                    submitted_at=submitted_at,
                )
            )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    attempts=st.lists(_ATTEMPT, max_size=6),
    ids=st.lists(st.integers(min_value=10**6, max_value=2**31 - 1), min_size=6, max_size=6, unique=True),
)
def test_the_database_writes_the_fragment_python_writes(engine: Engine, attempts, ids) -> None:
    rows = [(attempt_id, *attempt) for attempt_id, attempt in zip(ids, attempts, strict=False)]
    _replace_attempts(engine, 1, 1, rows)
    expected = fragments.encode(data.get_all_exam_attempts(engine, 1, 1))
    other = fragments.encode(data.get_all_exam_attempts(engine, 2, 1))
    assert pgfragments.read_many(engine, ["1:1", "2:1"]) == {"1:1": expected, "2:1": other}


def test_keys_without_attempts_repeated_or_zero_padded_come_back_as_asked(engine: Engine) -> None:
    _replace_attempts(engine, 3, 2, [])
    _replace_attempts(engine, 4, 2, [(10**7, 0, 70, datetime(2026, 12, 1, 6, 47, 5, 123999, tzinfo=UTC))])
    found = pgfragments.read_many(engine, ["3:2", "4:2", "004:2", "4:2"])
    assert found["3:2"] == fragments.encode(()) == pgfragments.EMPTY
    assert found["4:2"] == found["004:2"] == fragments.encode(data.get_all_exam_attempts(engine, 4, 2))
    assert b'"submitted_at":"2026-12-01T06:47:05.123+00:00"' in found["4:2"]
    assert list(found) == ["3:2", "4:2", "004:2"]
    assert pgfragments.read_many(engine, []) == {}


@pytest.mark.parametrize("bad", ["1", "1:x", "1:2,3:4", "-1:2", " 1:2"])
def test_a_key_that_is_not_student_and_series_is_refused(engine: Engine, bad: str) -> None:
    with pytest.raises(ValueError, match="not an attempts key"):
        pgfragments.read_many(engine, ["1:1", bad])


def _new(student_id: int, series_id: int, exam_id: int, score: int) -> data.NewAttempt:
    return data.NewAttempt(
        student_id, series_id, exam_id, score, datetime(2026, 12, 1, 9, 0, 0, 250000, tzinfo=UTC)
    )


def test_an_insert_reads_back_every_asked_key_as_a_read_after_it_would(engine: Engine) -> None:
    _replace_attempts(engine, 1, 1, [(10**7, 0, 40, datetime(2026, 11, 30, 8, 0, tzinfo=UTC))])
    _replace_attempts(engine, 1, 2, [])
    exam = data.load_catalog(engine).exams[1][0]
    keys = ["1:1", "1:2", "2:1"]

    inserted = pgfragments.insert_reading_back(engine, [_new(1, 1, exam, 90), _new(2, 1, exam, 10)], keys)

    assert inserted.fragments == pgfragments.read_many(engine, keys)
    assert inserted.fragments["1:2"] == pgfragments.EMPTY
    assert b'"score":40' in inserted.fragments["1:1"] and b'"score":90' in inserted.fragments["1:1"]
    assert [(row[1], row[2]) for row in inserted.rows] == [(exam, 90), (exam, 10)]
    assert inserted.rows[0][0] < inserted.rows[1][0]
    assert data.get_all_exam_attempts(engine, 2, 1)[-1] == inserted.rows[1]
    assert inserted.peers == 0


def test_an_insert_reading_back_no_key_only_inserts(engine: Engine) -> None:
    exam = data.load_catalog(engine).exams[1][0]
    inserted = pgfragments.insert_reading_back(engine, [_new(3, 1, exam, 55)], [])
    assert inserted.fragments == {}
    assert data.get_all_exam_attempts(engine, 3, 1)[-1] == inserted.rows[0]


def test_an_insert_reading_back_sends_its_notice_when_it_commits(engine: Engine) -> None:
    import psycopg

    exam = data.load_catalog(engine).exams[1][0]
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN rg_read_back")
        notice = PeerNotice(("rg_read_back", "4:1", "nobody-listens-as-this", 0), batch=None)  # type: ignore[arg-type]
        inserted = pgfragments.insert_reading_back(engine, [_new(4, 1, exam, 70)], ["4:1"], notice)
        heard = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
    assert heard == ["4:1"]
    assert inserted.peers == 0
    assert inserted.fragments == pgfragments.read_many(engine, ["4:1"])

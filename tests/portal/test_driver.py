"""Statements on the pooled psycopg connection (`portal.driver`) behave as SQLAlchemy's would, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy
from sqlalchemy import Engine, exc

from portal import data, driver, pgfragments
from portal.db import PoolWatch, make_engine
from tests.portal.conftest import seed_database
from tests.portal.test_backends import _terminate_backends

pytestmark = pytest.mark.integration


@pytest.fixture
def database(fresh_postgres_url: str) -> str:
    return seed_database(fresh_postgres_url)


@pytest.fixture
def engine(database: str) -> Iterator[Engine]:
    engine = make_engine(database, pool_size=2)
    yield engine
    engine.dispose()


def test_rows_come_back_as_tuples_and_the_engine_listeners_see_the_statement(engine: Engine) -> None:
    seen: list[str] = []
    sqlalchemy.event.listen(
        engine, "before_cursor_execute", lambda _c, _cur, statement, *_: seen.append(statement)
    )
    rows = driver.fetch_all(engine, "SELECT %s::int + 1, %s::text", (41, "x"))
    assert rows == [(42, "x")]
    assert seen == ["SELECT %s::int + 1, %s::text"]


def _assert_a_transaction_rolls_back(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE students SET name = 'changed' WHERE id = 1"))
        raise RuntimeError("abort the transaction")
    with engine.connect() as conn:
        name = conn.execute(sqlalchemy.text("SELECT name FROM students WHERE id = 1")).scalar_one()
    assert name != "changed"


def test_a_pooled_connection_goes_back_out_of_autocommit(engine: Engine) -> None:
    # Autocommit for the statement only: a later SQLAlchemy transaction still rolls back as one.
    driver.fetch_all(engine, "SELECT 1", ())
    _assert_a_transaction_rolls_back(engine)


def test_a_failed_statement_raises_sqlalchemys_error_and_its_connection_is_not_reused(engine: Engine) -> None:
    watch = PoolWatch(engine)
    with pytest.raises(exc.ProgrammingError) as raised:
        driver.fetch_all(engine, "SELECT * FROM no_such_table", ())
    assert not raised.value.connection_invalidated
    assert watch.in_use == 0
    # The pool still serves, in transactions as before.
    _assert_a_transaction_rolls_back(engine)
    assert driver.fetch_all(engine, "SELECT 2", ()) == [(2,)]


def test_a_lost_connection_is_reported_as_invalidated_and_the_pool_replaces_every_connection(
    engine: Engine, database: str
) -> None:
    # Two connections in the pool, both of them killed.
    with engine.connect() as first, engine.connect() as second:
        first.execute(sqlalchemy.text("SELECT 1"))
        second.execute(sqlalchemy.text("SELECT 1"))
    assert _terminate_backends(database) >= 2
    with pytest.raises(exc.OperationalError) as raised:
        driver.fetch_all(engine, "SELECT 1", ())
    assert raised.value.connection_invalidated
    # The next statement gets a new connection, not the other dead one.
    assert driver.fetch_all(engine, "SELECT 3", ()) == [(3,)]


def test_a_batched_read_on_a_lost_connection_is_read_again(engine: Engine, database: str) -> None:
    keys = [data.attempts_key(4, series) for series in range(1, 13)]
    before = pgfragments.read_many(engine, keys)
    assert _terminate_backends(database) >= 1
    assert pgfragments.read_many(engine, keys) == before


def test_a_refused_connection_is_an_operational_error(database: str) -> None:
    unreachable = make_engine(
        sqlalchemy.engine.make_url(database).set(port=1).render_as_string(hide_password=False)
    )
    try:
        with pytest.raises(exc.OperationalError):
            driver.fetch_all(unreachable, "SELECT 1", ())
    finally:
        unreachable.dispose()

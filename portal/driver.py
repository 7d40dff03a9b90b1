"""The portal's two hot statements on PostgreSQL, run on the pooled psycopg connection itself.

A cold MyTestSeries page reads a student's keys in one statement
(`portal.pgfragments`) and a group of submits writes in one (`portal.data`).
Through SQLAlchemy Core, building the execution context and the `Result` of
such a statement cost more CPU than psycopg's own work: for 12 keys, 390-650 us
of Python against 245 us here (`bench/portal_burst_cost.py` measures what that
does to the mass submission).
So these statements take the connection from the engine's pool, as everything
else does (its checkout events, `portal.db.IdlePing`, its bound), fire the
engine's `before_cursor_execute` event (its listeners get no SQLAlchemy
Connection: there is none), and run in autocommit on the psycopg cursor,
prepared server-side, rows as plain tuples.
A single INSERT in autocommit is its own transaction: one round trip where
BEGIN, INSERT and COMMIT took three.

Errors come out as SQLAlchemy's, as from any other statement: a lost
connection is a `sqlalchemy.exc.DBAPIError` with `connection_invalidated`
(`portal.data.read` retries those, `portal.db.connection_lost` answers 503),
and, as SQLAlchemy does on a disconnect, every connection the pool held from
before is replaced rather than handed out again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import psycopg
from sqlalchemy import Engine, exc
from sqlalchemy.pool import PoolProxiedConnection


def fetch_all(engine: Engine, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run one statement in autocommit on a pooled connection; its rows.

    :raise sqlalchemy.exc.DBAPIError: the statement failed (`connection_invalidated` if the connection was lost).
    """
    try:
        pooled = engine.raw_connection()
    except psycopg.Error as error:  # the pool could not connect: as `engine.connect()` would raise it
        raise _wrapped(engine, error, statement, params, lost=False) from error
    try:
        connection = cast("psycopg.Connection[Any]", pooled.driver_connection)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                # What listens to the engine's statements (the query counter, tests) sees this one too.
                engine.dispatch.before_cursor_execute(None, cursor, statement, params, None, False)
                cursor.execute(statement, params, prepare=True)
                rows = cursor.fetchall()
            connection.autocommit = False  # as SQLAlchemy expects every pooled connection to be
        except psycopg.Error as error:
            raise _translated(engine, pooled, error, statement, params) from error
        return rows
    finally:
        pooled.close()


def _translated(
    engine: Engine, pooled: PoolProxiedConnection, error: psycopg.Error, statement: str, params: Sequence[Any]
) -> exc.DBAPIError:
    dbapi_error: Any = error  # SQLAlchemy types it as its own DB-API protocol
    lost = cast("psycopg.Connection[Any]", pooled.driver_connection).closed or engine.dialect.is_disconnect(
        dbapi_error, pooled.dbapi_connection, None
    )
    # Never pooled again: it may be broken, or left in autocommit by the failed statement.
    pooled.invalidate(error)
    if lost:
        # The database restarted or dropped its backends: the pool's other connections are as dead
        # as this one. A new pool replaces them; the old one hands out nothing again.
        engine.dispose(close=False)
    return _wrapped(engine, error, statement, params, lost=lost)


def _wrapped(
    engine: Engine, error: psycopg.Error, statement: str, params: Sequence[Any], *, lost: bool
) -> exc.DBAPIError:
    wrapped = exc.DBAPIError.instance(
        statement, params, error, psycopg.Error, connection_invalidated=lost, dialect=engine.dialect
    )
    assert isinstance(wrapped, exc.DBAPIError)  # psycopg.Error is a DB-API error: never another kind
    return wrapped

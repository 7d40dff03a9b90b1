"""Downsampled copies of the scraped samples: per minute and per 5 minutes, kept as they are scraped.

`ControlStore.add_samples` folds every batch into these tables in the same
transaction; `control.embedded` reads them instead of the raw samples when a
series' step and window are long enough (`resolution_for`), so that a chart
over a day reads about 1,440 rows per series instead of 17,280. Each row keeps,
per series (target, name, fn, path, le) and bucket, the last sample (time and
value: what `increase` needs of a counter) and the largest value (what
`max_over_time` needs of a gauge).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    case,
    delete,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

#: Bucket lengths in seconds, finest first.
RESOLUTIONS_S = (60, 300)
_KEY = ("bucket", "target", "name", "fn", "path", "le")


def _table(metadata: MetaData, resolution_s: int) -> Table:
    name = f"control_samples_{resolution_s}s"
    return Table(
        name,
        metadata,
        Column("bucket", Float(precision=53), nullable=False),
        Column("target", String(500), nullable=False),
        Column("name", String(200), nullable=False),
        # "" instead of NULL: NULLs never collide in a primary key, so upserts would not merge.
        Column("fn", String(200), nullable=False),
        Column("path", String(50), nullable=False),
        Column("le", String(50), nullable=False),
        Column("ts", Float(precision=53), nullable=False),
        Column("value", Float(precision=53), nullable=False),
        Column("max_value", Float(precision=53), nullable=False),
        PrimaryKeyConstraint(*_KEY, name=f"pk_{name}"),
        Index(f"ix_{name}_name_bucket", "name", "bucket"),
    )


def define_tables(metadata: MetaData) -> dict[int, Table]:
    """The rollup tables, one per resolution, on the store's metadata."""
    return {resolution: _table(metadata, resolution) for resolution in RESOLUTIONS_S}


def fold(rows: Iterable[dict[str, Any]], resolution_s: int) -> list[dict[str, Any]]:
    """Fold raw sample rows into one row per series and bucket: last sample and largest value."""
    folded: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        bucket = row["ts"] // resolution_s * resolution_s
        key = (bucket, row["target"], row["name"], row["fn"] or "", row["path"] or "", row["le"] or "")
        seen = folded.get(key)
        if seen is None:
            folded[key] = dict(zip(_KEY, key, strict=True)) | {
                "ts": row["ts"],
                "value": row["value"],
                "max_value": row["value"],
            }
            continue
        if row["ts"] >= seen["ts"]:
            seen["ts"], seen["value"] = row["ts"], row["value"]
        seen["max_value"] = max(seen["max_value"], row["value"])
    return list(folded.values())


def add(conn: Connection, tables: dict[int, Table], rows: Sequence[dict[str, Any]]) -> None:
    """Merge raw sample rows into every rollup table (insert, or update the bucket's row)."""
    for resolution, table in tables.items():
        folded = fold(rows, resolution)
        if folded:
            conn.execute(_upsert(conn, table), folded)


def _upsert(conn: Connection, table: Table) -> Any:
    # Both dialects spell the upsert alike (INSERT ... ON CONFLICT DO UPDATE).
    statement: Any = postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)
    new, old = statement.excluded, table.c
    newer = new.ts >= old.ts
    return statement.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={
            "ts": case((newer, new.ts), else_=old.ts),
            "value": case((newer, new.value), else_=old.value),
            "max_value": case((new.max_value > old.max_value, new.max_value), else_=old.max_value),
        },
    )


def prune(conn: Connection, tables: dict[int, Table], *, before: datetime) -> None:
    """Drop rollup rows of buckets that ended before `before` (same retention as the raw samples)."""
    for resolution, table in tables.items():
        conn.execute(delete(table).where(table.c.bucket < before.timestamp() - resolution))


def select_rows(
    table: Table, names: Sequence[str], *, start: float, end: float, fn: str | None, path: str | None
) -> Any:
    """The query for rollup rows of `names` whose last sample lies within [start, end], oldest first."""
    c = table.c
    query = select(c.ts, c.target, c.name, c.fn, c.path, c.le, c.value, c.max_value).where(
        c.name.in_(list(names)), c.bucket >= start - max(RESOLUTIONS_S), c.ts >= start, c.ts <= end
    )
    if fn is not None:
        query = query.where(c.fn == fn)
    if path is not None:
        query = query.where(c.path == path)
    return query.order_by(c.ts)


def resolution_for(step_s: int, window_s: int) -> int | None:
    """The coarsest rollup a series may read: buckets no longer than its step, at least two per window."""
    fitting = [r for r in RESOLUTIONS_S if r <= step_s and 2 * r <= window_s]
    return max(fitting) if fitting else None

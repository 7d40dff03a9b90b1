"""The controller's own database: scraped samples, verdicts, decisions and the leader lease.

Written by the embedded scraper (`control.scraper`) and the decision loop
(`control.loop`) through `ControlStore`; read by the embedded metric source
(`control.embedded`), the backtest and `rollguard control status`, and by other
parts (the dashboard) only through `control.history.ControlHistory`, which opens
it read-only. No other component writes it, and the controller writes no other
component's database.

SQLite (the default, a file under ./var/) or PostgreSQL through SQLAlchemy.
With SQLite the scraper writes while the dashboard and a second controller
read, so connections use WAL mode and a busy timeout. Times are stored as
UTC epoch seconds (floats) and returned as tz-aware UTC datetimes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    event,
    exc,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import URL, Engine, RowMapping, make_url

from control import rollups

Clock = Callable[[], datetime]

LEASE_NAME = "controller"
_ID = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData()

samples_table = Table(
    "control_samples",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("ts", Float(precision=53), nullable=False),
    Column("target", String(500), nullable=False),
    Column("name", String(200), nullable=False),
    Column("fn", String(200)),
    Column("path", String(50)),
    Column("le", String(50)),
    Column("labels", Text, nullable=False, default="{}"),
    Column("value", Float(precision=53), nullable=False),
    Index("ix_control_samples_name_ts", "name", "ts"),
    Index("ix_control_samples_ts", "ts"),
)

verdicts_table = Table(
    "control_verdicts",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("ts", Float(precision=53), nullable=False),
    Column("flag", String(100), nullable=False),
    Column("guardrail", String(200), nullable=False),
    Column("metric", String(100), nullable=False),
    Column("path", String(50)),
    Column("verdict", String(10), nullable=False),
    Column("value", Float(precision=53)),
    Column("threshold", Float(precision=53), nullable=False),
    Column("samples", Integer, nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_control_verdicts_flag_ts", "flag", "ts"),
)

decisions_table = Table(
    "control_decisions",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("ts", Float(precision=53), nullable=False),
    Column("flag", String(100), nullable=False),
    Column("action", String(10), nullable=False),
    Column("reason", Text, nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("rollout", Integer),
    Column("holder", String(200), nullable=False, default=""),
    Index("ix_control_decisions_flag_ts", "flag", "ts"),
)

rollup_tables = rollups.define_tables(metadata)

lease_table = Table(
    "control_lease",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", Float(precision=53), nullable=False),
    Column("expires_at", Float(precision=53), nullable=False),
    Column("last_evaluation_at", Float(precision=53)),
)


@dataclass(frozen=True)
class Sample:
    """One scraped sample: a value of one series (target + metric name + labels) at a time."""

    time: datetime
    target: str
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class RawSample:
    """A stored sample as the embedded source reads it: epoch seconds, series key, value."""

    ts: float
    target: str
    name: str
    fn: str | None
    path: str | None
    le: str | None
    value: float
    #: The other labels as sorted JSON (e.g. `{"reason": "..."}` of a bypass counter).
    labels: str = "{}"

    @property
    def series(self) -> tuple[str, str, str | None, str | None, str | None, str]:
        return (self.target, self.name, self.fn, self.path, self.le, self.labels)


@dataclass(frozen=True)
class VerdictRecord:
    """A guardrail's verdict at one evaluation: pass, fail or no_data."""

    time: datetime
    flag: str
    guardrail: str
    verdict: str
    value: float | None
    threshold: float
    samples: int
    metric: str = ""
    path: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class DecisionRecord:
    """What the controller decided for a flag at one evaluation (and whether it only logged it)."""

    time: datetime
    flag: str
    action: str
    reason: str
    dry_run: bool
    rollout: int | None = None
    holder: str = ""


@dataclass(frozen=True)
class Lease:
    """One holder's tenure of the leader lease: `term` changes whenever another holder takes it."""

    holder: str
    term: float
    expires_at: float


@dataclass(frozen=True)
class ControllerStatus:
    """The leader lease: who holds it, until when, and when it last evaluated the flags."""

    holder: str
    acquired_at: datetime
    expires_at: datetime
    last_evaluation_at: datetime | None
    is_live: bool


class StoreReader:
    """The reads of the controller's database over one engine; `ControlStore` adds the writes.

    `control.history.ControlHistory` offers these reads to other parts over a read-only engine.
    """

    def __init__(self, engine: Engine, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self._clock = clock or _utcnow

    def close(self) -> None:
        self.engine.dispose()

    # samples (scraper writes, embedded source reads)

    def raw_samples(
        self,
        names: Sequence[str],
        *,
        start: datetime,
        end: datetime,
        fn: str | None = None,
        path: str | None = None,
    ) -> list[RawSample]:
        """Samples of the named metrics with start <= time <= end, oldest first."""
        c = samples_table.c
        query = select(c.ts, c.target, c.name, c.fn, c.path, c.le, c.value, c.labels).where(
            c.name.in_(list(names)), c.ts >= start.timestamp(), c.ts <= end.timestamp()
        )
        if fn is not None:
            query = query.where(c.fn == fn)
        if path is not None:
            query = query.where(c.path == path)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(c.ts, c.id)).all()
        return [RawSample(*row) for row in rows]

    def rollup_samples(
        self,
        names: Sequence[str],
        *,
        resolution_s: int,
        start: datetime,
        end: datetime,
        fn: str | None = None,
        path: str | None = None,
        largest: Sequence[str] = (),
    ) -> list[RawSample]:
        """The last sample of each `resolution_s` bucket within [start, end], oldest first.

        For the names in `largest` (gauges) the value is the bucket's largest instead of its last.
        """
        query = rollups.select_rows(
            rollup_tables[resolution_s], names, start=start.timestamp(), end=end.timestamp(), fn=fn, path=path
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            RawSample(
                ts, target, name, fn or None, path or None, le or None, top if name in largest else value
            )
            for ts, target, name, fn, path, le, value, top in rows
        ]

    def sample_span(self) -> tuple[datetime, datetime] | None:
        """The times of the oldest and newest stored samples, or None when there are none."""
        with self.engine.connect() as conn:
            low, high = conn.execute(select(func.min(samples_table.c.ts), func.max(samples_table.c.ts))).one()
        if low is None:
            return None
        return _dt(low), _dt(high)

    def newest_sample_time(self) -> datetime | None:
        """The time of the newest stored sample (the latest scrape), or None when there is none."""
        with self.engine.connect() as conn:
            newest = conn.execute(select(func.max(samples_table.c.ts))).scalar()
        return None if newest is None else _dt(newest)

    # verdicts and decisions (loop writes; dashboard, status and decide() read)

    def verdicts(
        self, flag: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[VerdictRecord]:
        """Verdicts recorded for `flag`, oldest first, optionally within [since, until]."""
        return [_verdict(r) for r in self._history(verdicts_table, flag=flag, since=since, until=until)]

    def last_check(self, flag: str) -> list[VerdictRecord]:
        """The verdicts of the newest check of `flag` (one per guardrail then judged); empty if none."""
        c = verdicts_table.c
        newest = select(func.max(c.ts)).where(c.flag == flag).scalar_subquery()
        with self.engine.connect() as conn:
            rows = conn.execute(select(verdicts_table).where(c.flag == flag, c.ts == newest).order_by(c.id))
            return [_verdict(r) for r in rows.mappings().all()]

    def decisions(
        self, flag: str | None = None, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[DecisionRecord]:
        """Decisions, oldest first, for one flag or all, optionally within [since, until]."""
        rows = self._history(decisions_table, flag=flag, since=since, until=until)
        return [
            DecisionRecord(
                time=_dt(r["ts"]),
                flag=r["flag"],
                action=r["action"],
                reason=r["reason"],
                dry_run=bool(r["dry_run"]),
                rollout=r["rollout"],
                holder=r["holder"],
            )
            for r in rows
        ]

    def last_action_time(self, flag: str, actions: Sequence[str]) -> datetime | None:
        """When the latest decision of `flag` among `actions` that was carried out (not a dry run) was checked."""
        c = decisions_table.c
        query = select(func.max(c.ts)).where(c.flag == flag, c.action.in_(actions), c.dry_run.is_(False))
        with self.engine.connect() as conn:
            ts = conn.execute(query).scalar()
        return None if ts is None else _dt(ts)

    def _history(
        self, table: Table, *, flag: str | None, since: datetime | None, until: datetime | None
    ) -> Sequence[RowMapping]:
        """Rows of a per-flag log table, oldest first, for one flag or all, optionally within [since, until]."""
        c = table.c
        query = select(table)
        if flag is not None:
            query = query.where(c.flag == flag)
        if since is not None:
            query = query.where(c.ts >= since.timestamp())
        if until is not None:
            query = query.where(c.ts <= until.timestamp())
        with self.engine.connect() as conn:
            return conn.execute(query.order_by(c.ts, c.id)).mappings().all()

    # leader lease (the loop takes it; status and the dashboard read it)

    def controller_status(self) -> ControllerStatus | None:
        """The lease row, or None when no controller ever ran against this store."""
        with self.engine.connect() as conn:
            row = conn.execute(select(lease_table).where(lease_table.c.name == LEASE_NAME)).mappings().first()
        if row is None:
            return None
        expires = _dt(row["expires_at"])
        last = row["last_evaluation_at"]
        return ControllerStatus(
            holder=row["holder"],
            acquired_at=_dt(row["acquired_at"]),
            expires_at=expires,
            last_evaluation_at=_dt(last) if last is not None else None,
            is_live=expires > self._clock(),
        )


class ControlStore(StoreReader):
    """The controller's SQLAlchemy database, read and written; creates its tables on first use."""

    def __init__(self, database_url: str, *, clock: Clock | None = None) -> None:
        url = make_url(database_url)
        _ensure_sqlite_dir(url)
        self.url = url
        super().__init__(_create_engine(url), clock=clock)
        _create_tables(self.engine)

    # samples

    def add_samples(self, samples: Iterable[Sample]) -> int:
        """Insert scraped samples in one batch; return how many."""
        rows = [_sample_row(s) for s in samples]
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(insert(samples_table), rows)
            rollups.add(conn, rollup_tables, rows)
        return len(rows)

    def prune_samples(self, *, before: datetime) -> int:
        """Delete samples older than `before` (retention); return how many went."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(samples_table).where(samples_table.c.ts < before.timestamp()))
            rollups.prune(conn, rollup_tables, before=before)
        return int(result.rowcount or 0)

    # verdicts and decisions

    def record_verdicts(self, records: Sequence[VerdictRecord]) -> None:
        if not records:
            return
        rows = [
            {
                "ts": r.time.timestamp(),
                "flag": r.flag,
                "guardrail": r.guardrail,
                "metric": r.metric,
                "path": r.path,
                "verdict": r.verdict,
                "value": r.value,
                "threshold": r.threshold,
                "samples": r.samples,
                "detail": r.detail,
            }
            for r in records
        ]
        with self.engine.begin() as conn:
            conn.execute(insert(verdicts_table), rows)

    def record_decision(self, record: DecisionRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(decisions_table).values(
                    ts=record.time.timestamp(),
                    flag=record.flag,
                    action=record.action,
                    reason=record.reason,
                    dry_run=record.dry_run,
                    rollout=record.rollout,
                    holder=record.holder,
                )
            )

    # leader lease

    def acquire_lease(self, holder: str, *, lease_s: float) -> bool:
        """Take or renew the leader lease for `holder`; True when `holder` now leads.

        One conditional UPDATE (or the first INSERT) decides, so two controllers
        racing for an expired lease cannot both win, on SQLite and PostgreSQL alike.
        """
        now = self._clock().timestamp()
        c = lease_table.c
        with self.engine.begin() as conn:
            result = conn.execute(
                update(lease_table)
                .where(and_(c.name == LEASE_NAME, or_(c.holder == holder, c.expires_at <= now)))
                .values(
                    acquired_at=_case_acquired(holder, now),
                    holder=holder,
                    expires_at=now + lease_s,
                )
            )
            if result.rowcount:
                return True
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(lease_table).values(
                        name=LEASE_NAME, holder=holder, acquired_at=now, expires_at=now + lease_s
                    )
                )
            return True
        except exc.IntegrityError:
            return False

    def lease(self, holder: str) -> Lease | None:
        """The lease `holder` holds now, or None; its term fences the writes made under it."""
        with self.engine.connect() as conn:
            row = conn.execute(select(lease_table).where(lease_table.c.name == LEASE_NAME)).mappings().first()
        if row is None or row["holder"] != holder or row["expires_at"] <= self._clock().timestamp():
            return None
        return Lease(holder=holder, term=row["acquired_at"], expires_at=row["expires_at"])

    def holds_lease(self, lease: Lease, *, margin_s: float) -> bool:
        """Whether `lease` is still the current term with at least `margin_s` left, without renewing it."""
        current = self.lease(lease.holder)
        return (
            current is not None
            and current.term == lease.term
            and current.expires_at - self._clock().timestamp() >= margin_s
        )

    def release_lease(self, holder: str) -> None:
        """Give the lease up at once (clean shutdown) so another controller can take over."""
        now = self._clock().timestamp()
        c = lease_table.c
        with self.engine.begin() as conn:
            conn.execute(
                update(lease_table).where(c.name == LEASE_NAME, c.holder == holder).values(expires_at=now)
            )

    def mark_evaluation(self, holder: str) -> None:
        """Note that `holder` finished an evaluation of the flags now."""
        now = self._clock().timestamp()
        c = lease_table.c
        with self.engine.begin() as conn:
            conn.execute(
                update(lease_table)
                .where(c.name == LEASE_NAME, c.holder == holder)
                .values(last_evaluation_at=now)
            )


def _verdict(row: RowMapping) -> VerdictRecord:
    return VerdictRecord(
        time=_dt(row["ts"]),
        flag=row["flag"],
        guardrail=row["guardrail"],
        verdict=row["verdict"],
        value=row["value"],
        threshold=row["threshold"],
        samples=row["samples"],
        metric=row["metric"],
        path=row["path"],
        detail=row["detail"],
    )


def _case_acquired(holder: str, now: float) -> Any:
    from sqlalchemy import case

    return case((lease_table.c.holder == holder, lease_table.c.acquired_at), else_=now)


def _sample_row(sample: Sample) -> dict[str, Any]:
    labels = dict(sample.labels)
    fn = labels.pop("fn", None)
    path = labels.pop("path", None)
    le = labels.pop("le", None)
    return {
        "ts": sample.time.timestamp(),
        "target": sample.target,
        "name": sample.name,
        "fn": fn,
        "path": path,
        "le": le,
        "labels": json.dumps(labels, sort_keys=True),
        "value": sample.value,
    }


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ensure_sqlite_dir(url: URL) -> None:
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        # WAL lets the dashboard and a standby controller read while the scraper
        # writes; the busy timeout makes a second writer wait instead of failing.
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    return engine


def _create_tables(engine: Engine) -> None:
    # Two controllers (or a controller and the dashboard) may start together
    # against an empty store; the loser of the CREATE race just retries.
    for attempt in range(5):
        try:
            metadata.create_all(engine)
            return
        except exc.DBAPIError:
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))

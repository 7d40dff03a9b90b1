"""The receiver's own record of Alertmanager deliveries, in its own database.

`receiver.create_app` builds one `DeliveryStore` per process from
ROLLGUARD_ALERTS_DATABASE_URL (SQLite file by default, PostgreSQL works too)
and creates its tables. Two tables:

- `alert_deliveries`: one row per alert per delivery, with the action taken;
  append-only, read by operators through `GET /alertmanager/deliveries`.
- `alert_rollbacks`: one row per (fingerprint, startsAt), the claim that makes
  a rollback happen once however often, and by however many workers or
  Alertmanager replicas, the same firing alert is delivered.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

# A claim still pending after this long belongs to a worker that died between
# claiming and finishing; a later delivery may take it over.
CLAIM_LEASE = timedelta(seconds=60)


class Action(enum.StrEnum):
    """What the receiver did with one alert of one delivery."""

    KILLED = "killed"
    DUPLICATE = "duplicate"
    RESOLVED = "resolved"
    IGNORED = "ignored"
    MISSING_FLAG = "missing_flag"
    INVALID_FLAG = "invalid_flag"
    UNKNOWN_FLAG = "unknown_flag"
    FLAG_SERVICE_UNAVAILABLE = "flag_service_unavailable"
    FLAG_SERVICE_REJECTED = "flag_service_rejected"


class _Base(DeclarativeBase):
    pass


class _DeliveryRow(_Base):
    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), index=True)
    group_key: Mapped[str] = mapped_column(sa.Text)
    fingerprint: Mapped[str] = mapped_column(sa.String(64), index=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    alertname: Mapped[str] = mapped_column(sa.String(200))
    flag: Mapped[str | None] = mapped_column(sa.String(200), index=True)
    labels: Mapped[dict[str, str]] = mapped_column(sa.JSON)
    annotations: Mapped[dict[str, str]] = mapped_column(sa.JSON)
    starts_at: Mapped[str] = mapped_column(sa.String(40))
    ends_at: Mapped[str | None] = mapped_column(sa.String(40))
    action: Mapped[str] = mapped_column(sa.String(40))
    detail: Mapped[str | None] = mapped_column(sa.Text)


class _RollbackRow(_Base):
    __tablename__ = "alert_rollbacks"

    fingerprint: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    starts_at: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    flag: Mapped[str] = mapped_column(sa.String(200))
    alertname: Mapped[str] = mapped_column(sa.String(200))
    claimed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    done: Mapped[bool] = mapped_column(sa.Boolean, default=False)


@dataclass(frozen=True)
class Delivery:
    """One alert of one webhook delivery and what was done with it."""

    received_at: datetime
    group_key: str
    fingerprint: str
    status: str
    alertname: str
    flag: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str
    ends_at: str | None
    action: Action
    detail: str | None = None
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat(),
            "group_key": self.group_key,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "alertname": self.alertname,
            "flag": self.flag,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "action": self.action.value,
            "detail": self.detail,
        }


class DeliveryStore:
    """Records deliveries and rollback claims in the receiver's database."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            connect_args = {"check_same_thread": False, "timeout": 15}
        self._engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def create_tables(self) -> None:
        """Create the tables if they do not exist (the receiver owns this database alone)."""
        _Base.metadata.create_all(self._engine)

    def dispose(self) -> None:
        self._engine.dispose()

    def ping(self) -> None:
        """Run a trivial query; raises SQLAlchemy's error when the database is unreachable."""
        with self._engine.connect() as conn:
            conn.execute(sa.text("select 1"))

    def record(self, delivery: Delivery) -> Delivery:
        """Append one delivery and return it with its id."""
        row = _DeliveryRow(
            received_at=delivery.received_at,
            group_key=delivery.group_key,
            fingerprint=delivery.fingerprint,
            status=delivery.status,
            alertname=delivery.alertname,
            flag=delivery.flag,
            labels=dict(delivery.labels),
            annotations=dict(delivery.annotations),
            starts_at=delivery.starts_at,
            ends_at=delivery.ends_at,
            action=delivery.action.value,
            detail=delivery.detail,
        )
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()
            return _delivery(row)

    def deliveries(
        self,
        *,
        flag: str | None = None,
        fingerprint: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Return recorded deliveries, newest first."""
        query = sa.select(_DeliveryRow).order_by(_DeliveryRow.id.desc()).limit(limit)
        if flag is not None:
            query = query.where(_DeliveryRow.flag == flag)
        if fingerprint is not None:
            query = query.where(_DeliveryRow.fingerprint == fingerprint)
        if status is not None:
            query = query.where(_DeliveryRow.status == status)
        with Session(self._engine) as session:
            return [_delivery(row) for row in session.scalars(query)]

    def claim_rollback(
        self, *, fingerprint: str, starts_at: str, flag: str, alertname: str, now: datetime
    ) -> bool:
        """Claim the rollback for one firing alert; False if it is done or another worker holds it."""
        try:
            with self._sessions.begin() as session:
                session.add(
                    _RollbackRow(
                        fingerprint=fingerprint,
                        starts_at=starts_at,
                        flag=flag,
                        alertname=alertname,
                        claimed_at=now,
                        done=False,
                    )
                )
            return True
        except IntegrityError:
            pass
        # Take over a claim whose holder died; the conditional update lets one taker win.
        with self._sessions.begin() as session:
            result = session.execute(
                sa.update(_RollbackRow)
                .where(
                    _RollbackRow.fingerprint == fingerprint,
                    _RollbackRow.starts_at == starts_at,
                    _RollbackRow.done.is_(False),
                    _RollbackRow.claimed_at < now - CLAIM_LEASE,
                )
                .values(claimed_at=now)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def finish_rollback(self, *, fingerprint: str, starts_at: str) -> None:
        """Mark a claimed rollback as done: later deliveries of the alert are duplicates."""
        with self._sessions.begin() as session:
            session.execute(
                sa.update(_RollbackRow)
                .where(_RollbackRow.fingerprint == fingerprint, _RollbackRow.starts_at == starts_at)
                .values(done=True)
            )

    def release_rollback(self, *, fingerprint: str, starts_at: str) -> None:
        """Drop a claim whose rollback failed, so that Alertmanager's retry acts again."""
        with self._sessions.begin() as session:
            session.execute(
                sa.delete(_RollbackRow).where(
                    _RollbackRow.fingerprint == fingerprint,
                    _RollbackRow.starts_at == starts_at,
                    _RollbackRow.done.is_(False),
                )
            )


def utcnow() -> datetime:
    return datetime.now(UTC)


def _delivery(row: _DeliveryRow) -> Delivery:
    received_at = row.received_at
    if received_at.tzinfo is None:
        # SQLite drops the offset; everything is stored in UTC.
        received_at = received_at.replace(tzinfo=UTC)
    return Delivery(
        id=row.id,
        received_at=received_at,
        group_key=row.group_key,
        fingerprint=row.fingerprint,
        status=row.status,
        alertname=row.alertname,
        flag=row.flag,
        labels=dict(row.labels),
        annotations=dict(row.annotations),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        action=Action(row.action),
        detail=row.detail,
    )

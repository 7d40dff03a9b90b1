"""Tables of the flag service (SQLAlchemy ORM), used by `flags.store` and the migrations.

Timestamps are stored as naive UTC so that SQLite and PostgreSQL compare and
sort them the same way; `flags.store` adds the UTC zone when it renders them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Now as naive UTC, the form every timestamp column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class FlagRow(Base):
    """A Rollguard flag: kill switch, percentage rollout, plan, guardrails and payload."""

    __tablename__ = "flags"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    rollout: Mapped[int] = mapped_column(Integer, default=0)
    stages: Mapped[list[int]] = mapped_column(JSON)
    stage_hold_s: Mapped[int] = mapped_column(Integer, default=300)
    auto_promote: Mapped[bool] = mapped_column(Boolean, default=False)
    guardrails: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    rollback: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(20), default="draft")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: When the change that began the current stage was made (`flags.model.STAGE_FIELDS`), and by whom.
    stage_started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    stage_started_by: Mapped[str | None] = mapped_column(String(200))


class UnleashFeatureRow(Base):
    """A feature imported in Unleash's own format, served as given."""

    __tablename__ = "unleash_features"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class UnleashSegmentRow(Base):
    """A segment imported in Unleash's own format."""

    __tablename__ = "unleash_segments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)


class EventRow(Base):
    """One audit log entry: who changed what, why, and the state before and after."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    flag: Mapped[str | None] = mapped_column(String(255), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    token_name: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(Text)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class TokenRow(Base):
    """An API token, stored as the SHA-256 of its secret."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(20))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class RevisionRow(Base):
    """The single-row global revision, bumped in every write transaction.

    Each process compares it with the revision its cached client body was built
    from, which keeps several processes on one database consistent.
    """

    __tablename__ = "revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(Integer, default=0)


class ExposureRow(Base):
    """Yes/no evaluation counts an SDK reported for one flag in one metrics bucket."""

    __tablename__ = "exposures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flag: Mapped[str] = mapped_column(String(255), index=True)
    app_name: Mapped[str] = mapped_column(String(200))
    instance_id: Mapped[str | None] = mapped_column(String(200))
    bucket_start: Mapped[datetime] = mapped_column(DateTime)
    bucket_end: Mapped[datetime] = mapped_column(DateTime)
    yes: Mapped[int] = mapped_column(Integer, default=0)
    no: Mapped[int] = mapped_column(Integer, default=0)
    variants: Mapped[dict[str, Any]] = mapped_column(JSON)


class ClientInstanceRow(Base):
    """An SDK instance that registered itself."""

    __tablename__ = "client_instances"
    __table_args__ = (UniqueConstraint("app_name", "instance_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_name: Mapped[str] = mapped_column(String(200))
    instance_id: Mapped[str] = mapped_column(String(200))
    sdk_version: Mapped[str | None] = mapped_column(String(100))
    strategies: Mapped[list[str]] = mapped_column(JSON)
    interval_ms: Mapped[int | None] = mapped_column(Integer)
    started: Mapped[datetime | None] = mapped_column(DateTime)
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ImpactSampleRow(Base):
    """One sample of an impact metric an SDK sent (`impactMetrics`), stamped with the time it arrived.

    Counters and histograms hold what was added since the SDK's previous send
    (the SDKs send increments, not totals); a gauge holds its value then.
    """

    __tablename__ = "impact_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(DateTime, index=True)
    app_name: Mapped[str | None] = mapped_column(String(200))
    instance_id: Mapped[str | None] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200), index=True)
    type: Mapped[str] = mapped_column(String(20))
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    value: Mapped[float | None] = mapped_column(Float)
    count: Mapped[float | None] = mapped_column(Float)
    sum: Mapped[float | None] = mapped_column(Float)
    buckets: Mapped[list[list[Any]] | None] = mapped_column(JSON)

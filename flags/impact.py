"""Impact metrics: what the official SDKs send as `impactMetrics`, checked, stored and read back.

`flags.sdk` validates each metric with `ImpactMetricSchema` and calls `store`
for `POST /api/client/metrics` and its bulk form; `flags.admin_impact` serves
the stored samples through `read`. The SDKs (Node `unleash-client` 6, Python
`UnleashClient` 6) send, per metric and label set, what a counter or a
histogram gained since their previous send and a gauge's current value, so a
stored sample is stamped with the time it arrived and a window's increase is the
sum of the samples that arrived in it. Samples older than the retention are
deleted as new ones arrive (`Pruner`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from flags.audit import iso
from flags.models import ImpactSampleRow

TYPES = ("counter", "gauge", "histogram")
MAX_METRICS = 200
MAX_SAMPLES = 1000
MAX_LABELS = 32
MAX_BUCKETS = 100
NAME_PATTERN = r"^[A-Za-z_:][A-Za-z0-9_:.\-]{0,199}$"
_LARGEST = 1e15


class _Number(fields.Float):
    """A finite number within ±1e15 (no NaN, no infinity, no boolean)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError("must be a number")
        number = float(value)
        if not math.isfinite(number) or abs(number) > _LARGEST:
            raise ValidationError(f"must be a finite number within ±{_LARGEST:g}")
        return number


class _Bound(fields.Field):  # type: ignore[type-arg]
    """A histogram bucket's upper bound: a finite number or the string "+Inf"."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if value == "+Inf":
            return math.inf
        return _Number()._deserialize(value, attr, data, **kwargs)


class _LabelValue(fields.Field):  # type: ignore[type-arg]
    """A label value: a string of up to 200 characters, or a number (stored as its text)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValidationError("must be a string or a number")
        text = value if isinstance(value, str) else f"{value:g}"
        if len(text) > 200:
            raise ValidationError("must be at most 200 characters")
        return text


class HistogramBucketSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    le = _Bound(required=True)
    count = _Number(required=True, validate=validate.Range(min=0))


class ImpactSampleInputSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    labels = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=100)),
        values=_LabelValue(),
        load_default=dict,
        validate=validate.Length(max=MAX_LABELS),
    )
    value = _Number()
    count = _Number(validate=validate.Range(min=0))
    sum = _Number()
    buckets = fields.List(
        fields.Nested(HistogramBucketSchema), validate=validate.Length(min=1, max=MAX_BUCKETS)
    )


class ImpactMetricSchema(Schema):
    """One entry of `impactMetrics`, as Unleash's `impactMetricsSchema` describes it."""

    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True, validate=validate.Regexp(NAME_PATTERN))
    help = fields.String(load_default="", validate=validate.Length(max=1000))
    type = fields.String(required=True, validate=validate.OneOf(TYPES))
    samples = fields.List(
        fields.Nested(ImpactSampleInputSchema), required=True, validate=validate.Length(max=MAX_SAMPLES)
    )

    @validates_schema
    def _samples_fit_the_type(self, data: dict[str, Any], **_kwargs: Any) -> None:
        for index, sample in enumerate(data.get("samples", [])):
            problem = _sample_problem(data["type"], sample)
            if problem:
                raise ValidationError({"samples": {index: [problem]}})


def _sample_problem(kind: str, sample: Mapping[str, Any]) -> str | None:
    if kind != "histogram":
        if "value" not in sample:
            return f"a {kind} sample needs a value"
        if kind == "counter" and sample["value"] < 0:
            return "a counter sample's value (its increase) cannot be negative"
        return None
    if not all(name in sample for name in ("count", "sum", "buckets")):
        return "a histogram sample needs count, sum and buckets"
    if not any(math.isinf(bucket["le"]) for bucket in sample["buckets"]):
        return 'a histogram sample needs a "+Inf" bucket'
    return None


@dataclass(frozen=True)
class Origin:
    """Who sent a batch of impact metrics: the SDK's app and instance (None in Edge's bulk form)."""

    app_name: str | None
    instance_id: str | None


def store(session: Session, metrics: Iterable[Mapping[str, Any]], *, origin: Origin, now: datetime) -> int:
    """Add a row per sample of the validated `metrics`, stamped `now` (naive UTC); return how many."""
    added = 0
    for metric in metrics:
        for sample in metric["samples"]:
            labels = dict(sorted(sample["labels"].items()))
            app_name = origin.app_name or labels.get("appName")
            row = ImpactSampleRow(
                time=now,
                app_name=app_name[:200] if app_name else None,
                instance_id=origin.instance_id,
                name=metric["name"],
                type=metric["type"],
                labels=labels,
            )
            if metric["type"] == "histogram":
                row.count, row.sum = sample["count"], sample["sum"]
                row.buckets = [_bucket_json(b) for b in sorted(sample["buckets"], key=_le)]
            else:
                row.value = sample["value"]
            session.add(row)
            added += 1
    return added


def _le(bucket: Mapping[str, Any]) -> float:
    return float(bucket["le"])


def _bucket_json(bucket: Mapping[str, Any]) -> list[Any]:
    # JSON has no infinity; the SDKs' own spelling of the last bound is kept.
    le = float(bucket["le"])
    return ["+Inf" if math.isinf(le) else le, bucket["count"]]


class Pruner:
    """Deletes samples older than the retention, at most once per `every_s` in one process."""

    def __init__(self, retention_s: float, *, every_s: float = 30.0) -> None:
        self.retention_s = retention_s
        self.every_s = every_s
        self._last = -math.inf

    def prune(self, session: Session, *, now: datetime) -> None:
        """Delete the samples older than the retention, unless that was done less than `every_s` ago."""
        if time.monotonic() - self._last < self.every_s:
            return
        self._last = time.monotonic()
        cutoff = now - timedelta(seconds=self.retention_s)
        session.execute(delete(ImpactSampleRow).where(ImpactSampleRow.time < cutoff))


@dataclass(frozen=True)
class Query:
    """What to read: metric names (all when empty), the time range (since, until] and the app."""

    names: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    app: str | None = None
    resolution_s: int = 0
    limit: int = 20_000


def read(session: Session, query: Query) -> dict[str, Any]:
    """The samples `query` selects, oldest first, summed into `resolution_s` steps when it is positive.

    The answer also names the newest arrival of the selected metrics, at any
    time (`newest`), and whether more than `limit` samples matched (`truncated`,
    in which case only the oldest `limit` are in it).
    """
    stmt = select(ImpactSampleRow)
    newest_stmt = select(func.max(ImpactSampleRow.time))
    if query.names:
        stmt = stmt.where(ImpactSampleRow.name.in_(query.names))
        newest_stmt = newest_stmt.where(ImpactSampleRow.name.in_(query.names))
    if query.app:
        stmt = stmt.where(ImpactSampleRow.app_name == query.app)
        newest_stmt = newest_stmt.where(ImpactSampleRow.app_name == query.app)
    if query.since is not None:
        stmt = stmt.where(ImpactSampleRow.time > query.since)
    if query.until is not None:
        stmt = stmt.where(ImpactSampleRow.time <= query.until)
    rows = session.scalars(
        stmt.order_by(ImpactSampleRow.time, ImpactSampleRow.id).limit(query.limit + 1)
    ).all()
    truncated = len(rows) > query.limit
    samples = [_sample_json(row) for row in rows[: query.limit]]
    if query.resolution_s > 0:
        samples = summed(samples, query.resolution_s)
    return {"samples": samples, "newest": iso(session.scalar(newest_stmt)), "truncated": truncated}


def _sample_json(row: ImpactSampleRow) -> dict[str, Any]:
    return {
        "time": iso(row.time),
        "app_name": row.app_name,
        "instance_id": row.instance_id,
        "name": row.name,
        "type": row.type,
        "labels": row.labels,
        "value": row.value,
        "count": row.count,
        "sum": row.sum,
        "buckets": row.buckets,
    }


def summed(samples: Sequence[Mapping[str, Any]], resolution_s: int) -> list[dict[str, Any]]:
    """Merge samples of one series (app, instance, name, type, labels) per step of `resolution_s` seconds.

    A merged sample is stamped with its step's end. Counters and histograms add
    up (they are increases); a gauge keeps its largest value in the step.
    """
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for sample in samples:
        stamp = datetime.fromisoformat(str(sample["time"]).replace("Z", "+00:00")).timestamp()
        end = math.ceil(stamp / resolution_s) * resolution_s
        labels = tuple(sorted(sample["labels"].items()))
        key = (end, sample["app_name"], sample["instance_id"], sample["name"], sample["type"], labels)
        into = merged.get(key)
        if into is None:
            merged[key] = {**sample, "time": _iso_epoch(end), "buckets": _copy(sample["buckets"])}
        else:
            _merge(into, sample)
    return sorted(merged.values(), key=lambda s: str(s["time"]))


def _copy(buckets: list[list[Any]] | None) -> list[list[Any]] | None:
    return [list(bucket) for bucket in buckets] if buckets is not None else None


def _merge(into: dict[str, Any], sample: Mapping[str, Any]) -> None:
    if sample["type"] == "gauge":
        into["value"] = max(into["value"], sample["value"])
    elif sample["type"] == "counter":
        into["value"] += sample["value"]
    else:
        into["count"] += sample["count"]
        into["sum"] += sample["sum"]
        counts = {str(le): count for le, count in into["buckets"]}
        for le, count in sample["buckets"]:
            counts[str(le)] = counts.get(str(le), 0.0) + count
        into["buckets"] = sorted(([_bound(le), c] for le, c in counts.items()), key=lambda b: _order(b[0]))


def _bound(text: str) -> float | str:
    return "+Inf" if text == "+Inf" else float(text)


def _order(le: float | str) -> float:
    return math.inf if le == "+Inf" else float(le)


def _iso_epoch(epoch: float) -> str | None:
    return iso(datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None))

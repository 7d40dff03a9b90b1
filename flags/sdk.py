"""The Unleash client API the official SDKs call: features, register, metrics.

GET /api/client/features serves the precomputed document of `flags.served`
with an ETag (If-None-Match -> 304). The common case of that route is answered
even earlier by `flags.fastpath`; this view is the complete implementation
(errors, HEAD, query strings). Registration and metrics are stored so operators
can see which apps evaluate which flags (`/api/admin/exposures`); the impact
metrics that come with the metrics (`impactMetrics`), or in Unleash Edge's bulk
form (`POST /api/client/metrics/bulk`), are stored by `flags.impact` and read by
the controller's impact source through `/api/admin/impact-metrics`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, request
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, fields, validate
from sqlalchemy import select
from sqlalchemy.orm import Session

from flags import impact
from flags.audit import to_utc_naive
from flags.auth import require
from flags.models import ClientInstanceRow, ExposureRow, utcnow
from flags.state import services

bp = Blueprint("sdk", __name__, url_prefix="/api/client", description="Unleash client API for SDKs.")

_MAX_TOGGLES = 5000


class FeaturesQuerySchema(Schema):
    class Meta:
        # SDKs of other languages add their own filters (namePrefix, tag); all features are served.
        unknown = EXCLUDE

    project = fields.String(
        metadata={"description": "accepted for SDK compatibility; all flags are in one project"}
    )


class ClientStateSchema(Schema):
    version = fields.Integer()
    features = fields.List(fields.Dict())
    segments = fields.List(fields.Dict())
    query = fields.Dict()


class RegisterSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    appName = fields.String(required=True, validate=validate.Length(min=1, max=200))
    instanceId = fields.String(load_default="default", validate=validate.Length(min=1, max=200))
    sdkVersion = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=100))
    strategies = fields.List(
        fields.String(validate=validate.Length(max=200)), load_default=list, validate=validate.Length(max=200)
    )
    started = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=dt.UTC)
    interval = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=0, max=2**31 - 1)
    )


class BulkApplicationSchema(RegisterSchema):
    """An application in Unleash Edge's bulk metrics: the same fields as a registration."""


class ToggleCountSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    yes = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**31 - 1))
    no = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**31 - 1))
    variants = fields.Dict(
        keys=fields.String(), values=fields.Integer(validate=validate.Range(min=0)), load_default=dict
    )


class BucketSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    start = fields.AwareDateTime(required=True, default_timezone=dt.UTC)
    stop = fields.AwareDateTime(required=True, default_timezone=dt.UTC)
    toggles = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=255)),
        values=fields.Nested(ToggleCountSchema),
        required=True,
    )


class MetricsSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    appName = fields.String(required=True, validate=validate.Length(min=1, max=200))
    instanceId = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    # The Python SDK sends `"bucket": null` when it has only impact metrics to report.
    bucket = fields.Nested(BucketSchema, load_default=None, allow_none=True)
    impactMetrics = fields.List(
        fields.Nested(impact.ImpactMetricSchema),
        load_default=list,
        validate=validate.Length(max=impact.MAX_METRICS),
    )


class BulkToggleSchema(ToggleCountSchema):
    class Meta:
        unknown = EXCLUDE

    featureName = fields.String(required=True, validate=validate.Length(min=1, max=255))
    appName = fields.String(required=True, validate=validate.Length(min=1, max=200))
    timestamp = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=dt.UTC)


class BulkMetricsSchema(Schema):
    """What Unleash Edge forwards: registrations, evaluation counts and impact metrics of many SDKs."""

    class Meta:
        unknown = EXCLUDE

    applications = fields.List(
        fields.Nested(BulkApplicationSchema), required=True, validate=validate.Length(max=_MAX_TOGGLES)
    )
    metrics = fields.List(
        fields.Nested(BulkToggleSchema), required=True, validate=validate.Length(max=_MAX_TOGGLES)
    )
    impactMetrics = fields.List(
        fields.Nested(impact.ImpactMetricSchema),
        load_default=list,
        validate=validate.Length(max=impact.MAX_METRICS),
    )


@bp.route("/features", methods=["GET"])
@bp.arguments(FeaturesQuerySchema, location="query")
@bp.response(200, ClientStateSchema)
@bp.alt_response(304, description="If-None-Match named the current document")
def features(_query: dict[str, Any]) -> Response:
    """All features for SDKs, with an ETag."""
    require("client")
    snapshot = services().served.snapshot()
    if snapshot.etag_matches(request.headers.get("If-None-Match")):
        response = Response(status=304)
    else:
        response = Response(snapshot.body, status=200, mimetype="application/json")
    response.headers["ETag"] = snapshot.etag
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.route("/register", methods=["POST"])
@bp.arguments(RegisterSchema)
@bp.response(202)
def register(data: dict[str, Any]) -> None:
    """Record an SDK instance."""
    require("client")
    with services().db.session() as session, session.begin():
        _register(session, data)


def _register(session: Session, data: dict[str, Any]) -> None:
    row = session.scalars(
        select(ClientInstanceRow).where(
            ClientInstanceRow.app_name == data["appName"],
            ClientInstanceRow.instance_id == data["instanceId"],
        )
    ).first()
    if row is None:
        row = ClientInstanceRow(app_name=data["appName"], instance_id=data["instanceId"])
        session.add(row)
    row.sdk_version = data["sdkVersion"]
    row.strategies = data["strategies"]
    row.interval_ms = data["interval"]
    row.started = to_utc_naive(data["started"]) if data["started"] else None
    row.last_seen = utcnow()


@bp.route("/metrics", methods=["POST"])
@bp.arguments(MetricsSchema)
@bp.response(202)
def metrics(data: dict[str, Any]) -> None:
    """Record the yes/no evaluation counts of one bucket and the impact metrics an SDK reports."""
    require("client")
    bucket = data["bucket"]
    origin = impact.Origin(data["appName"], data["instanceId"])
    with services().db.session() as session, session.begin():
        if bucket is not None:
            start, stop = to_utc_naive(bucket["start"]), to_utc_naive(bucket["stop"])
            for name, counts in list(bucket["toggles"].items())[:_MAX_TOGGLES]:
                session.add(_exposure(name, counts, origin=origin, start=start, stop=stop))
        _store_impact(session, data["impactMetrics"], origin=origin)


@bp.route("/metrics/bulk", methods=["POST"])
@bp.arguments(BulkMetricsSchema)
@bp.response(202)
def bulk_metrics(data: dict[str, Any]) -> None:
    """Record what Unleash Edge forwards: registrations, evaluation counts and impact metrics."""
    require("client")
    with services().db.session() as session, session.begin():
        for application in data["applications"]:
            _register(session, application)
        for toggle in data["metrics"]:
            # Unleash's bulk counts cover the hour starting at `timestamp`.
            start = to_utc_naive(toggle["timestamp"]) if toggle["timestamp"] else utcnow()
            origin = impact.Origin(toggle["appName"], None)
            stop = start + dt.timedelta(hours=1)
            session.add(_exposure(toggle["featureName"], toggle, origin=origin, start=start, stop=stop))
        _store_impact(session, data["impactMetrics"], origin=impact.Origin(None, None))


def _exposure(
    name: str, counts: dict[str, Any], *, origin: impact.Origin, start: dt.datetime, stop: dt.datetime
) -> ExposureRow:
    return ExposureRow(
        flag=name,
        app_name=origin.app_name,
        instance_id=origin.instance_id,
        bucket_start=start,
        bucket_end=stop,
        yes=counts["yes"],
        no=counts["no"],
        variants=counts["variants"],
    )


def _store_impact(session: Session, metrics: list[dict[str, Any]], *, origin: impact.Origin) -> None:
    if not metrics:
        return
    now = utcnow()
    impact.store(session, metrics, origin=origin, now=now)
    services().impact_pruner.prune(session, now=now)

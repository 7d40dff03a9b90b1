"""Admin API: the impact metrics SDKs sent, read-only (`GET /api/admin/impact-metrics`).

The controller's impact source (`control.impact_source`, through
`FlagsClient.impact_samples`) and the dashboard read them here; nothing else
touches the flag service's database.
"""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from flags import impact
from flags.audit import to_utc_naive
from flags.auth import require_admin
from flags.state import services

bp = Blueprint(
    "admin_impact", __name__, url_prefix="/api/admin", description="Impact metrics SDKs sent (read-only)."
)
bp.before_request(require_admin)

MAX_LIMIT = 100_000


class ImpactQuerySchema(Schema):
    name = fields.List(
        fields.String(validate=validate.Regexp(impact.NAME_PATTERN)),
        load_default=list,
        validate=validate.Length(max=50),
        metadata={"description": "metric names to read (repeat the parameter); all when absent"},
    )
    since = fields.AwareDateTime(
        format="iso", metadata={"description": "samples that arrived after this instant"}
    )
    until = fields.AwareDateTime(format="iso", metadata={"description": "... and up to this one"})
    app = fields.String(validate=validate.Length(min=1, max=200))
    resolution_s = fields.Integer(
        load_default=0,
        validate=validate.Range(min=0, max=86_400),
        metadata={"description": "sum each series into steps of this many seconds (0: raw samples)"},
    )
    limit = fields.Integer(load_default=20_000, validate=validate.Range(min=1, max=MAX_LIMIT))


class ImpactBucketField(fields.Raw):
    """A histogram bucket as [upper bound, count]; the bound is a number or "+Inf"."""


class ImpactSampleSchema(Schema):
    time = fields.String(metadata={"format": "date-time"})
    app_name = fields.String(allow_none=True)
    instance_id = fields.String(allow_none=True)
    name = fields.String()
    type = fields.String(validate=validate.OneOf(impact.TYPES))
    labels = fields.Dict(keys=fields.String(), values=fields.String())
    value = fields.Float(allow_none=True)
    count = fields.Float(allow_none=True)
    sum = fields.Float(allow_none=True)
    buckets = fields.List(ImpactBucketField(), allow_none=True)


class ImpactListSchema(Schema):
    samples = fields.List(fields.Nested(ImpactSampleSchema))
    newest = fields.String(allow_none=True, metadata={"format": "date-time"})
    truncated = fields.Boolean()


@bp.route("/impact-metrics", methods=["GET"])
@bp.arguments(ImpactQuerySchema, location="query")
@bp.response(200, ImpactListSchema)
def impact_metrics(query: dict[str, Any]) -> dict[str, Any]:
    """Impact metric samples, oldest first: counters and histograms as increases, gauges as values."""
    selected = impact.Query(
        names=tuple(query["name"]),
        since=to_utc_naive(query["since"]) if query.get("since") else None,
        until=to_utc_naive(query["until"]) if query.get("until") else None,
        app=query.get("app"),
        resolution_s=query["resolution_s"],
        limit=query["limit"],
    )
    with services().db.session() as session:
        return impact.read(session, selected)

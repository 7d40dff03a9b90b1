"""Admin API for annotations: notes on the timeline (a mass submission began, a fault was injected).

`rollguard up` and `rollguard traffic run` post them through
`FlagsClient.annotate`; the dashboard draws them as markers next to the flag
changes. An annotation is stored with the flag's events, as an audit event
with action `annotate` (the text in its reason, the kind in its `after`), so
the audit log shows it in order with the changes. One without a flag concerns
every flag: listing a flag's annotations includes those.
"""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import or_, select

from flags import audit
from flags.auth import actor, require_admin
from flags.errors import NotFound
from flags.models import EventRow, FlagRow
from flags.schemas import KEY_PATTERN, ErrorSchema, EventsQuerySchema
from flags.state import services

bp = Blueprint(
    "annotations", __name__, url_prefix="/api/admin/annotations", description="Notes on the timeline."
)
bp.before_request(require_admin)

ACTION = "annotate"
KIND_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,49}$"


class AnnotationCreateSchema(Schema):
    text = fields.String(required=True, validate=validate.Length(min=1, max=500))
    kind = fields.String(
        load_default="note", validate=validate.Regexp(KIND_PATTERN, error="kind must match {regex}")
    )
    flag = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(KEY_PATTERN, error="flag must match {regex}"),
    )


class AnnotationSchema(Schema):
    id = fields.Integer()
    time = fields.String(metadata={"format": "date-time"})
    flag = fields.String(allow_none=True)
    actor = fields.String()
    kind = fields.String()
    text = fields.String()


class AnnotationListSchema(Schema):
    annotations = fields.List(fields.Nested(AnnotationSchema))


@bp.route("", methods=["POST"])
@bp.arguments(AnnotationCreateSchema)
@bp.response(201, AnnotationSchema)
@bp.alt_response(404, schema=ErrorSchema, description="no such flag")
def create(data: dict[str, Any]) -> dict[str, Any]:
    """Add an annotation, for one flag or (without `flag`) for all."""
    who = actor()
    with services().db.write() as session:
        if data["flag"] is not None and session.get(FlagRow, data["flag"]) is None:
            raise NotFound(f"no flag {data['flag']!r}", code="flag_not_found")
        row = audit.record(
            session,
            actor=who,
            action=ACTION,
            flag=data["flag"],
            reason=data["text"],
            before=None,
            after={"kind": data["kind"]},
        )
        return _json(row)


@bp.route("", methods=["GET"])
@bp.arguments(EventsQuerySchema, location="query")
@bp.response(200, AnnotationListSchema)
def listing(query: dict[str, Any]) -> dict[str, Any]:
    """Annotations, newest first (order=asc for oldest first); with `flag`, its own and the global ones."""
    stmt = select(EventRow).where(EventRow.action == ACTION)
    if query.get("flag"):
        stmt = stmt.where(or_(EventRow.flag == query["flag"], EventRow.flag.is_(None)))
    if query.get("since"):
        stmt = stmt.where(EventRow.time >= audit.to_utc_naive(query["since"]))
    if query.get("until"):
        stmt = stmt.where(EventRow.time <= audit.to_utc_naive(query["until"]))
    newest_first = query.get("order", "desc") != "asc"
    stmt = stmt.order_by(EventRow.id.desc() if newest_first else EventRow.id.asc()).limit(query["limit"])
    with services().db.session() as session:
        return {"annotations": [_json(row) for row in session.scalars(stmt)]}


def _json(row: EventRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "time": audit.iso(row.time),
        "flag": row.flag,
        "actor": row.actor,
        "kind": (row.after or {}).get("kind", "note"),
        "text": row.reason or "",
    }

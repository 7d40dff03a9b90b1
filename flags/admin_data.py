"""Admin API for the audit log, client exposures, and Unleash import/export."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from flags import audit, imports
from flags.auth import actor, require_admin
from flags.models import ExposureRow
from flags.schemas import (
    EventListSchema,
    EventsQuerySchema,
    ExportSchema,
    ExposureListSchema,
    ExposuresQuerySchema,
    ImportQuerySchema,
    ImportResultSchema,
    ImportSchema,
    UnleashExportQuerySchema,
    UnleashExportSchema,
)
from flags.state import services

bp = Blueprint("admin_data", __name__, url_prefix="/api/admin", description="Audit log, exposures, import.")
bp.before_request(require_admin)


@bp.route("/events", methods=["GET"])
@bp.arguments(EventsQuerySchema, location="query")
@bp.response(200, EventListSchema)
def events(query: dict[str, Any]) -> dict[str, Any]:
    """Audit events, newest first (order=asc for oldest first), filtered by flag and time."""
    with services().db.session() as session:
        return {"events": audit.query(session, **query)}


@bp.route("/exposures", methods=["GET"])
@bp.arguments(ExposuresQuerySchema, location="query")
@bp.response(200, ExposureListSchema)
def exposures(query: dict[str, Any]) -> dict[str, Any]:
    """Evaluation counts reported by SDKs, newest bucket first."""
    stmt = select(ExposureRow).order_by(ExposureRow.bucket_end.desc(), ExposureRow.id.desc())
    if query.get("flag"):
        stmt = stmt.where(ExposureRow.flag == query["flag"])
    with services().db.session() as session:
        rows = session.scalars(stmt.limit(query["limit"])).all()
    return {
        "exposures": [
            {
                "flag": row.flag,
                "app_name": row.app_name,
                "bucket_start": audit.iso(row.bucket_start),
                "bucket_end": audit.iso(row.bucket_end),
                "yes": row.yes,
                "no": row.no,
            }
            for row in rows
        ]
    }


@bp.route("/import", methods=["POST"])
@bp.arguments(ImportQuerySchema, location="query")
@bp.arguments(ImportSchema)
@bp.response(200, ImportResultSchema)
def import_(query: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """Import Rollguard flags, Unleash's client document, or Unleash 8's batch export or import document.

    What a batch document holds that cannot be carried over is listed in `report`, per feature.
    """
    who = actor()
    with services().db.write() as session:
        return imports.import_document(session, actor=who, document=document, replace=query["replace"])


@bp.route("/export", methods=["GET"])
@bp.response(200, ExportSchema)
def export() -> dict[str, Any]:
    """Export flags, the client document and segments."""
    with services().db.session() as session:
        return imports.export_document(session)


@bp.route("/export/unleash", methods=["GET"])
@bp.arguments(UnleashExportQuerySchema, location="query")
@bp.response(200, UnleashExportSchema)
def export_unleash(query: dict[str, Any]) -> dict[str, Any]:
    """What is served, as the body of Unleash 8's POST /api/admin/features-batch/import, and what it leaves out."""
    with services().db.session() as session:
        return imports.export_unleash(session, project=query["project"], environment=query["environment"])

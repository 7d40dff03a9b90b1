"""Liveness, readiness and Prometheus metrics of the flag service.

Orchestrators and the tests' `ServerProcess` poll /readyz; Prometheus scrapes
/metrics (counters are per process: with several gunicorn workers each scrape
sees the worker that answered).
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from flags.errors import error_response
from flags.schemas import ErrorSchema
from flags.state import services

bp = Blueprint("health", __name__, description="Health and metrics.")

REVISION = Gauge("rollguard_flags_revision", "Global revision this process last saw")
FEATURES = Gauge("rollguard_flags_served_features", "Features in the served client document")


class HealthSchema(Schema):
    status = fields.String()
    revision = fields.Integer()


@bp.route("/healthz", methods=["GET"])
@bp.response(200, HealthSchema)
def healthz() -> dict[str, Any]:
    """The process is up."""
    return {"status": "ok"}


@bp.route("/readyz", methods=["GET"])
@bp.response(200, HealthSchema)
@bp.alt_response(503, schema=ErrorSchema, description="the database does not answer")
def readyz() -> Any:
    """The process can reach its database."""
    try:
        revision = services().db.revision()
    except SQLAlchemyError as exc:
        return error_response(503, "database_unavailable", f"database unavailable: {type(exc).__name__}")
    return {"status": "ready", "revision": revision}


@bp.route("/metrics", methods=["GET"])
@bp.response(200, content_type=CONTENT_TYPE_LATEST, description="Prometheus text format")
def metrics() -> Response:
    """Prometheus metrics of this process."""
    snapshot = services().served.snapshot()
    REVISION.set(snapshot.revision)
    FEATURES.set(len(snapshot.state["features"]))
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

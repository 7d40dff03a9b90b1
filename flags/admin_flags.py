"""Admin API for flags: list, create, get, patch, delete, set rollout, kill, resume.

Every write needs an admin token, is validated by the schemas in
`flags.schemas` and is audited with the actor from `flags.auth.actor`.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from flags import store
from flags.auth import actor, require, require_admin
from flags.errors import BadRequest, PreconditionRequired
from flags.schemas import (
    ErrorSchema,
    FlagCreateSchema,
    FlagListSchema,
    FlagPatchSchema,
    FlagSchema,
    ReasonQuerySchema,
    RequiredReasonSchema,
    RolloutSchema,
)
from flags.state import services

bp = Blueprint("admin_flags", __name__, url_prefix="/api/admin/flags", description="Manage flags.")
bp.before_request(require_admin)

_IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "schema": {"type": "string"},
    "description": "the flag's current version; a stale one gets 409",
}


def _if_match(*, required: bool) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None or not raw.strip():
        if required:
            raise PreconditionRequired(
                "send the flag's current version in If-Match", code="if_match_required"
            )
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not value.isdigit() or len(value) > 12:
        raise BadRequest("If-Match must carry the flag's integer version", code="bad_if_match")
    return int(value)


@bp.route("")
class Flags(MethodView):
    @bp.response(200, FlagListSchema)
    def get(self) -> dict[str, Any]:
        """List every flag."""
        require("admin")
        with services().db.session() as session:
            return {"flags": store.list_flags(session)}

    @bp.arguments(FlagCreateSchema)
    @bp.response(201, FlagSchema)
    @bp.alt_response(409, schema=ErrorSchema, description="the key is taken")
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a flag."""
        who = actor()
        reason = data.pop("reason", None)
        with services().db.write() as session:
            return store.create_flag(session, actor=who, fields=data, reason=reason)


@bp.route("/<string:key>")
class FlagItem(MethodView):
    @bp.response(200, FlagSchema)
    def get(self, key: str) -> dict[str, Any]:
        """Show one flag."""
        require("admin")
        with services().db.session() as session:
            return store.get_flag(session, key)

    @bp.arguments(FlagPatchSchema)
    @bp.response(200, FlagSchema)
    @bp.doc(parameters=[{**_IF_MATCH, "required": True}])
    @bp.alt_response(409, schema=ErrorSchema, description="stale version")
    @bp.alt_response(428, schema=ErrorSchema, description="If-Match missing")
    def patch(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        """Change fields of a flag at the version named in If-Match."""
        who = actor()
        version = _if_match(required=True)
        assert version is not None
        reason = data.pop("reason", None)
        with services().db.write() as session:
            return store.update_flag(
                session, actor=who, key=key, changes=data, version=version, reason=reason
            )

    @bp.arguments(ReasonQuerySchema, location="query")
    @bp.response(204)
    @bp.doc(parameters=[_IF_MATCH])
    def delete(self, query: dict[str, Any], key: str) -> None:
        """Delete a flag (its audit events stay)."""
        who = actor()
        version = _if_match(required=False)
        with services().db.write() as session:
            store.delete_flag(session, actor=who, key=key, version=version, reason=query.get("reason"))


@bp.route("/<string:key>/rollout", methods=["PUT"])
@bp.arguments(RolloutSchema)
@bp.response(200, FlagSchema)
@bp.doc(parameters=[_IF_MATCH])
def set_rollout(data: dict[str, Any], key: str) -> dict[str, Any]:
    """Set the rollout percentage."""
    who = actor()
    version = _if_match(required=False)
    with services().db.write() as session:
        return store.set_rollout(
            session, actor=who, key=key, rollout=data["rollout"], version=version, reason=data.get("reason")
        )


@bp.route("/<string:key>/kill", methods=["POST"])
@bp.arguments(RequiredReasonSchema)
@bp.response(200, FlagSchema)
@bp.doc(parameters=[_IF_MATCH])
def kill(data: dict[str, Any], key: str) -> dict[str, Any]:
    """Switch the flag off for everyone (idempotent)."""
    who = actor()
    version = _if_match(required=False)
    with services().db.write() as session:
        return store.kill(session, actor=who, key=key, version=version, reason=data["reason"])


@bp.route("/<string:key>/resume", methods=["POST"])
@bp.arguments(RequiredReasonSchema)
@bp.response(200, FlagSchema)
@bp.doc(parameters=[_IF_MATCH])
def resume(data: dict[str, Any], key: str) -> dict[str, Any]:
    """Switch the flag back on at its rollout (idempotent)."""
    who = actor()
    version = _if_match(required=False)
    with services().db.write() as session:
        return store.resume(session, actor=who, key=key, version=version, reason=data["reason"])

"""Admin API for tokens: create (the secret is shown once), list, revoke."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from flags import tokens
from flags.auth import actor, require_admin
from flags.schemas import TokenCreateSchema, TokenListSchema, TokenSchema
from flags.state import services

bp = Blueprint("admin_tokens", __name__, url_prefix="/api/admin/tokens", description="Manage API tokens.")
bp.before_request(require_admin)


@bp.route("")
class Tokens(MethodView):
    @bp.response(200, TokenListSchema)
    def get(self) -> dict[str, Any]:
        """List tokens (never their secrets)."""
        with services().db.session() as session:
            return {"tokens": tokens.list_tokens(session)}

    @bp.arguments(TokenCreateSchema)
    @bp.response(201, TokenSchema)
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a token; the response carries its secret, shown this once."""
        who = actor()
        with services().db.write() as session:
            return tokens.create_token(session, actor=who, name=data["name"], scope=data["scope"])


@bp.route("/<int(signed=True):token_id>", methods=["DELETE"])
@bp.response(204)
def revoke(token_id: int) -> None:
    """Revoke a token."""
    who = actor()
    with services().db.write() as session:
        tokens.revoke_token(session, actor=who, token_id=token_id)

"""API tokens: created with a random secret, stored as its SHA-256, checked in constant time.

The admin API creates, lists and revokes them; `flags.cli serve` ensures the
bootstrap tokens from the environment at start; `flags.auth` resolves the
Authorization header to a token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flags import audit
from flags.audit import Actor
from flags.errors import NotFound
from flags.models import TokenRow, utcnow

logger = logging.getLogger(__name__)

SCOPES = ("admin", "client")
BOOTSTRAP_ADMIN = "bootstrap-admin"
BOOTSTRAP_CLIENT = "bootstrap-client"


@dataclass(frozen=True)
class Principal:
    """The token a request authenticated with."""

    token_id: int
    name: str
    scope: str

    def allows(self, scope: str) -> bool:
        """Admin tokens may do everything a client token may."""
        return self.scope == "admin" or self.scope == scope


def hash_secret(secret: str) -> str:
    """SHA-256 of a token secret, hex; secrets are random, so no salt or slow hash is needed."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def token_json(row: TokenRow, secret: str | None = None) -> dict[str, Any]:
    """The API form of a token; the secret only right after creation."""
    data: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "scope": row.scope,
        "created_at": audit.iso(row.created_at),
        "revoked": row.revoked,
    }
    if secret is not None:
        data["secret"] = secret
    return data


def authenticate(session: Session, secret: str) -> Principal | None:
    """The live token whose secret this is, or None."""
    digest = hash_secret(secret)
    row = session.scalars(select(TokenRow).where(TokenRow.secret_hash == digest)).first()
    if row is None or row.revoked or not hmac.compare_digest(row.secret_hash, digest):
        return None
    return Principal(token_id=row.id, name=row.name, scope=row.scope)


def create_token(session: Session, *, actor: Actor, name: str, scope: str) -> dict[str, Any]:
    """Create a token with a fresh random secret, returned this once."""
    secret = f"rg-{scope}-{secrets.token_urlsafe(24)}"
    row = TokenRow(name=name, scope=scope, secret_hash=hash_secret(secret), created_at=utcnow())
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="token_create",
        flag=None,
        reason=None,
        before=None,
        after=token_json(row),
    )
    return token_json(row, secret)


def list_tokens(session: Session) -> list[dict[str, Any]]:
    """Every token, without secrets."""
    return [token_json(row) for row in session.scalars(select(TokenRow).order_by(TokenRow.id))]


def revoke_token(session: Session, *, actor: Actor, token_id: int) -> None:
    """Revoke a token; revoking a revoked token changes nothing."""
    row = session.get(TokenRow, token_id)
    if row is None:
        raise NotFound(f"no token {token_id}", code="token_not_found")
    if row.revoked:
        return
    before = token_json(row)
    row.revoked = True
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="token_revoke",
        flag=None,
        reason=None,
        before=before,
        after=token_json(row),
    )


def ensure_token(session: Session, *, name: str, scope: str, secret: str) -> None:
    """Make sure a token with this secret exists and is live (bootstrap tokens at start).

    Idempotent across restarts; concurrent starters are serialised by the
    migration lock, and the unique hash guards against anything that is not.
    """
    digest = hash_secret(secret)
    row = session.scalars(select(TokenRow).where(TokenRow.secret_hash == digest)).first()
    if row is not None:
        if row.scope != scope or row.revoked:
            logger.warning("bootstrap token %s re-enabled with scope %s", name, scope)
            row.scope, row.revoked = scope, False
        return
    try:
        with session.begin_nested():
            session.add(TokenRow(name=name, scope=scope, secret_hash=digest, created_at=utcnow()))
        logger.info("created bootstrap token %s (%s)", name, scope)
    except IntegrityError:
        logger.info("bootstrap token %s already created by another process", name)

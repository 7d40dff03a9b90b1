"""Request authentication: the Authorization header (raw token or `Bearer <token>`) to a principal.

Views call `require("admin")` or `require("client")`; the client fast path
calls `TokenCache.lookup` directly. Resolved tokens are cached per process;
when the global revision moves, cached tokens that were revoked (or changed
scope) are dropped and the others kept, so a revoked token stops working within
the revision check interval on every process and a flag change costs valid
tokens nothing. Only requests that fail authentication meet the failure limit
(`flags.failures`): a valid token is never throttled by others' failures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import current_app, g, request
from sqlalchemy import select

from flags.audit import Actor
from flags.db import Database
from flags.errors import BadRequest, Forbidden, TooManyRequests, Unauthenticated
from flags.failures import RETRY_AFTER_S, FailureLimit
from flags.models import TokenRow
from flags.tokens import Principal, authenticate

ACTOR_HEADER = "X-Rollguard-Actor"
_MAX_ACTOR = 200
_MAX_CACHED = 10_000


def secret_of(header: str | None) -> str | None:
    """The token in an Authorization header value, raw or after `Bearer `."""
    if not header:
        return None
    header = header.strip()
    if header[:7].lower() == "bearer ":
        header = header[7:].strip()
    return header or None


class TokenCache:
    """Authorization header value -> principal, for live tokens only."""

    def __init__(self, db: Database, revision: Callable[[], int]) -> None:
        self._db = db
        self._revision = revision
        self._known: dict[str, Principal] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def recheck(self, _revision: int = 0) -> None:
        """Drop cached tokens that are no longer live with the same scope; keep the rest."""
        with self._lock:
            if not self._known:
                return
        live = dict(
            self._db.read(
                lambda session: session.execute(
                    select(TokenRow.id, TokenRow.scope).where(~TokenRow.revoked)
                ).all()
            )
        )
        with self._lock:
            self._known = {
                header: principal
                for header, principal in self._known.items()
                if live.get(principal.token_id) == principal.scope
            }
            self._generation += 1

    def cached(self, header: str) -> Principal | None:
        """The principal for a header value seen before in this revision, without a query."""
        self._revision()
        return self._known.get(header)

    def lookup(self, header: str | None) -> Principal | None:
        """The principal for a header value, asking the database on a cache miss."""
        if not header:
            return None
        principal = self.cached(header)
        if principal is not None:
            return principal
        secret = secret_of(header)
        if secret is None:
            return None
        generation = self._generation
        principal = self._db.read(lambda session: authenticate(session, secret))
        if principal is not None:
            with self._lock:
                # A clear (e.g. a revocation noticed) during the query makes this answer unsafe to keep.
                if generation != self._generation:
                    return principal
                if len(self._known) >= _MAX_CACHED:
                    self._known = {}
                self._known[header] = principal
        return principal


def require(scope: str) -> Principal:
    """The request's principal if it has `scope`; 401 without a valid token, 403 without the scope."""
    services = current_app.extensions["rollguard"]
    cache: TokenCache = services.tokens
    failures: FailureLimit = services.auth_failures
    header = request.headers.get("Authorization")
    # Valid tokens are looked up first and never meet the limit; secrets are random (192 bits),
    # so answering a guesser's rare right guess teaches it nothing it could not guess anyway.
    principal = cache.lookup(header)
    if principal is None:
        address = request.remote_addr or "unknown"
        if failures.exhausted(address, header):
            raise TooManyRequests(
                "too many failed authentications from this address; retry in a minute",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        failures.fail(address, header)
        raise Unauthenticated("a valid token is required in the Authorization header")
    if not principal.allows(scope):
        raise Forbidden(f"this token has scope {principal.scope!r}; {scope!r} is required")
    g.principal = principal
    return principal


def require_admin() -> None:
    """Blueprint hook: authenticate before the body is validated, so anonymous callers learn nothing."""
    require("admin")


def actor() -> Actor:
    """The audit actor of an admin request: X-Rollguard-Actor if given, else the token's name."""
    principal = require("admin")
    named = (request.headers.get(ACTOR_HEADER) or "").strip()
    if len(named) > _MAX_ACTOR or any(ord(ch) < 32 for ch in named):
        raise BadRequest(f"{ACTOR_HEADER} must be at most {_MAX_ACTOR} printable characters")
    return Actor(name=named or principal.name, token_name=principal.name)

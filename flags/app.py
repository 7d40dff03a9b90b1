"""The flag service's Flask application factory.

`flags.cli serve` (through `flags.wsgi`) and the tests call `create_app`. It
wires settings, database, the served snapshot and token cache, the API
blueprints, the OpenAPI document at /openapi.json, the JSON error handlers, and
the fast path for SDK polling around the WSGI app, and the stream fan-out
(`flags.broadcast`) woken by PostgreSQL LISTEN or, on SQLite, by local commits.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, request
from flask_smorest import Api
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.middleware.proxy_fix import ProxyFix

from flags import (
    admin_annotations,
    admin_data,
    admin_flags,
    admin_impact,
    admin_tokens,
    errors,
    greenlets,
    health,
    inputs,
    ofrep,
    sdk,
    streaming,
)
from flags.auth import TokenCache
from flags.broadcast import Broadcaster
from flags.db import Database
from flags.errors import connection_lost
from flags.failures import FailureLimit
from flags.fastpath import FeaturesFastPath
from flags.impact import Pruner
from flags.notices import LocalNotices, Notices, PostgresNotices
from flags.schemas import ErrorSchema
from flags.served import ServedState
from flags.settings import Settings
from flags.state import Services

logger = logging.getLogger(__name__)

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_IDEMPOTENT_ACTIONS = ("/kill", "/resume")


class _App(Flask):
    """Flask that runs an idempotent request once more when its database connection was lost.

    SQLAlchemy drops the broken connection (and, on a disconnect, the rest of the
    pool), so the second run gets a fresh one; anything else, or a second
    failure, reaches the error handlers (503 with Retry-After for a lost connection).
    """

    def dispatch_request(self) -> Any:
        try:
            return super().dispatch_request()
        except SQLAlchemyError as exc:
            if not (connection_lost(exc) and _idempotent()):
                raise
            logger.warning(
                "database connection lost during %s %s; retrying once", request.method, request.path
            )
            return super().dispatch_request()


def _idempotent() -> bool:
    if request.method in _IDEMPOTENT_METHODS:
        return True
    return (
        request.method == "POST"
        and request.path.startswith("/api/admin/flags/")
        and (request.path.endswith(_IDEMPOTENT_ACTIONS))
    )


class _Api(Api):  # type: ignore[misc]
    # Document the error body the handlers in flags.errors actually send.
    ERROR_SCHEMA = ErrorSchema


_SECURITY = {"token": {"type": "apiKey", "in": "header", "name": "Authorization"}}
# How often the stream fan-out re-reads the revision when no notice came: a safety
# net for a LISTEN connection that died silently.
_POSTGRES_FALLBACK_S = 5.0
_MIN_LOCAL_CHECK_S = 0.05


def _broadcaster(settings: Settings, db: Database, served: ServedState, tokens: TokenCache) -> Broadcaster:
    notices: Notices
    if db.engine.dialect.name == "postgresql":
        notices, fallback_s = PostgresNotices(settings.database_url), _POSTGRES_FALLBACK_S
    else:
        local = LocalNotices()
        db.after_commit.append(local.notify)
        notices, fallback_s = local, max(settings.flags_revision_check_s, _MIN_LOCAL_CHECK_S)
    # With a thread per stream, streams must leave threads for everything else.
    max_streams = settings.flags_max_streams if greenlets.patched() else max(1, settings.flags_threads // 2)
    return Broadcaster(served, notices, tokens, fallback_s=fallback_s, max_streams=max_streams)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app for `settings` (from the environment when omitted); the schema must be migrated."""
    settings = settings or Settings()
    app = _App(__name__)
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=settings.flags_max_body_bytes,
        ROLLGUARD_MAX_PAYLOAD_BYTES=settings.flags_max_payload_bytes,
        API_TITLE="Rollguard flag service",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": _SECURITY},
            "security": [{"token": []}],
            "info": {"description": "Flags, audit log, Unleash client API and OFREP."},
        },
        JSON_SORT_KEYS=False,
    )
    db = Database(settings.database_url)
    served = ServedState(db, check_s=settings.flags_revision_check_s)
    tokens = TokenCache(db, served.revision)
    served.on_revision(tokens.recheck)
    db.after_commit.append(served.invalidate)
    app.extensions["rollguard"] = Services(
        settings=settings,
        db=db,
        served=served,
        tokens=tokens,
        auth_failures=FailureLimit(
            settings.flags_auth_failures_per_minute, settings.flags_auth_failures_per_address_per_minute
        ),
        broadcaster=_broadcaster(settings, db, served, tokens),
        impact_pruner=Pruner(settings.flags_impact_retention_s),
    )

    # Before every blueprint's own hooks, so no view or parser sees a NUL or a deeply nested body.
    app.before_request(inputs.guard_request)
    api = _Api(app)
    for blueprint in (
        admin_flags.bp,
        admin_tokens.bp,
        admin_data.bp,
        admin_annotations.bp,
        admin_impact.bp,
        sdk.bp,
        streaming.bp,
        ofrep.bp,
        ofrep.payloads_bp,
        health.bp,
    ):
        api.register_blueprint(blueprint)
    # Registered after Api(app) so that these handlers replace flask-smorest's error bodies.
    errors.register_handlers(app)
    if settings.flags_trusted_proxies:
        # The client address (for the failure limit) is taken from X-Forwarded-For, n proxies deep.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.flags_trusted_proxies)  # type: ignore[method-assign]
    app.wsgi_app = FeaturesFastPath(app.wsgi_app, served=served, tokens=tokens)  # type: ignore[method-assign]
    return app

"""The portal's errors and the handlers that turn them into JSON.

Every error response has the shape `{"error": {"code", "message", "details"}}`.

Error tree::

    PortalError                 status + code + message + details
    +-- BadRequest              422, invalid input
    |   +-- MalformedJson       400, the body is not a JSON object
    +-- Unauthorized            401, missing or wrong admin token
    +-- Forbidden               403, the endpoint is disabled by configuration
    +-- NotFound                404
    +-- TooLarge                413, batch over its bound
    +-- TooManyRequests         429, rate limit or concurrency cap
    +-- Unavailable             503, database pool exhausted or backend failing
        +-- InvalidationUnconfirmed  503, a worker did not confirm an invalidation

The optimizer's own errors (an injected fault, its concurrency cap or rate
limit), database pool exhaustion and a lost database connection (a restart, a
terminated backend: `portal.db.connection_lost`) become 503 with Retry-After
(429 for the rate limit): the client may send the request again. Any other
database error is a bug, a 500.
`register_handlers` is called by `create_app`.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc
from flask import Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from optimizer import FaultInjected, OptimizerError, Overloaded, RateLimited
from optimizer import InvalidationUnconfirmed as CacheInvalidationUnconfirmed
from portal.db import connection_lost

logger = logging.getLogger(__name__)


class PortalError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class BadRequest(PortalError):
    status = 422
    code = "invalid_input"


class MalformedJson(BadRequest):
    status = 400
    code = "invalid_json"


class Unauthorized(PortalError):
    status = 401
    code = "unauthorized"


class Forbidden(PortalError):
    status = 403
    code = "forbidden"


class NotFound(PortalError):
    status = 404
    code = "not_found"


class TooLarge(PortalError):
    status = 413
    code = "too_large"


class TooManyRequests(PortalError):
    status = 429
    code = "too_many_requests"


class Unavailable(PortalError):
    status = 503
    code = "unavailable"


class InvalidationUnconfirmed(Unavailable):
    """The attempt is stored, but another worker did not confirm dropping the student's cached pages."""

    code = "invalidation_unconfirmed"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


#: Every 503 says when to try again: the failure is one the request may outlive (an outage, a full pool).
RETRY_AFTER = {"Retry-After": "1"}


def register_handlers(app: Flask) -> None:
    """Turn portal errors, HTTP errors, lost connections and pool exhaustion into JSON error responses."""

    @app.errorhandler(PortalError)
    def _portal_error(exc: PortalError) -> ResponseReturnValue:
        headers = RETRY_AFTER if exc.status == 503 else {}
        return jsonify(error_body(exc.code, exc.message, exc.details)), exc.status, headers

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        code = (exc.name or "http_error").lower().replace(" ", "_")
        return jsonify(error_body(code, exc.description or exc.name, None)), exc.code or 500

    @app.errorhandler(OptimizerError)
    def _optimizer_error(exc: OptimizerError) -> ResponseReturnValue:
        if isinstance(exc, FaultInjected):
            return jsonify(error_body("fault_injected", str(exc))), 503, RETRY_AFTER
        if isinstance(exc, RateLimited):
            return jsonify(error_body("backend_rate_limited", str(exc))), 429, RETRY_AFTER
        if isinstance(exc, Overloaded):
            return jsonify(error_body("backend_overloaded", str(exc))), 503, RETRY_AFTER
        if isinstance(exc, CacheInvalidationUnconfirmed):
            # The attempt is stored; the shared cache could not confirm every copy of the student's pages gone.
            return jsonify(error_body("invalidation_unconfirmed", str(exc))), 503, RETRY_AFTER
        logger.warning("optimizer error: %s", exc)
        return jsonify(error_body("backend_error", str(exc))), 503, RETRY_AFTER

    @app.errorhandler(sqlalchemy.exc.TimeoutError)
    def _pool_exhausted(exc: sqlalchemy.exc.TimeoutError) -> ResponseReturnValue:
        logger.warning("database pool exhausted: %s", exc)
        portal = current_app.extensions.get("portal")
        if portal is not None:
            portal.metrics.pool_timeouts.inc()
        body = error_body("db_pool_exhausted", "no database connection free within the pool timeout")
        return jsonify(body), 503, RETRY_AFTER

    @app.errorhandler(sqlalchemy.exc.SQLAlchemyError)
    def _database_error(exc: sqlalchemy.exc.SQLAlchemyError) -> ResponseReturnValue:
        if not connection_lost(exc):
            # A bug, not an outage: logged with its traceback, answered 500.
            logger.error("database error", exc_info=exc)
            return jsonify(error_body("internal_error", "internal error")), 500
        logger.warning("database unavailable: %s", exc.__class__.__name__)
        body = error_body("database_unavailable", "the database is unavailable; retry")
        return jsonify(body), 503, RETRY_AFTER

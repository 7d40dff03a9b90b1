"""Errors of the flag service and their JSON rendering.

Views and the store raise these; `register_handlers` (called by `create_app`)
turns them, Werkzeug's HTTP errors and flask-smorest's validation errors into
the project's body `{"error": {"code", "message", "details"}}`.

Error tree::

    ApiError                    status + code + message + details
    +-- BadRequest              400 malformed input that is not a schema error
    +-- Unauthenticated         401 no or unknown token
    +-- Forbidden               403 token lacks the scope
    +-- NotFound                404
    +-- Conflict                409 stale version, duplicate key
    +-- PreconditionRequired    428 write without If-Match
    +-- ValidationFailed        422 a body that parses but breaks a rule
    +-- TooManyRequests         429 too many failed authentications

A lost database connection (`connection_lost`) is answered 503 with
Retry-After: the request may be sent again; any other error is a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API reports to its caller."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthenticated(ApiError):
    status, code = 401, "unauthenticated"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PreconditionRequired(ApiError):
    status, code = 428, "precondition_required"


class ValidationFailed(ApiError):
    status, code = 422, "validation_failed"


class TooManyRequests(ApiError):
    status, code = 429, "too_many_requests"


DATABASE_RETRY_AFTER_S = 1


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` means the database connection failed (restart, terminated backend, pool timeout)."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DisconnectionError | sa_exc.TimeoutError
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    428: "precondition_required",
    429: "too_many_requests",
}


def error_response(status: int, code: str, message: str, details: Any = None) -> Response:
    """Build the JSON error response every failure uses."""
    response = jsonify({"error": {"code": code, "message": message, "details": details}})
    response.status_code = status
    return response


def _string_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_string_keys(item) for item in value]
    return value


def _from_http(exc: HTTPException) -> Response:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages") if isinstance(data, dict) else None
    if status == 422 and messages is not None:
        # flask-smorest puts marshmallow's messages under data["messages"][location]; a list's item
        # errors are keyed by position (int) beside its own ("_schema"), which JSON cannot sort together.
        return error_response(
            422, "validation_failed", "the request does not match the schema", _string_keys(messages)
        )
    if status == 400 and (messages is not None or "JSON" in (exc.description or "")):
        if "Invalid JSON body." in str(messages) or "JSON" in (exc.description or ""):
            return error_response(400, "malformed_json", "the body is not valid JSON")
        return error_response(400, "bad_request", "malformed request", messages)
    if status == 413:
        return error_response(413, "payload_too_large", "the request body is too large")
    code = _HTTP_CODES.get(status, "http_error" if status < 500 else "internal_error")
    response = error_response(status, code, exc.description or exc.name)
    for name, value in exc.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def register_handlers(app: Flask) -> None:
    """Render every error the app raises as the project's JSON error body."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return _from_http(exc)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # The process boundary of a request: log it, answer in the project's format.
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal error")

    @app.errorhandler(sa_exc.SQLAlchemyError)
    def _database_error(exc: sa_exc.SQLAlchemyError) -> Response:
        if not connection_lost(exc):
            return _unexpected(exc)
        logger.warning("database unavailable: %s", exc.__class__.__name__)
        response = error_response(503, "database_unavailable", "the database is unavailable; retry")
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return response

"""Errors of the alerts package and their JSON rendering.

The receiver's views raise `ReceiverError` subclasses; `register_handlers`
(called by `receiver.create_app`) renders them, and Werkzeug's HTTP errors, as
the project's body `{"error": {"code", "message", "details"}}`, the same body
the flag service answers with. The rules
generator and the CLI raise `RulesError` / `ConfigError`.

Error tree::

    AlertsError                  base of everything raised here
    +-- ConfigError              settings that cannot work (no token, unreadable token file)
    +-- RulesError               flags whose guardrails cannot become rules
    +-- ReceiverError            status + code + message + details, sent to the caller
        +-- BadRequest           400 a query parameter that makes no sense
        +-- Unauthenticated      401 missing or wrong bearer token
        +-- InvalidPayload       422 not an Alertmanager version-4 webhook payload
        +-- TooManyRequests      429 too many failed authentications from one address
        +-- FlagServiceDown      503 the flag service did not answer; Alertmanager retries
        +-- FlagServiceRejected  502 the flag service refused the kill (e.g. our admin token)
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from alerts.failures import RETRY_AFTER_S

logger = logging.getLogger(__name__)


class AlertsError(Exception):
    """Base of the errors raised by the alerts package."""


class ConfigError(AlertsError):
    """The settings cannot work."""


class RulesError(AlertsError):
    """A flag's guardrails cannot be turned into Prometheus rules."""


class ReceiverError(AlertsError):
    """An error the receiver reports to its HTTP caller."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class BadRequest(ReceiverError):
    status, code = 400, "bad_request"


class Unauthenticated(ReceiverError):
    status, code = 401, "unauthenticated"


class InvalidPayload(ReceiverError):
    status, code = 422, "invalid_payload"


class TooManyRequests(ReceiverError):
    status, code = 429, "too_many_requests"


class FlagServiceDown(ReceiverError):
    status, code = 503, "flag_service_unavailable"


class FlagServiceRejected(ReceiverError):
    status, code = 502, "flag_service_rejected"


def error_response(status: int, code: str, message: str, details: Any = None) -> Response:
    """Build the project's JSON error body with its status."""
    response = jsonify({"error": {"code": code, "message": message, "details": details}})
    response.status_code = status
    return response


def register_handlers(app: Flask) -> None:
    """Render receiver errors and Werkzeug HTTP errors as JSON."""

    @app.errorhandler(ReceiverError)
    def _receiver_error(exc: ReceiverError) -> Response:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        if isinstance(exc, Unauthenticated):
            response.headers["WWW-Authenticate"] = 'Bearer realm="rollguard-alerts"'
        if isinstance(exc, FlagServiceDown):
            response.headers["Retry-After"] = "5"
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = (exc.name or "http_error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name)

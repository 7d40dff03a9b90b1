"""The Alertmanager webhook receiver: a Flask app factory.

`rollguard alerts serve` (alerts.cli) serves `create_app(settings)` with
gunicorn; tests call it directly. Routes:

- `POST /alertmanager/webhook`  bearer-protected; a version-4 payload; kills the
  flags that firing `action="rollback"` alerts name (alerts.rollback). 200 with
  the outcome per alert, 503 when the flag service did not answer (Alertmanager
  retries 5xx), 502 when it refused, 422 for a malformed payload.
- `GET /alertmanager/deliveries`  bearer-protected; the recorded deliveries.
- `GET /healthz`  open; 200 while the receiver's database answers.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.middleware.proxy_fix import ProxyFix

from alerts import errors
from alerts.errors import (
    BadRequest,
    ConfigError,
    FlagServiceDown,
    FlagServiceRejected,
    InvalidPayload,
    TooManyRequests,
    Unauthenticated,
)
from alerts.failures import FailureLimit
from alerts.payload import parse_payload
from alerts.rollback import handle_delivery
from alerts.settings import AlertsSettings
from alerts.store import Action, DeliveryStore
from control import Notifier
from flags.client import FlagsClient
from flags.jsontext import MAX_JSON_DEPTH, body_too_deep

logger = logging.getLogger(__name__)

bp = Blueprint("receiver", __name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
_EXTENSION = "rollguard_alerts"


class _State:
    def __init__(self, settings: AlertsSettings, store: DeliveryStore, token: str | None) -> None:
        self.settings = settings
        self.store = store
        self.token = token
        self.failures = FailureLimit(
            settings.alerts_auth_failures_per_minute, settings.alerts_auth_failures_per_address_per_minute
        )
        # Few retries: Alertmanager waits for the webhook's answer while this runs.
        self.notifier = Notifier(
            settings.notify_webhook_url, settings.notify_slack_url, retries=1, backoff_s=0.2, timeout_s=3.0
        )

    def client(self, actor: str) -> FlagsClient:
        return FlagsClient(
            self.settings.flags_url,
            self.settings.admin_secret,
            actor=actor,
            retries=self.settings.alerts_flags_retries,
        )


def create_app(settings: AlertsSettings | None = None, *, require_token: bool = True) -> Flask:
    """Build the receiver; refuse without a bearer token unless `require_token` is False."""
    settings = settings or AlertsSettings()
    token = settings.receiver_token()
    if token is None and require_token:
        raise ConfigError(
            "the receiver needs ROLLGUARD_ALERTS_TOKEN or ROLLGUARD_ALERTS_TOKEN_FILE "
            "(or --insecure-no-token to accept unauthenticated deliveries)"
        )
    if token is None:
        logger.warning("the alert receiver accepts deliveries without a token")
    store = DeliveryStore(settings.alerts_database_url)
    store.create_tables()
    # gunicorn forks workers after this; they must not share the pooled connection.
    store.dispose()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions[_EXTENSION] = _State(settings, store, token)
    app.register_blueprint(bp)
    errors.register_handlers(app)
    if settings.alerts_trusted_proxies:
        # The client address (for the failure limit) is taken from X-Forwarded-For, n proxies deep.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.alerts_trusted_proxies)  # type: ignore[method-assign]
    return app


def _state() -> _State:
    state: _State = current_app.extensions[_EXTENSION]
    return state


@bp.before_app_request
def _authenticate() -> None:
    if not request.path.startswith("/alertmanager/"):
        return
    state = _state()
    if state.token is None:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(supplied.strip().encode(), state.token.encode()):
        return
    # Like the flag service: only failed requests meet the limit, so Alertmanager's own never do.
    address = request.remote_addr or "unknown"
    if state.failures.exhausted(address, header):
        raise TooManyRequests("too many failed authentications from this address; retry in a minute")
    state.failures.fail(address, header)
    raise Unauthenticated("a valid 'Authorization: Bearer <token>' header is required")


@bp.post("/alertmanager/webhook")
def webhook() -> Response:
    """Act on one Alertmanager delivery and report what was done with each alert."""
    if body_too_deep(request.get_data(cache=True)):
        raise BadRequest(f"the body is nested deeper than {MAX_JSON_DEPTH} levels", code="too_deeply_nested")
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise InvalidPayload("the body is not JSON")
    payload = parse_payload(body)
    state = _state()
    outcomes = handle_delivery(payload, store=state.store, clients=state.client, notifier=state.notifier)
    results = [o.to_json() for o in outcomes]
    if any(o.action is Action.FLAG_SERVICE_UNAVAILABLE for o in outcomes):
        raise FlagServiceDown("the flag service did not answer; retry", details=results)
    if any(o.action is Action.FLAG_SERVICE_REJECTED for o in outcomes):
        raise FlagServiceRejected("the flag service refused a rollback", details=results)
    return jsonify({"results": results})


@bp.get("/alertmanager/deliveries")
def deliveries() -> Response:
    """List recorded deliveries, newest first; filters: flag, fingerprint, status, limit."""
    try:
        limit = int(request.args.get("limit", "100"))
    except ValueError as exc:
        raise BadRequest("limit must be an integer") from exc
    rows = _state().store.deliveries(
        flag=request.args.get("flag"),
        fingerprint=request.args.get("fingerprint"),
        status=request.args.get("status"),
        limit=max(1, min(limit, 1000)),
    )
    return jsonify({"deliveries": [row.to_json() for row in rows]})


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Report whether the receiver can record deliveries."""
    try:
        _state().store.ping()
    except SQLAlchemyError as exc:
        logger.warning("delivery store unreachable: %s", exc)
        body: dict[str, Any] = {"status": "unavailable", "database": "unreachable"}
        return jsonify(body), 503
    return jsonify({"status": "ok"}), 200

"""Admin-only fault injection on the optimized path, for demos and rollback tests.

`POST /api/admin/fault` {"error_rate": 0..1, "latency_ms": >= 0} sets the
optimizer's chaos hook; `DELETE /api/admin/fault` clears it; `GET` shows it.
The portal admin token (ROLLGUARD_PORTAL_ADMIN_TOKEN) must be sent in
`Authorization`, bare or as `Bearer <token>`; without a configured token the
endpoint is refused (403).
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, jsonify, request

from optimizer import Fault
from portal.errors import Forbidden, Unauthorized
from portal.runtime import Portal, current_portal
from portal.schemas import FaultRequest, parse_body

logger = logging.getLogger(__name__)

bp = Blueprint("fault", __name__, url_prefix="/api/admin")


def _authorize(portal: Portal) -> None:
    expected = portal.settings.admin_token
    if not expected:
        raise Forbidden("fault injection is disabled: no portal admin token configured", code="disabled")
    sent = request.headers.get("Authorization", "")
    if sent.lower().startswith("bearer "):
        sent = sent[7:]
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Unauthorized("a valid portal admin token is required in Authorization")


def _describe(fault: Fault | None) -> dict[str, object]:
    if fault is None:
        return {"active": False, "error_rate": 0.0, "latency_ms": 0.0}
    return {"active": True, "error_rate": fault.error_rate, "latency_ms": fault.latency_s * 1000.0}


@bp.get("/fault")
def show_fault() -> Response:
    portal = current_portal()
    _authorize(portal)
    return jsonify(_describe(portal.optimizer.fault))


@bp.post("/fault")
def set_fault() -> Response:
    """Inject errors and latency into the optimized path."""
    portal = current_portal()
    _authorize(portal)
    body = parse_body(FaultRequest)
    portal.optimizer.fault = Fault(error_rate=body.error_rate, latency_s=body.latency_ms / 1000.0)
    logger.warning("fault injected: error_rate=%s latency_ms=%s", body.error_rate, body.latency_ms)
    return jsonify(_describe(portal.optimizer.fault))


@bp.delete("/fault")
def clear_fault() -> Response:
    """Remove the injected fault."""
    portal = current_portal()
    _authorize(portal)
    portal.optimizer.fault = None
    logger.warning("fault cleared")
    return jsonify(_describe(None))

"""OpenFeature Remote Evaluation Protocol (OFREP) for OpenFeature clients.

POST /ofrep/v1/evaluate/flags/{key} evaluates one flag, POST
/ofrep/v1/evaluate/flags all of them (with an ETag). Evaluation runs the
Unleash engine on the same snapshot the SDKs receive, so an OpenFeature client
and an Unleash SDK give a user the same answer. The context's `targetingKey` is
the Unleash `userId`. The value is the flag's on/off state; the variant payload
(a Rollguard flag's config) is returned as JSON text in `metadata.payload`.
Evaluation errors use OFREP's body (`key`, `errorCode`, `errorDetails`) next to
the project's `error` object.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import Response, jsonify, request
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, fields

from flags.auth import require
from flags.served import Snapshot
from flags.state import services

bp = Blueprint("ofrep", __name__, url_prefix="/ofrep/v1", description="OpenFeature remote evaluation.")

_STANDARD_FIELDS = ("userId", "sessionId", "remoteAddress", "environment", "appName", "currentTime")


class EvaluationRequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    context = fields.Dict(keys=fields.String(), load_default=dict)


class EvaluationSchema(Schema):
    key = fields.String()
    value = fields.Raw()
    reason = fields.String()
    variant = fields.String()
    metadata = fields.Dict()
    errorCode = fields.String()
    errorDetails = fields.String()


class BulkEvaluationSchema(Schema):
    flags = fields.List(fields.Nested(EvaluationSchema))


class InvalidContext(ValueError):
    """The evaluation context cannot become an Unleash context."""


def unleash_context(context: dict[str, Any]) -> dict[str, Any]:
    """Map an OpenFeature evaluation context to the Unleash engine's context."""
    result: dict[str, Any] = {}
    properties: dict[str, str] = {}
    for name, value in context.items():
        if isinstance(value, (dict, list)):
            raise InvalidContext(f"context field {name!r} must be a string, number or boolean")
        if value is None:
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if name == "targetingKey":
            result.setdefault("userId", text)
        elif name in _STANDARD_FIELDS:
            result[name] = text
        else:
            properties[name] = text
    if "userId" in context and context["userId"] is not None:
        result["userId"] = str(context["userId"])
    result["properties"] = properties
    return result


def _error(key: str, status: int, code: str, details: str) -> tuple[Response, int]:
    body = {
        "key": key,
        "errorCode": code,
        "errorDetails": details,
        "error": {"code": code.lower(), "message": details, "details": None},
    }
    return jsonify(body), status


def evaluate(snapshot: Snapshot, feature: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Evaluate one feature of the snapshot for an Unleash context."""
    name = feature["name"]
    engine = snapshot.engine()
    with snapshot.evaluation_lock:
        enabled = bool(engine.check_enabled(name, context).is_enabled)
        variant = engine.check_variant(name, context).variant if enabled else None
    metadata: dict[str, Any] = {}
    if variant is not None and variant.enabled and variant.payload:
        metadata["payload"] = variant.payload.get("value")
        metadata["payloadType"] = variant.payload.get("type")
    return {
        "key": name,
        "value": enabled,
        "reason": "DISABLED" if not feature.get("enabled", True) else "TARGETING_MATCH",
        "variant": variant.name if variant is not None and variant.enabled else ("on" if enabled else "off"),
        "metadata": metadata,
    }


@bp.route("/evaluate/flags/<string:key>", methods=["POST"])
@bp.arguments(EvaluationRequestSchema)
@bp.response(200, EvaluationSchema)
@bp.alt_response(404, schema=EvaluationSchema, description="FLAG_NOT_FOUND")
@bp.alt_response(400, schema=EvaluationSchema, description="INVALID_CONTEXT")
def evaluate_one(data: dict[str, Any], key: str) -> Any:
    """Evaluate one flag for a context."""
    require("client")
    snapshot = services().served.snapshot()
    feature = next((f for f in snapshot.state["features"] if f.get("name") == key), None)
    if feature is None:
        return _error(key, 404, "FLAG_NOT_FOUND", f"no flag {key!r}")
    try:
        context = unleash_context(data["context"])
    except InvalidContext as exc:
        return _error(key, 400, "INVALID_CONTEXT", str(exc))
    return evaluate(snapshot, feature, context)


@bp.route("/evaluate/flags", methods=["POST"])
@bp.arguments(EvaluationRequestSchema)
@bp.response(200, BulkEvaluationSchema)
@bp.alt_response(304, description="If-None-Match named the current flag set")
def evaluate_all(data: dict[str, Any]) -> Any:
    """Evaluate every flag for a context."""
    require("client")
    snapshot = services().served.snapshot()
    try:
        context = unleash_context(data["context"])
    except InvalidContext as exc:
        return _error("", 400, "INVALID_CONTEXT", str(exc))
    # The answer depends on the context as well as on the flags.
    digest = hashlib.sha256((snapshot.etag + json.dumps(context, sort_keys=True)).encode()).hexdigest()
    etag = f'"{digest[:24]}"'
    if etag in [part.strip() for part in request.headers.get("If-None-Match", "").split(",")]:
        return Response(status=304, headers={"ETag": etag})
    flags = [evaluate(snapshot, feature, context) for feature in snapshot.state["features"]]
    response = jsonify({"flags": flags})
    response.headers["ETag"] = etag
    return response

"""OpenFeature Remote Evaluation Protocol (OFREP) for OpenFeature clients.

POST /ofrep/v1/evaluate/flags/{key} evaluates one flag, POST
/ofrep/v1/evaluate/flags all of them (with an ETag). Evaluation runs the
Unleash engine on the same snapshot the SDKs receive, so an OpenFeature client
and an Unleash SDK give a user the same answer. The context's `targetingKey` is
the Unleash `userId`; a flag that is on needs it (`TARGETING_KEY_MISSING`), a
killed one does not. Under /ofrep/v1 the value is the flag's on/off state, with
the variant payload as JSON text in `metadata.payload`. Under
/payloads/ofrep/v1 the value is the payload itself, typed (`flags.ofrep_values`
says why there are two mounts), and a user without a payload gets no value, so
the provider returns the code's default. Evaluation errors use OFREP's body
(`key`, `errorCode`, `errorDetails`) next to the project's `error` object.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import Response, jsonify, request
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, Schema, fields

from flags.auth import require
from flags.ofrep_values import UnparsablePayload, has_payloads, typed_value
from flags.served import Snapshot
from flags.state import services

bp = Blueprint("ofrep", __name__, url_prefix="/ofrep/v1", description="OpenFeature remote evaluation.")
payloads_bp = Blueprint(
    "ofrep_payloads",
    __name__,
    url_prefix="/payloads/ofrep/v1",
    description="OpenFeature remote evaluation with each flag's variant payload as its value.",
)

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


def _failure(key: str, code: str, details: str) -> dict[str, Any]:
    return {"key": key, "errorCode": code, "errorDetails": details}


def evaluate(
    snapshot: Snapshot, feature: dict[str, Any], context: dict[str, Any], *, payloads: bool = False
) -> dict[str, Any]:
    """Evaluate one feature of the snapshot for an Unleash context: a success or a failure (`errorCode`)."""
    name = feature["name"]
    killed = not feature.get("enabled", True)
    if not killed and not context.get("userId"):
        # The flag is on for some users; which ones depends on the key.
        return _failure(name, "TARGETING_KEY_MISSING", "the context has no targetingKey")
    engine = snapshot.engine()
    with snapshot.evaluation_lock:
        enabled = bool(engine.check_enabled(name, context).is_enabled)
        variant = engine.check_variant(name, context).variant if enabled else None
    chosen = variant if variant is not None and variant.enabled else None
    result: dict[str, Any] = {
        "key": name,
        "value": enabled,
        "reason": "DISABLED" if killed else "TARGETING_MATCH",
        "variant": chosen.name if chosen is not None else ("on" if enabled else "off"),
        "metadata": {},
    }
    if chosen is not None and chosen.payload:
        result["metadata"] = {
            "payload": chosen.payload.get("value"),
            "payloadType": chosen.payload.get("type"),
        }
    if payloads and has_payloads(feature):
        return _payload_valued(result, chosen.payload if chosen is not None else None)
    return result


def _payload_valued(result: dict[str, Any], payload: dict[str, Any] | None) -> dict[str, Any]:
    """The answer with the payload as its value, or with no value (the code's default) when there is none."""
    del result["value"]
    if payload is None:
        if result["reason"] != "DISABLED":
            result["reason"] = "DEFAULT"
        return result
    try:
        result["value"] = typed_value(payload)
    except UnparsablePayload as exc:
        return _failure(result["key"], "PARSE_ERROR", str(exc))
    return result


def _evaluate_one(data: dict[str, Any], key: str, *, payloads: bool) -> Any:
    require("client")
    snapshot = services().served.snapshot()
    feature = next((f for f in snapshot.state["features"] if f.get("name") == key), None)
    if feature is None:
        return _error(key, 404, "FLAG_NOT_FOUND", f"no flag {key!r}")
    try:
        context = unleash_context(data["context"])
    except InvalidContext as exc:
        return _error(key, 400, "INVALID_CONTEXT", str(exc))
    result = evaluate(snapshot, feature, context, payloads=payloads)
    if "errorCode" in result:
        return _error(key, 400, result["errorCode"], result["errorDetails"])
    return result


def _evaluate_all(data: dict[str, Any], *, payloads: bool) -> Any:
    require("client")
    snapshot = services().served.snapshot()
    try:
        context = unleash_context(data["context"])
    except InvalidContext as exc:
        return _error("", 400, "INVALID_CONTEXT", str(exc))
    # The answer depends on the context and the mount as well as on the flags.
    seed = snapshot.etag + json.dumps(context, sort_keys=True) + ("payloads" if payloads else "")
    etag = f'"{hashlib.sha256(seed.encode()).hexdigest()[:24]}"'
    if etag in [part.strip() for part in request.headers.get("If-None-Match", "").split(",")]:
        return Response(status=304, headers={"ETag": etag})
    flags = [
        evaluate(snapshot, feature, context, payloads=payloads) for feature in snapshot.state["features"]
    ]
    response = jsonify({"flags": flags})
    response.headers["ETag"] = etag
    return response


@bp.route("/evaluate/flags/<string:key>", methods=["POST"])
@bp.arguments(EvaluationRequestSchema)
@bp.response(200, EvaluationSchema)
@bp.alt_response(404, schema=EvaluationSchema, description="FLAG_NOT_FOUND")
@bp.alt_response(400, schema=EvaluationSchema, description="INVALID_CONTEXT or TARGETING_KEY_MISSING")
def evaluate_one(data: dict[str, Any], key: str) -> Any:
    """Evaluate one flag for a context: the value is whether it is on."""
    return _evaluate_one(data, key, payloads=False)


@bp.route("/evaluate/flags", methods=["POST"])
@bp.arguments(EvaluationRequestSchema)
@bp.response(200, BulkEvaluationSchema)
@bp.alt_response(304, description="If-None-Match named the current flag set")
def evaluate_all(data: dict[str, Any]) -> Any:
    """Evaluate every flag for a context: each value is whether it is on."""
    return _evaluate_all(data, payloads=False)


@payloads_bp.route("/evaluate/flags/<string:key>", methods=["POST"])
@payloads_bp.arguments(EvaluationRequestSchema)
@payloads_bp.response(200, EvaluationSchema)
@payloads_bp.alt_response(404, schema=EvaluationSchema, description="FLAG_NOT_FOUND")
@payloads_bp.alt_response(
    400, schema=EvaluationSchema, description="INVALID_CONTEXT, TARGETING_KEY_MISSING or PARSE_ERROR"
)
def evaluate_payload(data: dict[str, Any], key: str) -> Any:
    """Evaluate one flag for a context: the value is the variant's payload (none: use the code's default)."""
    return _evaluate_one(data, key, payloads=True)


@payloads_bp.route("/evaluate/flags", methods=["POST"])
@payloads_bp.arguments(EvaluationRequestSchema)
@payloads_bp.response(200, BulkEvaluationSchema)
@payloads_bp.alt_response(304, description="If-None-Match named the current flag set")
def evaluate_payloads(data: dict[str, Any]) -> Any:
    """Evaluate every flag for a context: each value is the variant's payload, or absent."""
    return _evaluate_all(data, payloads=True)

"""Request and response schemas of every route (marshmallow, through flask-smorest).

flask-smorest was chosen because one set of marshmallow schemas drives both the
validation of each request (422 with per-field messages) and the OpenAPI 3
document at /openapi.json, on plain Flask views, without a second framework.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import current_app
from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates,
    validates_schema,
)

from flags import from_unleash
from flags.batch_schemas import UNLEASH_NAME_RULES, BatchExportSchema, BatchImportSchema, StrictBoolean
from flags.model import FLAG_STATES, GUARDRAIL_METRICS, GUARDRAIL_OPS, Guardrail, guardrail_list_problems

KEY_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"


class FullMatch(validate.Regexp):
    """`validate.Regexp` over the whole value: `$` alone also matches before a trailing newline."""

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


_key = fields.String(required=True, validate=FullMatch(KEY_PATTERN, error="key must match {regex}"))
_reason = fields.String(validate=validate.Length(max=1000), allow_none=True)


class GuardrailSchema(Schema):
    metric = fields.String(required=True, validate=validate.OneOf(GUARDRAIL_METRICS))
    op = fields.String(load_default="<=", validate=validate.OneOf(GUARDRAIL_OPS))
    threshold = fields.Float(required=True, allow_nan=False)
    window_s = fields.Integer(strict=True, load_default=60, validate=validate.Range(min=1, max=86_400))
    min_samples = fields.Integer(strict=True, load_default=20, validate=validate.Range(min=1, max=1_000_000))
    path = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(["optimized", "direct"]))
    kind = fields.String(load_default="threshold", validate=validate.OneOf(["threshold", "comparative"]))


class RollbackSchema(Schema):
    consecutive_failures = fields.Integer(strict=True, validate=validate.Range(min=1, max=1000))
    on_no_data = fields.String(validate=validate.OneOf(["hold", "rollback"]))


class _FlagFields(Schema):
    """The writable fields of a flag, shared by create, patch and import."""

    description = fields.String(validate=validate.Length(max=2000))
    enabled = StrictBoolean()
    rollout = fields.Integer(strict=True, validate=validate.Range(min=0, max=100))
    stages = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=100)),
        validate=validate.Length(min=1, max=20),
    )
    stage_hold_s = fields.Integer(strict=True, validate=validate.Range(min=0, max=30 * 86_400))
    auto_promote = StrictBoolean()
    guardrails = fields.List(fields.Nested(GuardrailSchema), validate=validate.Length(max=50))
    rollback = fields.Nested(RollbackSchema)
    state = fields.String(validate=validate.OneOf(FLAG_STATES))
    payload = fields.Dict(keys=fields.String())

    @validates_schema
    def _guardrails_judgeable(self, data: dict[str, Any], **_kwargs: Any) -> None:
        # Runs only when every field loaded (marshmallow skips it on field errors). The controller
        # could never judge these guardrails, or they could never fail: refuse them here.
        guardrails = [Guardrail.from_json(g) for g in data.get("guardrails", ())]
        problems = guardrail_list_problems(guardrails)
        if problems:
            messages = [f"guardrail {number}: {problem}" for number, problem in problems]
            raise ValidationError(messages, field_name="guardrails")

    @validates("payload")
    def _payload_fits(self, value: dict[str, Any], **_kwargs: Any) -> None:
        try:
            size = len(json.dumps(value, allow_nan=False).encode())
        except (ValueError, TypeError) as exc:
            raise ValidationError("payload must be plain JSON (no NaN or Infinity)") from exc
        limit = current_app.config["ROLLGUARD_MAX_PAYLOAD_BYTES"]
        if size > limit:
            raise ValidationError(f"payload is {size} bytes; the limit is {limit}")

    @post_load
    def _sort_stages(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        if "stages" in data:
            data["stages"] = sorted(set(data["stages"]))
        return data


class FlagCreateSchema(_FlagFields):
    key = _key
    reason = _reason


class FlagPatchSchema(_FlagFields):
    reason = _reason


class FlagImportSchema(_FlagFields):
    key = _key
    version = fields.Integer(load_only=True)
    created_at = fields.String(load_only=True)
    updated_at = fields.String(load_only=True)
    # An export's stamps are read and dropped: the importing service stamps its own changes.
    stage_started_at = fields.String(load_only=True)
    stage_started_by = fields.String(load_only=True, allow_none=True)


class FlagSchema(Schema):
    key = fields.String()
    description = fields.String()
    enabled = fields.Boolean()
    rollout = fields.Integer()
    stages = fields.List(fields.Integer())
    stage_hold_s = fields.Integer()
    auto_promote = fields.Boolean()
    guardrails = fields.List(fields.Nested(GuardrailSchema))
    rollback = fields.Nested(RollbackSchema)
    state = fields.String()
    payload = fields.Dict()
    version = fields.Integer()
    created_at = fields.String(metadata={"format": "date-time"})
    updated_at = fields.String(metadata={"format": "date-time"})
    stage_started_at = fields.String(
        metadata={
            "format": "date-time",
            "description": "when the change that began the current stage was made (UTC): a create, or a "
            "change of enabled, rollout, state or payload",
        }
    )
    stage_started_by = fields.String(
        allow_none=True, metadata={"description": "the actor of that change (null when not known)"}
    )


class FlagListSchema(Schema):
    flags = fields.List(fields.Nested(FlagSchema))


class RolloutSchema(Schema):
    rollout = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=100))
    reason = _reason


class ReasonSchema(Schema):
    reason = _reason


class RequiredReasonSchema(Schema):
    """Kill and resume: the CLI and the dashboard ask for a reason, so the API does too."""

    reason = fields.String(
        required=True,
        validate=validate.And(
            validate.Length(max=1000),
            validate.Regexp(r".*\S", error="give a reason: it goes into the audit log"),
        ),
    )


class ReasonQuerySchema(Schema):
    reason = fields.String(validate=validate.Length(max=1000))


class EventsQuerySchema(Schema):
    flag = fields.String(validate=validate.Length(max=255))
    since = fields.AwareDateTime(default_timezone=dt.UTC)
    until = fields.AwareDateTime(default_timezone=dt.UTC)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    order = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))


class EventSchema(Schema):
    id = fields.Integer()
    time = fields.String(metadata={"format": "date-time"})
    flag = fields.String(allow_none=True)
    actor = fields.String()
    token_name = fields.String(allow_none=True)
    action = fields.String()
    reason = fields.String(allow_none=True)
    before = fields.Dict(allow_none=True)
    after = fields.Dict(allow_none=True)


class EventListSchema(Schema):
    events = fields.List(fields.Nested(EventSchema))


class TokenCreateSchema(Schema):
    name = fields.String(required=True, validate=FullMatch(r"^[\w.:@ -]{1,200}$"))
    scope = fields.String(required=True, validate=validate.OneOf(["admin", "client"]))


class TokenSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    scope = fields.String()
    created_at = fields.String(metadata={"format": "date-time"})
    revoked = fields.Boolean()
    secret = fields.String(metadata={"description": "only in the response that created the token"})


class TokenListSchema(Schema):
    tokens = fields.List(fields.Nested(TokenSchema))


class UnleashStrategySchema(Schema):
    class Meta:
        unknown = "include"

    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    parameters = fields.Dict(keys=fields.String())
    constraints = fields.List(fields.Dict())
    segments = fields.List(fields.Integer(strict=True))
    variants = fields.List(fields.Dict())


class UnleashFeatureSchema(Schema):
    """An Unleash feature, kept as given apart from the checks here."""

    class Meta:
        unknown = "include"

    name = fields.String(required=True, validate=UNLEASH_NAME_RULES)
    enabled = StrictBoolean(load_default=True)
    strategies = fields.List(fields.Nested(UnleashStrategySchema), load_default=list)
    variants = fields.List(fields.Dict(), allow_none=True)


class UnleashSegmentSchema(Schema):
    class Meta:
        unknown = "include"

    id = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=2**31 - 1))
    constraints = fields.List(fields.Dict(), load_default=list)


class ImportSchema(Schema):
    """A Rollguard export, Unleash's client document, or Unleash 8's batch export or import document.

    A batch document is converted to client-API features first
    (`flags.from_unleash`); what it could not carry over goes in `report`.
    """

    class Meta:
        unknown = EXCLUDE

    version = fields.Integer(
        strict=True, metadata={"description": "set by an export; a replace that removes features needs it"}
    )
    features = fields.List(fields.Nested(UnleashFeatureSchema))
    segments = fields.List(fields.Nested(UnleashSegmentSchema))
    flags = fields.List(fields.Nested(FlagImportSchema))
    reason = _reason
    # Set by the conversion below, never taken from the body.
    format = fields.String(load_default="rollguard")
    report = fields.List(fields.Dict(), load_default=list)

    @pre_load
    def _convert_batch(self, data: Any, **_kwargs: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if not from_unleash.is_batch(data):
            return {name: value for name, value in data.items() if name not in ("format", "report")}
        if "data" in data:
            kind, checked = "unleash-import", BatchImportSchema().load(data)
        else:
            kind, checked = "unleash-export", BatchExportSchema().load(data)
        converted = from_unleash.convert(checked)
        report = [loss.as_json() for loss in converted.report]
        return {"features": converted.features, "format": kind, "report": report}


class ImportQuerySchema(Schema):
    replace = fields.Boolean(
        load_default=False,
        metadata={
            "description": "drop imported Unleash features and segments absent from the document; "
            "refused (409) when that removes features and the document is not an export"
        },
    )


class LossSchema(Schema):
    feature = fields.String(allow_none=True, metadata={"description": "null when about the whole document"})
    left_out = fields.Boolean(metadata={"description": "true when the whole feature stayed behind"})
    reason = fields.String()


class ImportResultSchema(Schema):
    format = fields.String(metadata={"description": "rollguard, unleash-export or unleash-import"})
    flags = fields.Integer()
    features = fields.Integer()
    segments = fields.Integer()
    removed_features = fields.Integer()
    removed_segments = fields.Integer()
    report = fields.List(fields.Nested(LossSchema), metadata={"description": "what was not carried over"})


class UnleashExportQuerySchema(Schema):
    project = fields.String(load_default="default", validate=validate.Length(min=1, max=255))
    environment = fields.String(load_default="development", validate=validate.Length(min=1, max=255))


class UnleashExportSchema(Schema):
    document = fields.Dict(metadata={"description": "the body for Unleash 8's features-batch/import"})
    report = fields.List(fields.Nested(LossSchema), metadata={"description": "what was not carried over"})


class ExportSchema(Schema):
    version = fields.Integer()
    flags = fields.List(fields.Nested(FlagSchema))
    features = fields.List(fields.Dict())
    segments = fields.List(fields.Dict())


class ExposuresQuerySchema(Schema):
    flag = fields.String(validate=validate.Length(max=255))
    limit = fields.Integer(load_default=1000, validate=validate.Range(min=1, max=10_000))


class ExposureSchema(Schema):
    flag = fields.String()
    app_name = fields.String()
    bucket_start = fields.String(metadata={"format": "date-time"})
    bucket_end = fields.String(metadata={"format": "date-time"})
    yes = fields.Integer()
    no = fields.Integer()


class ExposureListSchema(Schema):
    exposures = fields.List(fields.Nested(ExposureSchema))


class ErrorBodySchema(Schema):
    code = fields.String()
    message = fields.String()
    details = fields.Raw(allow_none=True)


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema)

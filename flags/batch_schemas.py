"""The checks on Unleash 8's batch documents before `flags.from_unleash` converts them.

Only what the conversion relies on is checked; every other field is kept as
given (Unleash adds fields between releases). `ImportSchema` runs these when
the body it gets is a batch export or import document. `StrictBoolean` lives
here, below `flags.schemas`, which uses it too.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, fields, validate


class StrictBoolean(fields.Boolean):
    """A JSON true or false; marshmallow's Boolean would also take "yes", 0 or 1."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


#: Unleash names may hold any printable character (its specification tests use UTF-8 names), but no
#: control character: a name like "f\n" would be served to every SDK as given.
UNLEASH_NAME_RULES = [
    validate.Length(min=1, max=255),
    validate.Regexp(r"[^\x00-\x1f\x7f]*\Z", error="a name holds no control characters"),
]
_name = fields.String(required=True, validate=UNLEASH_NAME_RULES)


class _Lenient(Schema):
    class Meta:
        unknown = INCLUDE


class BatchFeatureSchema(_Lenient):
    name = _name
    archived = StrictBoolean(allow_none=True)


class BatchStrategySchema(_Lenient):
    name = _name
    featureName = _name
    parameters = fields.Dict(keys=fields.String(), load_default=dict)
    constraints = fields.List(fields.Dict(), load_default=list)
    variants = fields.List(fields.Dict(), load_default=list)
    segments = fields.List(fields.Integer(), load_default=list)
    disabled = StrictBoolean(allow_none=True)
    sortOrder = fields.Float()


class BatchEnvironmentSchema(_Lenient):
    name = _name
    featureName = fields.String()
    enabled = StrictBoolean(required=True)
    variants = fields.List(fields.Dict(), load_default=list)


class BatchSegmentSchema(_Lenient):
    id = fields.Integer(required=True)
    name = fields.String(load_default="")


class BatchContextFieldSchema(_Lenient):
    name = _name


class BatchDependencySchema(_Lenient):
    feature = _name
    dependencies = fields.List(fields.Dict(keys=fields.String()), required=True)


class BatchLinksSchema(_Lenient):
    feature = _name
    links = fields.List(fields.Dict(), load_default=list)


class BatchExportSchema(_Lenient):
    """The answer of `POST /api/admin/features-batch/export` (Unleash's exportResultSchema)."""

    features = fields.List(fields.Nested(BatchFeatureSchema), required=True)
    featureStrategies = fields.List(fields.Nested(BatchStrategySchema), required=True)
    featureEnvironments = fields.List(fields.Nested(BatchEnvironmentSchema), load_default=list)
    segments = fields.List(fields.Nested(BatchSegmentSchema), load_default=list)
    dependencies = fields.List(fields.Nested(BatchDependencySchema), load_default=list)
    featureTags = fields.List(fields.Dict(), load_default=list)
    contextFields = fields.List(fields.Nested(BatchContextFieldSchema), load_default=list)
    links = fields.List(fields.Nested(BatchLinksSchema), load_default=list)


class BatchImportSchema(_Lenient):
    """The body of `POST /api/admin/features-batch/import` (Unleash's importTogglesSchema)."""

    project = fields.String(required=True)
    environment = fields.String(required=True)
    data = fields.Nested(BatchExportSchema, required=True)

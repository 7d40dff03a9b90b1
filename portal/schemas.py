"""Validated request inputs of the portal's endpoints.

Views call `parse_body(Model)` and `query_int(...)`; invalid input becomes a
422 (400 for a body that is not JSON at all) with the problems listed in `details`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flags.jsontext import MAX_JSON_DEPTH, body_too_deep
from portal.errors import BadRequest, MalformedJson

Model = TypeVar("Model", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Submission(_Strict):
    """POST /api/exam/submit."""

    student_id: int = Field(ge=1)
    exam_id: int = Field(ge=1)
    score: int = Field(ge=0, le=100)


class BatchRequest(_Strict):
    """POST /api/exam/batch-attempts: either student ids (all their series) or explicit keys."""

    student_ids: list[int] | None = None
    keys: list[str] | None = None
    user_id: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_of(self) -> BatchRequest:
        if (self.student_ids is None) == (self.keys is None):
            raise ValueError("give exactly one of student_ids or keys")
        return self


class FaultRequest(_Strict):
    """POST /api/admin/fault."""

    error_rate: float = Field(ge=0.0, le=1.0)
    latency_ms: float = Field(default=0.0, ge=0.0, le=60_000.0)

    @model_validator(mode="before")
    @classmethod
    def _ints_are_numbers(cls, data: Any) -> Any:
        # Strict mode would refuse `0` for a float; JSON does not tell 0 from 0.0.
        if isinstance(data, dict):
            return {
                k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in data.items()
            }
        return data


def parse_body(model: type[Model]) -> Model:
    """Parse the JSON body into `model`, or raise BadRequest."""
    if body_too_deep(request.get_data(cache=True)):
        raise MalformedJson(
            f"the body is nested deeper than {MAX_JSON_DEPTH} levels", code="too_deeply_nested"
        )
    body = request.get_json(silent=True)
    if body is None:
        raise MalformedJson("the body must be JSON")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise BadRequest("the body is not valid", details=problems) from None


def query_value(name: str) -> str | None:
    """The first value of query parameter `name`, as `request.args.get(name)` gives it.

    A plain query string (ASCII, no escapes: what the pages are sent) is read in place:
    building `request.args` for the two or three integers a page reads cost it as much as
    its twelve cache reads. Any other query string goes through `request.args`.
    """
    query: str = request.environ.get("QUERY_STRING", "")
    if "%" in query or "+" in query or not query.isascii():
        return request.args.get(name)
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == name:
            return value
    return None


def query_int(name: str, *, minimum: int = 0, maximum: int | None = None, default: int | None = None) -> int:
    """Read an integer query parameter, or raise BadRequest."""
    raw = query_value(name)
    if raw is None:
        if default is not None:
            return default
        raise BadRequest(
            f"query parameter {name} is required", details=[{"field": name, "problem": "missing"}]
        )
    if not raw.isdigit() or int(raw) < minimum or (maximum is not None and int(raw) > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise BadRequest(
            f"query parameter {name} must be an integer {bound}",
            details=[{"field": name, "problem": f"got {raw[:40]!r}"}],
        )
    return int(raw)

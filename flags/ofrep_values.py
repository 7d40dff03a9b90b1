"""The typed OFREP value of a variant payload, for the payload-valued OFREP mount.

OFREP requests carry no type (the protocol's ADR 0003), and providers check the
JSON type of the value they get: the Python provider raises TYPE_MISMATCH when
it differs from the type asked for. One answer cannot be both a boolean and an
object, so `flags.ofrep` serves booleans under /ofrep/v1 and payloads under
/payloads/ofrep/v1, and a client picks by the base URL it gives its provider.
This module turns an Unleash variant payload into that value. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


class UnparsablePayload(ValueError):
    """A payload whose text does not parse as its declared type."""


def typed_value(payload: dict[str, Any]) -> Any:
    """The payload as a JSON value: `json` parsed, `number` as a number, `string` and `csv` as text."""
    kind, text = payload.get("type"), payload.get("value")
    if not isinstance(text, str):
        raise UnparsablePayload(f"payload value is {type(text).__name__}, not text")
    if kind == "json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise UnparsablePayload(f"json payload does not parse: {exc}") from exc
    if kind == "number":
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError as exc:
            raise UnparsablePayload(f"number payload {text!r} is not a number") from exc
    return text


def has_payloads(feature: dict[str, Any]) -> bool:
    """Whether any variant of the feature, in a strategy or on the feature, carries a payload."""
    variants: Iterable[dict[str, Any]] = [
        *(feature.get("variants") or []),
        *(v for strategy in feature.get("strategies") or [] for v in strategy.get("variants") or []),
    ]
    return any(variant.get("payload") for variant in variants)

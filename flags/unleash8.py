"""What moving features between Rollguard and Unleash 8 shares: the loss report and the flag shape.

`flags.from_unleash` reads Unleash 8's batch documents, `flags.to_unleash`
writes the one its `features-batch/import` accepts; both note with a `Loss`
each thing they cannot carry over, per feature, so that nothing is dropped
without a word. A feature that has exactly the shape Rollguard gives its flags
(`flags.unleash.feature_of`) comes back as a flag. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from flags.unleash import VARIANT_NAME

# The strategy types an Unleash 8.2 server knows without being told (GET /api/admin/strategies).
UNLEASH8_STRATEGIES = frozenset({"default", "flexibleRollout", "remoteAddress", "applicationHostname"})
# Older built-in strategies that the SDKs still evaluate and Unleash 8 no longer has.
LEGACY_STRATEGIES = frozenset(
    {"userWithId", "gradualRolloutUserId", "gradualRolloutSessionId", "gradualRolloutRandom"}
)
# The constraint operators of Unleash 8.2's constraintSchema.
UNLEASH8_OPERATORS = frozenset(
    {
        "NOT_IN", "IN", "STR_ENDS_WITH", "STR_STARTS_WITH", "STR_CONTAINS",
        "NUM_EQ", "NUM_GT", "NUM_GTE", "NUM_LT", "NUM_LTE", "DATE_AFTER", "DATE_BEFORE",
        "SEMVER_EQ", "SEMVER_GT", "SEMVER_LT", "SEMVER_GTE", "SEMVER_LTE", "REGEX",
    }
)  # fmt: skip
_KEY = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")


@dataclass(frozen=True)
class Loss:
    """One thing a conversion could not carry over; `left_out` when the whole feature stayed behind."""

    feature: str | None
    reason: str
    left_out: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"feature": self.feature, "left_out": self.left_out, "reason": self.reason}


def flag_fields(feature: dict[str, Any]) -> dict[str, Any] | None:
    """The Rollguard flag a client-API feature renders, or None when it is not a flag's shape."""
    strategies = feature.get("strategies") or []
    if (
        not _KEY.fullmatch(str(feature.get("name", "")))
        or len(strategies) != 1
        or feature.get("variants")
        or feature.get("dependencies")
        or feature.get("impressionData")
        or feature.get("type", "release") != "release"
    ):
        return None
    payload = _flag_payload(feature["name"], strategies[0])
    if payload is None:
        return None
    return {
        "key": feature["name"],
        "description": feature.get("description") or "",
        "enabled": bool(feature.get("enabled", True)),
        "rollout": int(strategies[0]["parameters"]["rollout"]),
        "payload": payload,
    }


def _flag_payload(name: str, strategy: dict[str, Any]) -> dict[str, Any] | None:
    parameters = strategy.get("parameters") or {}
    rollout = str(parameters.get("rollout", ""))
    variants = strategy.get("variants") or []
    if (
        strategy.get("name") != "flexibleRollout"
        or strategy.get("constraints")
        or strategy.get("segments")
        or parameters.get("stickiness") != "userId"
        or parameters.get("groupId") != name
        or not (rollout.isdigit() and 0 <= int(rollout) <= 100)
        or len(variants) != 1
        or variants[0].get("name") != VARIANT_NAME
    ):
        return None
    carried = variants[0].get("payload") or {}
    if carried.get("type") != "json":
        return None
    try:
        payload = json.loads(carried.get("value", ""))
    except (TypeError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None

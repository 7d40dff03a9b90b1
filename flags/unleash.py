"""The Unleash client API document: Rollguard flags rendered as Unleash features.

`flags.served` builds the document served on /api/client/features from the
flags and the imported Unleash features and segments; export reuses it. A flag
becomes one feature named by its key with a single `flexibleRollout` strategy
(sticky on userId, grouped by the key) whose strategy variant `config` carries
the flag's payload, so that the SDK's `get_variant` returns it to enabled users.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from flags.models import FlagRow

VARIANT_NAME = "config"
STATE_VERSION = 2


def feature_of(row: FlagRow) -> dict[str, Any]:
    """The Unleash feature for one Rollguard flag."""
    return {
        "name": row.key,
        "description": row.description,
        "type": "release",
        "project": "default",
        "enabled": row.enabled,
        "stale": False,
        "impressionData": False,
        "strategies": [
            {
                "name": "flexibleRollout",
                "constraints": [],
                "parameters": {"rollout": str(row.rollout), "stickiness": "userId", "groupId": row.key},
                "variants": [
                    {
                        "name": VARIANT_NAME,
                        "weight": 1000,
                        "weightType": "variable",
                        "stickiness": "userId",
                        "payload": {"type": "json", "value": json.dumps(row.payload, sort_keys=True)},
                    }
                ],
            }
        ],
        "variants": [],
    }


def client_state(
    flags: Iterable[FlagRow],
    imported: Iterable[dict[str, Any]],
    segments: Iterable[dict[str, Any]],
) -> dict[str, Any]:
    """The whole client API document, features sorted by name for a stable ETag."""
    features = [feature_of(row) for row in flags] + list(imported)
    features.sort(key=lambda feature: str(feature.get("name", "")))
    return {
        "version": STATE_VERSION,
        "features": features,
        "segments": sorted(segments, key=lambda segment: int(segment.get("id", 0))),
        "query": {},
    }

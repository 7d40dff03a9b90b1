"""Unleash delta events between two client documents, and their server-sent-event framing.

`flags.broadcast` diffs each new document against the previous one once per
change and `flags.streaming` frames the result for every open stream. The event
shapes are those of Unleash's delta API (client specification files 19 and 20):
a `hydration` event carries the whole document; `feature-updated`,
`feature-removed`, `segment-updated` and `segment-removed` carry one change each.
Pure functions: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

CONNECTED = "unleash-connected"
UPDATED = "unleash-updated"

Event = dict[str, Any]


def hydration(state: dict[str, Any], *, event_id: int) -> list[Event]:
    """The events that replace an SDK's whole state with `state`."""
    return [
        {
            "type": "hydration",
            "eventId": event_id,
            "features": state["features"],
            "segments": state["segments"],
        }
    ]


def _by_name(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(feature.get("name")): feature for feature in state["features"]}


def _by_id(state: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    return {segment.get("id"): segment for segment in state["segments"]}


def changes(before: dict[str, Any], after: dict[str, Any], *, event_id: int) -> list[Event]:
    """The delta events that turn `before` into `after`, in an order safe to apply one by one.

    Segments are updated before the features that may use them and removed
    after the features that used them are gone.
    """
    old_features, new_features = _by_name(before), _by_name(after)
    old_segments, new_segments = _by_id(before), _by_id(after)
    events: list[Event] = [
        {"type": "segment-updated", "eventId": event_id, "segment": segment}
        for segment_id, segment in new_segments.items()
        if old_segments.get(segment_id) != segment
    ]
    events += [
        {"type": "feature-updated", "eventId": event_id, "feature": feature}
        for name, feature in new_features.items()
        if old_features.get(name) != feature
    ]
    events += [
        {
            "type": "feature-removed",
            "eventId": event_id,
            "featureName": name,
            "project": feature.get("project", "default"),
        }
        for name, feature in old_features.items()
        if name not in new_features
    ]
    events += [
        {"type": "segment-removed", "eventId": event_id, "segmentId": segment_id}
        for segment_id in old_segments
        if segment_id not in new_segments
    ]
    return events


def frame(kind: str, events: list[Event], *, event_id: int) -> bytes:
    """One server-sent event of `kind` whose data is `{"events": [...]}`."""
    data = json.dumps({"events": events}, separators=(",", ":"), ensure_ascii=False)
    return f"event: {kind}\nid: {event_id}\ndata: {data}\n\n".encode()


HEARTBEAT = b": keep-alive\n\n"

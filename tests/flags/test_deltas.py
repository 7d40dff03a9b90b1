"""Delta events between two client documents, applied by the Unleash engine the SDKs embed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from yggdrasil_engine.engine import UnleashEngine

from flags import deltas


def _feature(name: str, *, enabled: bool = True, segments: list[int] | None = None) -> dict[str, Any]:
    strategy: dict[str, Any] = {"name": "default", "constraints": [], "parameters": {}}
    if segments:
        strategy["segments"] = segments
    return {"name": name, "enabled": enabled, "project": "default", "strategies": [strategy], "variants": []}


def _segment(segment_id: int, app: str) -> dict[str, Any]:
    constraint = {"contextName": "appName", "operator": "IN", "values": [app], "inverted": False}
    return {"id": segment_id, "name": f"s{segment_id}", "constraints": [constraint]}


def _state(features: list[dict[str, Any]], segments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"version": 2, "features": features, "segments": segments or [], "query": {}}


CASES = [
    pytest.param(_state([]), _state([_feature("a")]), ["feature-updated"], id="created"),
    pytest.param(
        _state([_feature("a")]), _state([_feature("a", enabled=False)]), ["feature-updated"], id="killed"
    ),
    pytest.param(
        _state([_feature("a"), _feature("b")]), _state([_feature("b")]), ["feature-removed"], id="deleted"
    ),
    pytest.param(_state([_feature("a")]), _state([_feature("a")]), [], id="unchanged"),
    pytest.param(
        _state([_feature("a")]),
        _state([_feature("a"), _feature("c", segments=[1])], [_segment(1, "portal")]),
        ["segment-updated", "feature-updated"],
        id="segment-before-its-feature",
    ),
    pytest.param(
        _state([_feature("c", segments=[1])], [_segment(1, "portal")]),
        _state([]),
        ["feature-removed", "segment-removed"],
        id="segment-after-its-feature",
    ),
]


@pytest.mark.parametrize(("before", "after", "kinds"), CASES)
def test_changes_name_each_difference_once_in_a_safe_order(
    before: dict[str, Any], after: dict[str, Any], kinds: list[str]
) -> None:
    events = deltas.changes(before, after, event_id=7)
    assert [event["type"] for event in events] == kinds
    assert all(event["eventId"] == 7 for event in events)


@pytest.mark.parametrize(("before", "after", "kinds"), CASES)
def test_engine_applying_the_delta_evaluates_like_the_new_document(
    before: dict[str, Any], after: dict[str, Any], kinds: list[str]
) -> None:
    streamed = UnleashEngine()
    streamed.take_state(json.dumps({"events": deltas.hydration(before, event_id=1)}))
    streamed.take_state(json.dumps({"events": deltas.changes(before, after, event_id=2)}))
    polled = UnleashEngine()
    polled.take_state(json.dumps(after))

    names = {feature["name"] for feature in before["features"] + after["features"]}
    for name in sorted(names):
        for context in ({}, {"appName": "portal"}, {"appName": "other"}):
            assert streamed.is_enabled(name, context) == polled.is_enabled(name, context), (name, context)


def test_frame_is_one_server_sent_event_on_a_single_data_line() -> None:
    state = _state([{**_feature("a"), "description": "two\nlines"}])
    frame = deltas.frame(deltas.CONNECTED, deltas.hydration(state, event_id=3), event_id=3).decode()
    lines = frame.split("\n")
    assert lines[:2] == ["event: unleash-connected", "id: 3"]
    assert lines[2].startswith("data: ") and frame.endswith("\n\n") and len(lines) == 5
    assert json.loads(lines[2][6:])["events"][0]["features"][0]["description"] == "two\nlines"

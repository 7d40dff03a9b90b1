"""The official Unleash client specification, evaluated by the official SDK against our server.

Each specification file is imported into one running flag service (replacing
the previous file's features), an `UnleashClient` is pointed at `<url>/api`
with a client token, and every `tests` and `variantTests` case is checked.

The delta API files (19, 20) describe their state as Unleash delta events. They
run through the SDK in streaming mode: the SDK connects to an empty service and
each event is replayed through the admin import API, so the SDK builds its
state from the hydration and `unleash-updated` deltas the service streams.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from UnleashClient import UnleashClient

from flags.client import FlagsClient
from tests.conftest import LiveFlagService, start_flag_service
from tests.support import missing, wait_until

# Unleash's client specification (Apache-2.0), vendored with its licence next to this file.
SPEC_DIR = Path(
    os.environ.get(
        "ROLLGUARD_UNLEASH_SPEC_DIR",
        Path(__file__).resolve().parent / "unleash-client-specification" / "specifications",
    )
)
DELTA_API = ("19-delta-api-hydration.json", "20-delta-api-events.json")


def _cases() -> list[Any]:
    if not SPEC_DIR.is_dir():
        return [pytest.param(None, None, None, id="specification-missing")]
    params: list[Any] = []
    for path in sorted(SPEC_DIR.glob("[0-9]*.json")):
        spec = json.loads(path.read_text())
        for kind in ("tests", "variantTests"):
            for case in spec.get(kind, []):
                case_id = f"{path.stem}/{kind}/{case['description']}"
                params.append(pytest.param(path.name, kind, case, id=case_id))
    return params


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFlagService]:
    service = start_flag_service(tmp_path_factory.mktemp("spec-flags"))
    yield service
    service.process.terminate()


@pytest.fixture(scope="module")
def sdk_for(
    service: LiveFlagService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], UnleashClient]]:
    """Return the SDK loaded with a specification file, importing the file on first use."""
    current: dict[str, Any] = {}

    def load(name: str) -> UnleashClient:
        if current.get("name") == name:
            return current["client"]
        if "client" in current:
            current.pop("client").destroy()
        state = json.loads((SPEC_DIR / name).read_text())["state"]
        cache_dir = tmp_path_factory.mktemp("sdk-cache")
        if name in DELTA_API:
            client = _streamed(service, name, state["events"], cache_dir)
        else:
            client = _polled(service, name, state, cache_dir)
        current.update(name=name, client=client)
        return client

    yield load
    if "client" in current:
        current["client"].destroy()


def _polled(service: LiveFlagService, name: str, state: dict[str, Any], cache_dir: Path) -> UnleashClient:
    with service.admin() as admin:
        admin.import_unleash(
            {
                "version": state.get("version", 1),
                "features": state["features"],
                "segments": state.get("segments", []),
            },
            replace=True,
        )
    client = service.sdk(f"spec-{name[:2]}", cache_dir, disable_registration=True)
    client.initialize_client()
    expected = {feature["name"] for feature in state["features"]}
    wait_until(lambda: expected <= set(client.feature_definitions()), what=f"{name} loaded by the SDK")
    return client


def _streamed(
    service: LiveFlagService, name: str, events: list[dict[str, Any]], cache_dir: Path
) -> UnleashClient:
    features: dict[str, dict[str, Any]] = {}
    segments: dict[int, dict[str, Any]] = {}
    with service.admin() as admin:
        admin.import_unleash({"version": 1, "features": [], "segments": []}, replace=True)
        # A leading hydration is in place before the SDK connects, so it arrives as unleash-connected.
        if events and events[0]["type"] == "hydration":
            _replay(admin, events[0], features, segments)
            events = events[1:]
        client = service.sdk(
            f"spec-{name[:2]}", cache_dir, disable_registration=True, experimental_mode={"type": "streaming"}
        )
        client.initialize_client()
        wait_until(
            lambda: client.is_initialized and set(client.feature_definitions()) == set(features),
            what=f"{name}: SDK hydrated through the stream",
        )
        for event in events:
            _replay(admin, event, features, segments)
            wait_until(
                partial(_has_exactly, client, set(features)),
                what=f"{name}: event {event['eventId']} ({event['type']}) streamed to the SDK",
            )
    return client


def _has_exactly(client: UnleashClient, names: set[str]) -> bool:
    return set(client.feature_definitions()) == names


def _replay(
    admin: FlagsClient,
    event: dict[str, Any],
    features: dict[str, dict[str, Any]],
    segments: dict[int, dict[str, Any]],
) -> None:
    """Make the change a delta event describes through the admin import API."""
    kind = event["type"]
    if kind == "hydration":
        features.clear()
        segments.clear()
        features.update((feature["name"], feature) for feature in event["features"])
        segments.update((segment["id"], segment) for segment in event["segments"])
    elif kind == "feature-updated":
        features[event["feature"]["name"]] = event["feature"]
    elif kind == "feature-removed":
        features.pop(event["featureName"], None)
    elif kind == "segment-updated":
        segments[event["segment"]["id"]] = event["segment"]
    elif kind == "segment-removed":
        segments.pop(event["segmentId"], None)
    else:
        raise AssertionError(f"unknown delta event type {kind!r}")
    admin.import_unleash(
        {"version": 1, "features": list(features.values()), "segments": list(segments.values())},
        replace=True,
    )


@pytest.mark.parametrize(("spec_file", "kind", "case"), _cases())
def test_specification_case(
    sdk_for: Callable[[str], UnleashClient], spec_file: str | None, kind: str | None, case: dict | None
) -> None:
    if spec_file is None or case is None:
        missing(f"Unleash client specification not found at {SPEC_DIR}")
        return
    client = sdk_for(spec_file)
    context = case.get("context", {})
    if kind == "tests":
        assert client.is_enabled(case["toggleName"], context) is case["expectedResult"]
    else:
        assert client.get_variant(case["toggleName"], context) == case["expectedResult"]

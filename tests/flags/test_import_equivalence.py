"""An imported Unleash export is evaluated by the official SDK exactly as the export itself.

The document is imported into a running flag service and read by one
`UnleashClient` through `/api/client/features`; a second `UnleashClient` is
bootstrapped from the same document with no server. Both must answer every
`is_enabled` and `get_variant` identically over a grid of contexts.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from UnleashClient import UnleashClient
from UnleashClient.cache import FileCache
from UnleashClient.utils import InstanceAllowType

from rollguard import free_port
from tests.conftest import LiveFlagService, start_flag_service
from tests.support import wait_until

SEGMENT_EU = 7


def _constraint(name: str, operator: str, **fields: Any) -> dict[str, Any]:
    return {"contextName": name, "operator": operator, "caseInsensitive": False, "inverted": False, **fields}


DOCUMENT: dict[str, Any] = {
    "version": 2,
    "features": [
        {
            "name": "ops.membership",
            "type": "release",
            "enabled": True,
            "stale": False,
            "impressionData": False,
            "strategies": [
                {
                    "name": "default",
                    "parameters": {},
                    "constraints": [
                        _constraint("country", "IN", values=["se", "no"]),
                        _constraint("plan", "NOT_IN", values=["free"]),
                    ],
                }
            ],
            "variants": [],
        },
        {
            "name": "ops.strings",
            "type": "release",
            "enabled": True,
            "stale": False,
            "impressionData": False,
            "strategies": [
                {
                    "name": "default",
                    "parameters": {},
                    "constraints": [
                        _constraint("email", "STR_CONTAINS", values=["@EXAMPLE.com"], caseInsensitive=True),
                    ],
                },
                {
                    "name": "default",
                    "parameters": {},
                    "constraints": [_constraint("country", "IN", values=["de"], inverted=True)],
                },
            ],
            "variants": [],
        },
        {
            "name": "ops.numbers-versions-dates",
            "type": "release",
            "enabled": True,
            "stale": False,
            "impressionData": False,
            "strategies": [
                {
                    "name": "default",
                    "parameters": {},
                    "constraints": [
                        _constraint("age", "NUM_GT", value="18"),
                        _constraint("appVersion", "SEMVER_GT", value="1.2.0"),
                        _constraint("currentTime", "DATE_AFTER", value="2024-06-01T00:00:00.000Z"),
                    ],
                }
            ],
            "variants": [],
        },
        {
            "name": "ops.app-environment",
            "type": "release",
            "enabled": True,
            "stale": False,
            "impressionData": False,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {
                        "rollout": "100",
                        "stickiness": "default",
                        "groupId": "ops.app-environment",
                    },
                    "constraints": [
                        _constraint("appName", "IN", values=["web"]),
                        _constraint("environment", "NOT_IN", values=["staging"]),
                    ],
                }
            ],
            "variants": [],
        },
        {
            "name": "segment.eu",
            "type": "release",
            "enabled": True,
            "stale": False,
            "impressionData": False,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "100", "stickiness": "default", "groupId": "segment.eu"},
                    "constraints": [],
                    "segments": [SEGMENT_EU],
                }
            ],
            "variants": [],
        },
        {
            "name": "strategy.variants",
            "type": "experiment",
            "enabled": True,
            "stale": False,
            "impressionData": False,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {
                        "rollout": "80",
                        "stickiness": "sessionId",
                        "groupId": "strategy.variants",
                    },
                    "constraints": [],
                    "variants": [
                        {
                            "name": "blue",
                            "weight": 300,
                            "weightType": "variable",
                            "stickiness": "sessionId",
                            "payload": {"type": "string", "value": "blue-button"},
                        },
                        {
                            "name": "green",
                            "weight": 700,
                            "weightType": "variable",
                            "stickiness": "sessionId",
                            "payload": {"type": "json", "value": '{"color": "green", "size": 2}'},
                        },
                    ],
                }
            ],
            "variants": [],
        },
        {
            "name": "feature.variants",
            "type": "experiment",
            "enabled": True,
            "stale": False,
            "impressionData": False,
            "strategies": [{"name": "default", "parameters": {}, "constraints": []}],
            "variants": [
                {
                    "name": "json-config",
                    "weight": 400,
                    "weightType": "variable",
                    "stickiness": "userId",
                    "payload": {"type": "json", "value": '{"limit": 10, "tags": ["a", "b"]}'},
                    "overrides": [],
                },
                {
                    "name": "text-config",
                    "weight": 600,
                    "weightType": "variable",
                    "stickiness": "userId",
                    "payload": {"type": "string", "value": "plain text"},
                    "overrides": [{"contextName": "userId", "values": ["user-3"]}],
                },
            ],
        },
        {
            "name": "rollout.37",
            "type": "release",
            "enabled": True,
            "stale": False,
            "impressionData": False,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "37", "stickiness": "userId", "groupId": "checkout-wave"},
                    "constraints": [],
                }
            ],
            "variants": [],
        },
        {
            "name": "disabled.feature",
            "type": "release",
            "enabled": False,
            "stale": False,
            "impressionData": False,
            "strategies": [{"name": "default", "parameters": {}, "constraints": []}],
            "variants": [
                {"name": "never", "weight": 1000, "weightType": "variable", "stickiness": "default"}
            ],
        },
    ],
    "segments": [
        {
            "id": SEGMENT_EU,
            "name": "eu-customers",
            "constraints": [_constraint("region", "IN", values=["eu", "eea"])],
        }
    ],
}
NAMES = [feature["name"] for feature in DOCUMENT["features"]]
VARIANTS = {feature["name"]: {v["name"] for v in feature["variants"]} for feature in DOCUMENT["features"]}
# Features whose variant the SDK draws at random when the context lacks this stickiness field.
RANDOM_WITHOUT = {"feature.variants": "userId"}


def _contexts() -> list[dict[str, Any]]:
    properties = [
        {},
        {"country": "se", "plan": "pro"},
        {"country": "no", "plan": "free"},
        {"country": "de", "email": "Someone@Example.COM"},
        {"country": "de", "email": "someone@example.net", "plan": "pro"},
        {"country": "us", "email": "someone@elsewhere.org", "region": "eu"},
        {"age": "21", "appVersion": "1.10.0", "region": "EEA"},
        {"age": "18", "appVersion": "1.2.0", "region": "us"},
        {"age": "40", "appVersion": "2.0.0-beta.1", "plan": "team"},
    ]
    apps = [("web", "production"), ("web", "staging"), ("batch", "production")]
    times = ["2024-01-01T00:00:00+00:00", "2025-03-01T12:00:00+00:00"]
    contexts: list[dict[str, Any]] = []
    for index, (props, (app, env), now) in enumerate(itertools.product(properties, apps, times)):
        for user in range(7):
            context: dict[str, Any] = {
                "appName": app,
                "environment": env,
                "currentTime": now,
                "properties": dict(props),
            }
            if user:
                context["userId"] = f"user-{user + 7 * index}"
            if user % 3 != 1:
                context["sessionId"] = f"session-{user * 31 + index}"
            contexts.append(context)
    return contexts


CONTEXTS = _contexts()


def _bootstrapped(document: dict[str, Any], cache_dir: Path) -> UnleashClient:
    """The official SDK fed the document directly; its URL has no server behind it."""
    cache = FileCache("import-bootstrap", directory=str(cache_dir))
    cache.bootstrap_from_dict(copy.deepcopy(document))
    return UnleashClient(
        url=f"http://127.0.0.1:{free_port()}/api",
        app_name="import-bootstrap",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFlagService]:
    service = start_flag_service(tmp_path_factory.mktemp("import-flags"))
    yield service
    service.process.terminate()


@pytest.fixture(scope="module")
def imported(service: LiveFlagService) -> dict[str, Any]:
    with service.admin("import-test") as admin:
        result = admin.import_unleash(DOCUMENT)
    assert result["features"] == len(DOCUMENT["features"])
    assert result["segments"] == len(DOCUMENT["segments"])
    return result


@pytest.fixture(scope="module")
def served_sdk(
    service: LiveFlagService, imported: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UnleashClient]:
    client = service.sdk("import-served", tmp_path_factory.mktemp("served-cache"), disable_registration=True)
    client.initialize_client()
    wait_until(lambda: set(NAMES) <= set(client.feature_definitions()), what="imported features in the SDK")
    yield client
    client.destroy()


@pytest.fixture(scope="module")
def direct_sdk(tmp_path_factory: pytest.TempPathFactory) -> UnleashClient:
    return _bootstrapped(DOCUMENT, tmp_path_factory.mktemp("direct-cache"))


def test_bootstrapped_client_really_evaluates_the_document(direct_sdk: UnleashClient) -> None:
    base = {"appName": "web", "environment": "production", "currentTime": "2025-03-01T12:00:00+00:00"}
    assert direct_sdk.is_enabled("ops.membership", {**base, "properties": {"country": "se", "plan": "pro"}})
    assert not direct_sdk.is_enabled(
        "ops.membership", {**base, "properties": {"country": "se", "plan": "free"}}
    )
    assert not direct_sdk.is_enabled("disabled.feature", base)
    assert direct_sdk.is_enabled("segment.eu", {**base, "properties": {"region": "eu"}})
    assert not direct_sdk.is_enabled("segment.eu", {**base, "properties": {"region": "us"}})
    variant = direct_sdk.get_variant("feature.variants", {**base, "userId": "user-3"})
    assert variant["name"] == "text-config"
    assert variant["payload"] == {"type": "string", "value": "plain text"}
    assert not direct_sdk.is_enabled("no.such.feature", base)


def _answer(sdk: UnleashClient, name: str, context: dict[str, Any]) -> tuple[Any, ...]:
    enabled = sdk.is_enabled(name, context)
    variant = sdk.get_variant(name, context)
    sticky = RANDOM_WITHOUT.get(name)
    if sticky and sticky not in context:
        # Unleash draws the variant at random without the stickiness field: compare what is fixed.
        return (enabled, variant["enabled"], variant["feature_enabled"], variant["name"] in VARIANTS[name])
    return (enabled, variant)


def test_grid_is_varied() -> None:
    assert len(CONTEXTS) >= 300


def test_served_and_bootstrapped_sdks_agree(served_sdk: UnleashClient, direct_sdk: UnleashClient) -> None:
    outcomes: dict[str, set[Any]] = {name: set() for name in NAMES}
    mismatches: list[str] = []
    for context in CONTEXTS:
        for name in NAMES:
            served = _answer(served_sdk, name, context)
            direct = _answer(direct_sdk, name, context)
            if served != direct:
                mismatches.append(f"{name} {context}: served {served} != document {direct}")
            outcomes[name].add((direct[0], direct_sdk.get_variant(name, context)["name"]))
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches[:10])
    # The grid must reach both sides of every enabled feature, and every variant.
    assert {enabled for enabled, _ in outcomes["feature.variants"]} == {True}
    for name in NAMES:
        if name not in ("disabled.feature", "feature.variants"):
            assert {True, False} <= {enabled for enabled, _ in outcomes[name]}, name
    assert outcomes["disabled.feature"] == {(False, "disabled")}
    assert {"blue", "green"} <= {variant for _, variant in outcomes["strategy.variants"]}
    assert {"json-config", "text-config"} <= {variant for _, variant in outcomes["feature.variants"]}


def _served_document(service: LiveFlagService) -> dict[str, Any]:
    response = httpx.get(
        f"{service.url}/api/client/features", headers={"Authorization": service.client_token}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _by_name(items: list[dict[str, Any]], key: str = "name") -> dict[Any, dict[str, Any]]:
    return {item[key]: item for item in items}


def test_export_round_trips(service: LiveFlagService, imported: dict[str, Any]) -> None:
    with service.admin("import-test") as admin:
        exported = admin.export_unleash()
    features = _by_name(exported["features"])
    assert set(NAMES) <= set(features)
    for feature in DOCUMENT["features"]:
        assert features[feature["name"]]["enabled"] == feature["enabled"]
        assert features[feature["name"]]["strategies"] == feature["strategies"]
        assert features[feature["name"]]["variants"] == feature["variants"]
    assert (
        _by_name(exported["segments"], "id")[SEGMENT_EU]["constraints"]
        == DOCUMENT["segments"][0]["constraints"]
    )

    before = _served_document(service)
    with service.admin("import-test") as admin:
        admin.import_unleash(exported, replace=True)
        assert admin.export_unleash()["features"] == exported["features"]
    after = _served_document(service)
    assert _by_name(after["features"]) == _by_name(before["features"])
    assert _by_name(after["segments"], "id") == _by_name(before["segments"], "id")

"""Two-way migration with Unleash 8, checked against documents recorded from unleash-server 8.2.0.

The documents in tests/flags/unleash8/ (README.md there says how they were
made): what Unleash exported of its own features and served to SDKs, the
document Rollguard exported that Unleash accepted, and what Unleash exported and
served after importing it. Decisions are compared by running the Unleash engine
on Rollguard's served document and on Unleash's, for the same contexts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from flask.testing import FlaskClient
from yggdrasil_engine.engine import UnleashEngine

from tests.flags.conftest import admin, create_flag, sdk

RECORDED = Path(__file__).parent / "unleash8"
LEFT_OUT_OF_EXPORT = {"rg-custom", "rg-office-cidr", "rg-office-child", "rg-segment"}


def _recorded(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


def _import(client: FlaskClient, document: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/admin/import", json=document, headers=admin())
    assert response.status_code == 200, response.json
    return dict(response.json or {})


def _losses(report: list[dict[str, Any]]) -> set[tuple[str | None, bool]]:
    return {(loss["feature"], loss["left_out"]) for loss in report}


def _contexts() -> list[dict[str, Any]]:
    users = ["alice", "bob", "carol", "dave", "erin"] + [f"student-{i}" for i in range(150)]
    return [
        {
            "userId": user,
            "sessionId": f"session-{i % 37}",
            "remoteAddress": ["10.1.2.3", "192.168.4.5", "172.16.0.1"][i % 3],
            "appName": ["portal-web", "reports"][i % 2],
            "properties": {"tenant": ["acme", "globex"][i % 2], "appVersion": ["2.0.0", "2.2.0"][i % 2]},
        }
        for i, user in enumerate(users)
    ]


def _decisions(document: dict[str, Any], names: set[str]) -> dict[str, list[Any]]:
    """Each feature's answer for every context: enabled, and the variant with its payload."""
    engine = UnleashEngine()
    engine.take_state(json.dumps(document))
    result: dict[str, list[Any]] = {}
    for name in sorted(names):
        answers = []
        for context in _contexts():
            variant = engine.check_variant(name, context).variant
            answers.append(
                (
                    bool(engine.check_enabled(name, context).is_enabled),
                    variant.name if variant else None,
                    variant.payload if variant else None,
                )
            )
        result[name] = answers
    return result


def _served(client: FlaskClient) -> dict[str, Any]:
    return dict(client.get("/api/client/features", headers=sdk()).json or {})


def test_export_is_the_document_unleash_8_accepted(client: FlaskClient) -> None:
    _import(client, _recorded("rollguard-state.json"))
    response = client.get("/api/admin/export/unleash", headers=admin())
    assert response.status_code == 200, response.json
    assert _recorded("rollguard-import-answer.json")["status"] == 200
    assert response.json["document"] == _recorded("rollguard-unleash-import.json")
    jsonschema.validate(response.json["document"], _recorded("unleash-import-schema.json"))
    left_out = {loss["feature"] for loss in response.json["report"] if loss["left_out"]}
    assert left_out == LEFT_OUT_OF_EXPORT
    assert _losses(response.json["report"]) >= {
        ("rg-optimization", False),  # its guardrails and auto_promote stay behind
        ("rg-userlist", False),  # userWithId written as default with a userId constraint
        ("rg-gradual", False),  # gradualRolloutSessionId written as flexibleRollout
        ("rg-variants", False),  # Unleash sorts feature variants by name
    }


def test_what_unleash_serves_after_importing_it_decides_as_rollguard_did(client: FlaskClient) -> None:
    _import(client, _recorded("rollguard-state.json"))
    carried = {f["name"] for f in _recorded("rollguard-unleash-import.json")["data"]["features"]}
    ours = _decisions(_served(client), carried)
    theirs = _decisions(_recorded("unleash-client-features-after-import.json"), carried)
    assert {name: ours[name] for name in carried - {"rg-variants"}} == {
        name: theirs[name] for name in carried - {"rg-variants"}
    }
    # What the report says: Unleash reorders feature variants, so some users get the other one.
    assert ours["rg-variants"] != theirs["rg-variants"]
    assert any(answer[0] for answer in ours["rg-gradual"]) and not all(
        answer[0] for answer in ours["rg-gradual"]
    )


def test_unleash_export_of_rollguard_flags_imports_back_as_the_same_flags(client: FlaskClient) -> None:
    result = _import(client, _recorded("unleash-export-after-import.json"))
    assert result["format"] == "unleash-export"
    flags = {flag["key"]: flag for flag in client.get("/api/admin/flags", headers=admin()).json["flags"]}
    for original in _recorded("rollguard-state.json")["flags"]:
        flag = flags[original["key"]]
        assert flag["enabled"] == original["enabled"]
        assert flag["rollout"] == original["rollout"]
        assert flag["payload"] == original.get("payload", {})
        assert flag["description"] == original.get("description", "")
    served = _served(client)
    names = {f["name"] for f in served["features"]}
    theirs = _recorded("unleash-client-features-after-import.json")
    assert _decisions(served, names) == _decisions(theirs, names)


def test_unleash_native_export_imports_with_a_report_per_feature(client: FlaskClient) -> None:
    result = _import(client, _recorded("unleash-export.json"))
    assert result["format"] == "unleash-export"
    assert (result["flags"], result["features"]) == (1, 6)
    # Unleash's own feature of a flag's shape becomes a flag.
    flag = client.get("/api/admin/flags/exam-attempts-optimization", headers=admin()).json
    assert (flag["enabled"], flag["rollout"], flag["payload"]) == (True, 50, {"ttl_s": 30})
    assert _losses(result["report"]) == {
        ("segment-pilot", True),  # the export names its segment without the constraints
        ("office-network", False),  # a disabled strategy dropped
        ("tenant-pricing", False),  # custom strategy examWindow, served as given
        ("tenant-pricing", False),  # its tag
        (None, False),  # context field definitions
    }
    served = _served(client)
    names = {f["name"] for f in served["features"]}
    assert "segment-pilot" not in names
    assert _decisions(served, names) == _decisions(_recorded("unleash-client-features.json"), names)


def test_unleash_import_document_is_accepted_too(client: FlaskClient, tmp_path: Path) -> None:
    _import(client, _recorded("rollguard-state.json"))
    before = _served(client)
    document = client.get("/api/admin/export/unleash", headers=admin()).json["document"]
    deleted = client.delete("/api/admin/flags/rg-optimization", headers=admin(**{"If-Match": "1"}))
    assert deleted.status_code == 204, deleted.json
    result = _import(client, document)
    assert result["format"] == "unleash-import"
    carried = {f["name"] for f in document["data"]["features"]} - {"rg-variants"}
    assert _decisions(_served(client), carried) == _decisions(before, carried)


def test_a_flag_is_not_overwritten_by_a_feature_of_another_shape(client: FlaskClient) -> None:
    create_flag(client, "exam-attempts-optimization", enabled=True, rollout=10)
    document = _recorded("unleash-export.json")
    strategy = next(
        s for s in document["featureStrategies"] if s["featureName"] == "exam-attempts-optimization"
    )
    strategy["constraints"] = [{"contextName": "userId", "operator": "IN", "values": ["alice"]}]
    result = _import(client, document)
    assert ("exam-attempts-optimization", True) in _losses(result["report"])
    flag = client.get("/api/admin/flags/exam-attempts-optimization", headers=admin()).json
    assert (flag["rollout"], flag["version"]) == (10, 1)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(
            {"features": [{"name": "x"}], "featureStrategies": [{"name": "default"}]}, id="no-feature-name"
        ),
        pytest.param({"project": "default", "data": {"features": []}}, id="import-without-environment"),
        pytest.param({"features": "x", "featureStrategies": []}, id="features-not-a-list"),
        pytest.param(
            {
                "features": [{"name": "x"}],
                "featureStrategies": [],
                "featureEnvironments": [{"name": "x", "enabled": "yes"}],
            },
            id="coerced-boolean",
        ),
        pytest.param(
            {"features": [], "featureStrategies": [], "contextFields": [{"legalValues": []}]},
            id="context-field-without-name",
        ),
        pytest.param(
            {
                "features": [],
                "featureStrategies": [],
                "dependencies": [{"feature": "a", "dependencies": [1]}],
            },
            id="dependency-not-an-object",
        ),
    ],
)
def test_malformed_batch_documents_are_refused(client: FlaskClient, document: dict[str, Any]) -> None:
    response = client.post("/api/admin/import", json=document, headers=admin())
    assert response.status_code == 422, response.json
    assert _served(client)["features"] == []


def test_a_flag_shaped_feature_that_fails_a_flags_checks_stays_an_unleash_feature(
    client: FlaskClient,
) -> None:
    document = _recorded("unleash-export.json")
    feature = next(f for f in document["features"] if f["name"] == "exam-attempts-optimization")
    feature["description"] = "x" * 2001
    result = _import(client, document)
    assert ("exam-attempts-optimization", False) in _losses(result["report"])
    assert client.get("/api/admin/flags/exam-attempts-optimization", headers=admin()).status_code == 404
    names = {f["name"] for f in _served(client)["features"]}
    assert "exam-attempts-optimization" in names

"""Record the Unleash 8 documents the migration tests compare against (run by hand).

Needs a fresh unleash-server 8 (empty database) and a personal access token of its admin:

    rollguard flags export --format unleash-import > /tmp/rollguard-unleash-import.json
    python -m tests.flags.unleash8.record --unleash http://127.0.0.1:4299 --token user:SECRET \
        --client-token '*:development.client' --rollguard-import /tmp/rollguard-unleash-import.json

It creates the features described in README.md through Unleash's admin API,
saves Unleash's export of them and the client document it serves, then posts
the Rollguard document (the flag service holding rollguard-state.json) to
`features-batch/import` and saves it, Unleash's answer,
its export of the imported features and its client document again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).parent
PROJECT = "default"
ENVIRONMENT = "development"
NATIVE = [
    "exam-attempts-optimization",
    "beta-banner",
    "office-network",
    "segment-pilot",
    "tenant-pricing",
    "search-v2",
    "search-v2-ranking",
    "legacy-reports",
]


def _feature(unleash: httpx.Client, name: str, *, kind: str = "release", **extra: Any) -> str:
    unleash.post(f"/api/admin/projects/{PROJECT}/features", json={"name": name, "type": kind, **extra})
    return f"/api/admin/projects/{PROJECT}/features/{name}/environments/{ENVIRONMENT}"


def _strategy(unleash: httpx.Client, feature: str, **strategy: Any) -> None:
    unleash.post(f"{feature}/strategies", json={"constraints": [], "parameters": {}, **strategy})


def seed(unleash: httpx.Client) -> None:
    """Create the native features: every shape the import must carry or report."""
    segment = unleash.post(
        "/api/admin/segments",
        json={
            "name": "pilot-schools",
            "constraints": [{"contextName": "school", "operator": "IN", "values": ["north", "south"]}],
        },
    ).json()["id"]
    unleash.post("/api/admin/context", json={"name": "tenant", "legalValues": [{"value": "acme"}]})
    unleash.post("/api/admin/strategies", json={"name": "examWindow", "parameters": []})

    flag = _feature(unleash, "exam-attempts-optimization", description="cache exam attempts")
    payload = json.dumps({"ttl_s": 30}, sort_keys=True)
    _strategy(
        unleash,
        flag,
        name="flexibleRollout",
        parameters={"rollout": "50", "stickiness": "userId", "groupId": "exam-attempts-optimization"},
        variants=[
            {
                "name": "config",
                "weight": 1000,
                "weightType": "variable",
                "stickiness": "userId",
                "payload": {"type": "json", "value": payload},
            }
        ],
    )
    unleash.post(f"{flag}/on")

    banner = _feature(unleash, "beta-banner", kind="experiment", impressionData=True)
    colours = [
        {
            "name": name,
            "weight": 500,
            "weightType": "variable",
            "stickiness": "default",
            "payload": {"type": "string", "value": value},
        }
        for name, value in (("blue", "#00f"), ("green", "#0f0"))
    ]
    _strategy(
        unleash,
        banner,
        name="default",
        constraints=[{"contextName": "userId", "operator": "IN", "values": ["alice", "bob"]}],
        variants=colours,
    )
    unleash.post(f"{banner}/on")

    office = _feature(unleash, "office-network", kind="permission")
    _strategy(unleash, office, name="remoteAddress", parameters={"IPs": "10.1.2.3, 192.168.0.0/16"})
    _strategy(unleash, office, name="applicationHostname", parameters={"hostNames": "exam-host-1"})
    _strategy(
        unleash,
        office,
        name="flexibleRollout",
        disabled=True,
        parameters={"rollout": "100", "stickiness": "default", "groupId": "office-network"},
    )
    unleash.post(f"{office}/on")

    pilot = _feature(unleash, "segment-pilot")
    _strategy(
        unleash,
        pilot,
        name="flexibleRollout",
        segments=[segment],
        parameters={"rollout": "100", "stickiness": "default", "groupId": "segment-pilot"},
    )
    unleash.post(f"{pilot}/on")

    pricing = _feature(unleash, "tenant-pricing", kind="operational")
    _strategy(
        unleash,
        pricing,
        name="flexibleRollout",
        parameters={"rollout": "100", "stickiness": "tenant", "groupId": "tenant-pricing"},
        constraints=[
            {"contextName": "tenant", "operator": "IN", "values": ["acme"]},
            {"contextName": "appVersion", "operator": "SEMVER_GTE", "values": [], "value": "2.1.0"},
        ],
    )
    _strategy(unleash, pricing, name="examWindow")
    unleash.post(f"{pricing}/on")
    unleash.post("/api/admin/features/tenant-pricing/tags", json={"type": "simple", "value": "billing"})

    search = _feature(unleash, "search-v2")
    _strategy(
        unleash,
        search,
        name="flexibleRollout",
        parameters={"rollout": "30", "stickiness": "sessionId", "groupId": "search"},
    )
    unleash.post(f"{search}/on")
    ranking = _feature(unleash, "search-v2-ranking")
    _strategy(unleash, ranking, name="default")
    unleash.post(
        f"/api/admin/projects/{PROJECT}/features/search-v2-ranking/dependencies",
        json={"feature": "search-v2", "enabled": True},
    )
    unleash.post(f"{ranking}/on")

    legacy = _feature(unleash, "legacy-reports", kind="kill-switch")
    _strategy(unleash, legacy, name="default")


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_error and response.request.url.path != "/api/admin/features-batch/import":
        response.read()
        raise SystemExit(
            f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
        )


def _save(name: str, document: Any) -> None:
    (HERE / name).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def _client_features(client: httpx.Client, names: list[str]) -> Any:
    """Unleash's client document once it serves every named feature (it refreshes it every second or so)."""
    deadline = time.monotonic() + 30
    while True:
        document = client.get("/api/client/features").json()
        if set(names) <= {feature["name"] for feature in document["features"]}:
            return document
        if time.monotonic() > deadline:
            raise SystemExit(f"Unleash does not serve {names} after 30 s")
        time.sleep(0.5)


def _export(unleash: httpx.Client, names: list[str]) -> Any:
    response = unleash.post(
        "/api/admin/features-batch/export", json={"environment": ENVIRONMENT, "features": names}
    )
    response.raise_for_status()
    return response.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unleash", required=True)
    parser.add_argument(
        "--token", required=True, help="a personal access token (admin tokens may not import)"
    )
    parser.add_argument(
        "--client-token", required=True, help="a client token for the development environment"
    )
    parser.add_argument("--rollguard-import", type=Path, required=True)
    args = parser.parse_args()
    unleash = httpx.Client(
        base_url=args.unleash,
        headers={"Authorization": args.token},
        timeout=30,
        event_hooks={"response": [_raise_for_status]},
    )
    client = httpx.Client(base_url=args.unleash, headers={"Authorization": args.client_token}, timeout=30)
    version = unleash.get("/api/admin/ui-config").json()["version"]
    seed(unleash)
    _save("unleash-export.json", _export(unleash, NATIVE))
    _save("unleash-client-features.json", _client_features(client, NATIVE))

    document = json.loads(args.rollguard_import.read_text())
    _save("rollguard-unleash-import.json", document)
    answer = unleash.post("/api/admin/features-batch/import", json=document)
    _save("rollguard-import-answer.json", {"status": answer.status_code, "body": answer.text})
    answer.raise_for_status()
    imported = [feature["name"] for feature in document["data"]["features"]]
    _save("unleash-export-after-import.json", _export(unleash, imported))
    _save("unleash-client-features-after-import.json", _client_features(client, imported))
    _save("versions.json", {"unleash-server": version})
    _save("unleash-import-schema.json", _import_schema(unleash.get("/docs/openapi.json").json()))


def _import_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """Unleash's importTogglesSchema with every schema it refers to, as one JSON Schema document."""
    schemas = openapi["components"]["schemas"]
    needed, pending = {}, ["importTogglesSchema"]
    while pending:
        name = pending.pop()
        if name not in needed:
            needed[name] = schemas[name]
            pending.extend(_refs(schemas[name]))
    return {"$ref": "#/components/schemas/importTogglesSchema", "components": {"schemas": needed}}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"].rsplit("/", 1)[-1]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


if __name__ == "__main__":
    main()

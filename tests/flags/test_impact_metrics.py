"""Impact metrics: stored from `POST /api/client/metrics` and its bulk form, served read-only to admins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from UnleashClient import UnleashClient
from UnleashClient.cache import FileCache
from UnleashClient.impact_metrics import MetricFlagContext
from UnleashClient.utils import InstanceAllowType

from flags.impact import Pruner
from flags.models import ImpactSampleRow, utcnow
from tests.conftest import LiveFlagService
from tests.flags.conftest import admin, create_flag, sdk
from tests.support import wait_until

FLAG_LABELS = {"appName": "node-portal", "environment": "default"}


def counter(name: str, *samples: tuple[dict[str, str], float]) -> dict:
    return {
        "name": name,
        "help": "requests",
        "type": "counter",
        "samples": [{"labels": labels, "value": value} for labels, value in samples],
    }


def histogram(name: str, labels: dict[str, str], buckets: list[tuple[float | str, int]]) -> dict:
    count = buckets[-1][1]
    return {
        "name": name,
        "help": "latency",
        "type": "histogram",
        "samples": [
            {
                "labels": labels,
                "count": count,
                "sum": 0.05 * count,
                "buckets": [{"le": le, "count": c} for le, c in buckets],
            }
        ],
    }


def node_body(*metrics: dict, bucket: bool = True) -> dict:
    """A body shaped like `unleash-client` 6.12's (the Python SDK sends `bucket: null` when it is empty)."""
    now = datetime.now(UTC).isoformat()
    return {
        "appName": "node-portal",
        "instanceId": "node-1",
        "connectionId": "c-1",
        "bucket": {"start": now, "stop": now, "toggles": {}} if bucket else None,
        "platformName": "node",
        "specVersion": "5.2.0",
        "impactMetrics": list(metrics),
    }


def read(client: FlaskClient, query: str = "") -> dict:
    response = client.get(f"/api/admin/impact-metrics{query}", headers=admin())
    assert response.status_code == 200, response.json
    return response.get_json()


def test_counters_gauges_and_histograms_are_stored_with_their_flag_labels(client: FlaskClient) -> None:
    optimized = {**FLAG_LABELS, "portal-cache": "config"}
    direct = {**FLAG_LABELS, "portal-cache": "disabled"}
    body = node_body(
        counter("http_requests_total", (optimized, 40), (direct, 38)),
        {"name": "heap_bytes", "help": "heap", "type": "gauge", "samples": [{"labels": {}, "value": 1.5e6}]},
        histogram("http_request_seconds", optimized, [(0.05, 30), (0.1, 38), ("+Inf", 40)]),
    )
    assert client.post("/api/client/metrics", json=body, headers=sdk()).status_code == 202

    answer = read(client)
    assert not answer["truncated"]
    assert answer["newest"] is not None
    by_key = {(s["name"], s["labels"].get("portal-cache")): s for s in answer["samples"]}
    assert by_key[("http_requests_total", "config")]["value"] == 40
    assert by_key[("http_requests_total", "disabled")]["value"] == 38
    assert by_key[("http_requests_total", "config")]["labels"] == optimized
    assert by_key[("heap_bytes", None)]["type"] == "gauge"
    assert by_key[("http_request_seconds", "config")]["buckets"] == [[0.05, 30], [0.1, 38], ["+Inf", 40]]
    assert {s["app_name"] for s in answer["samples"]} == {"node-portal"}
    assert {s["instance_id"] for s in answer["samples"]} == {"node-1"}

    only = read(client, "?name=heap_bytes")
    assert [s["name"] for s in only["samples"]] == ["heap_bytes"]


def test_an_sdk_with_only_impact_metrics_to_report_is_accepted(client: FlaskClient) -> None:
    body = node_body(counter("jobs_total", ({}, 3)), bucket=False)
    assert client.post("/api/client/metrics", json=body, headers=sdk()).status_code == 202
    assert [s["value"] for s in read(client)["samples"]] == [3]


def test_metrics_without_impact_metrics_store_exposures_only(client: FlaskClient) -> None:
    body = node_body()
    del body["impactMetrics"]
    assert client.post("/api/client/metrics", json=body, headers=sdk()).status_code == 202
    assert read(client)["samples"] == []


def test_the_bulk_form_of_unleash_edge_is_stored(client: FlaskClient) -> None:
    create_flag(client, "portal-cache", enabled=True, rollout=50)
    body = {
        "applications": [{"appName": "node-portal", "instanceId": "edge-1", "strategies": ["default"]}],
        "metrics": [
            {
                "featureName": "portal-cache",
                "appName": "node-portal",
                "environment": "default",
                "timestamp": datetime.now(UTC).isoformat(),
                "yes": 5,
                "no": 7,
            }
        ],
        "impactMetrics": [counter("http_requests_total", ({**FLAG_LABELS, "portal-cache": "config"}, 9))],
    }
    assert client.post("/api/client/metrics/bulk", json=body, headers=sdk()).status_code == 202

    [sample] = read(client)["samples"]
    assert (sample["value"], sample["app_name"]) == (9, "node-portal")
    exposures = client.get("/api/admin/exposures?flag=portal-cache", headers=admin()).json["exposures"]
    assert [(e["yes"], e["no"]) for e in exposures] == [(5, 7)]


def test_resolution_sums_increases_and_keeps_the_largest_gauge(client: FlaskClient) -> None:
    labels = {"portal-cache": "config"}
    for requests, heap in ((10, 2.0), (15, 1.0)):
        body = node_body(
            counter("http_requests_total", (labels, requests)),
            {"name": "heap_bytes", "help": "h", "type": "gauge", "samples": [{"labels": {}, "value": heap}]},
            histogram("http_request_seconds", labels, [(0.1, requests - 1), ("+Inf", requests)]),
        )
        assert client.post("/api/client/metrics", json=body, headers=sdk()).status_code == 202

    samples = read(client, "?resolution_s=86400")["samples"]
    by_name = {s["name"]: s for s in samples}
    assert len(samples) == 3
    assert by_name["http_requests_total"]["value"] == 25
    assert by_name["heap_bytes"]["value"] == 2.0
    assert by_name["http_request_seconds"]["count"] == 25
    assert by_name["http_request_seconds"]["buckets"] == [[0.1, 23], ["+Inf", 25]]


@pytest.mark.parametrize(
    "metric",
    [
        pytest.param({"name": "x", "help": "", "type": "summary", "samples": []}, id="unknown-type"),
        pytest.param(counter("x", ({}, -1)), id="negative-counter"),
        pytest.param(
            {"name": "x", "help": "", "type": "gauge", "samples": [{"value": "7"}]}, id="text-value"
        ),
        pytest.param(
            {"name": "x", "help": "", "type": "gauge", "samples": [{"value": True}]}, id="bool-value"
        ),
        pytest.param({"name": "x", "help": "", "type": "gauge", "samples": [{}]}, id="no-value"),
        pytest.param(counter("x", ({}, 1e300)), id="huge-value"),
        pytest.param(counter("no spaces", ({}, 1)), id="bad-name"),
        pytest.param(counter("x", ({"k": ["list"]}, 1)), id="label-not-text"),  # type: ignore[dict-item]
        pytest.param(counter("x", ({f"k{i}": "v" for i in range(40)}, 1)), id="too-many-labels"),
        pytest.param(histogram("x", {}, [(0.1, 1), (0.5, 2)]), id="histogram-without-inf"),
        pytest.param(
            {**histogram("x", {}, [("+Inf", 1)]), "samples": [{"count": 1}]}, id="histogram-no-buckets"
        ),
        pytest.param(counter("x", *[({}, 1)] * 1001), id="too-many-samples"),
    ],
)
def test_malformed_impact_metrics_are_refused_with_422(client: FlaskClient, metric: dict) -> None:
    response = client.post("/api/client/metrics", json=node_body(metric), headers=sdk())
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"]
    assert read(client)["samples"] == []


def test_impact_metrics_must_be_a_list(client: FlaskClient) -> None:
    body = {**node_body(), "impactMetrics": {"name": "x"}}
    assert client.post("/api/client/metrics", json=body, headers=sdk()).status_code == 422
    bulk = {"applications": [], "metrics": [], "impactMetrics": [counter("x", ({}, 1))] * 201}
    assert client.post("/api/client/metrics/bulk", json=bulk, headers=sdk()).status_code == 422


@pytest.mark.parametrize(
    "query",
    ["?limit=0", "?limit=abc", "?resolution_s=-1", "?since=yesterday", "?name=a%20b", "?app="],
)
def test_bad_queries_get_422(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/admin/impact-metrics{query}", headers=admin())
    assert response.status_code == 422, response.json


def test_reading_needs_an_admin_token_and_writing_a_token(client: FlaskClient) -> None:
    assert client.get("/api/admin/impact-metrics", headers=sdk()).status_code == 403
    assert client.get("/api/admin/impact-metrics").status_code == 401
    assert client.post("/api/client/metrics", json=node_body(counter("x", ({}, 1)))).status_code == 401


def test_limit_truncates_to_the_oldest_samples(client: FlaskClient) -> None:
    for value in (1, 2, 3):
        assert client.post("/api/client/metrics", json=node_body(counter("x", ({}, value))), headers=sdk())
    answer = read(client, "?limit=2")
    assert answer["truncated"]
    assert [s["value"] for s in answer["samples"]] == [1, 2]


def test_samples_older_than_the_retention_are_deleted(app: Flask, client: FlaskClient) -> None:
    for value in (1, 2):
        client.post("/api/client/metrics", json=node_body(counter("x", ({}, value))), headers=sdk())
    db = app.extensions["rollguard"].db
    with db.session() as session, session.begin():
        oldest = session.scalar(select(func.min(ImpactSampleRow.id)))
        session.execute(
            update(ImpactSampleRow)
            .where(ImpactSampleRow.id == oldest)
            .values(time=utcnow() - timedelta(seconds=120))
        )
    with db.session() as session, session.begin():
        Pruner(60, every_s=0).prune(session, now=utcnow())
    assert [s["value"] for s in read(client)["samples"]] == [2]


def test_since_and_until_select_by_arrival(client: FlaskClient) -> None:
    client.post("/api/client/metrics", json=node_body(counter("x", ({}, 1))), headers=sdk())
    newest = read(client)["newest"]
    assert read(client, f"?since={newest.replace('Z', '%2B00:00')}")["samples"] == []
    assert len(read(client, f"?until={newest.replace('Z', '%2B00:00')}")["samples"]) == 1


@pytest.mark.integration
@pytest.mark.slow
def test_the_python_sdk_sends_impact_metrics_labelled_with_the_flag_state(
    flag_service: LiveFlagService, tmp_path: Path
) -> None:
    with flag_service.admin("test") as client:
        client.create_flag("portal-cache", enabled=True, rollout=50)
    unleash = UnleashClient(
        url=f"{flag_service.url}/api",
        app_name="py-app",
        custom_headers={"Authorization": flag_service.client_token},
        refresh_interval=1,
        metrics_interval=1,
        cache=FileCache("py-app", directory=str(tmp_path)),
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
    )
    unleash.initialize_client()
    try:
        wait_until(
            lambda: any(unleash.is_enabled("portal-cache", {"userId": f"u-{i}"}) for i in range(20)),
            timeout=10,
            what="the SDK to load the flag",
        )
        unleash.impact_metrics.define_counter("http_requests_total", "requests")
        for user in range(40):
            context = MetricFlagContext(flag_names=["portal-cache"], context={"userId": f"u-{user}"})
            unleash.impact_metrics.increment_counter("http_requests_total", 1, context)
        with flag_service.admin() as client:
            wait_until(
                lambda: (
                    sum(s.value or 0 for s in client.impact_samples(["http_requests_total"]).samples) == 40
                ),
                timeout=15,
                what="the SDK to send its 40 requests",
            )
            samples = client.impact_samples(["http_requests_total"]).samples
    finally:
        unleash.destroy()
    states = {s.labels["portal-cache"] for s in samples}
    assert states <= {"config", "disabled"} and len(states) == 2
    assert {s.labels["appName"] for s in samples} == {"py-app"}

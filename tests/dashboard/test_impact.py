"""The flag page on the impact source: an SDK's impact metrics become the per-cohort charts."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from flags.client import Guardrail
from tests.dashboard.conftest import Dashboard, create_flag
from tests.dashboard.figures import drawn, page_figures, panels
from tests.dashboard.metrics import tick_controller
from tests.support import wait_until

NAMES = "requests=portal_requests_total,errors=portal_errors_total,latency=portal_request_seconds"


def send_impact_metrics(dashboard: Dashboard, *, optimized_errors: int) -> None:
    """What `unleash-client` posts for 100 requests per cohort, labelled with the flag's state."""
    service, key = dashboard.service, dashboard.key
    now = datetime.now(UTC).isoformat()

    def labels(state: str) -> dict[str, str]:
        return {"appName": "node-portal", "environment": "default", key: state}

    def histogram(state: str) -> dict:
        buckets = [{"le": 0.05, "count": 95}, {"le": 0.25, "count": 100}, {"le": "+Inf", "count": 100}]
        return {"labels": labels(state), "count": 100, "sum": 2.0, "buckets": buckets}

    body = {
        "appName": "node-portal",
        "instanceId": "node-1",
        "bucket": {"start": now, "stop": now, "toggles": {}},
        "impactMetrics": [
            {
                "name": "portal_requests_total",
                "help": "requests",
                "type": "counter",
                "samples": [
                    {"labels": labels("config"), "value": 100},
                    {"labels": labels("disabled"), "value": 100},
                ],
            },
            {
                "name": "portal_errors_total",
                "help": "errors",
                "type": "counter",
                "samples": [{"labels": labels("config"), "value": optimized_errors}],
            },
            {
                "name": "portal_request_seconds",
                "help": "latency",
                "type": "histogram",
                "samples": [histogram("config"), histogram("disabled")],
            },
        ],
    }
    response = httpx.post(
        f"{service.url}/api/client/metrics",
        json=body,
        headers={"Authorization": service.client_token},
        timeout=5,
    )
    assert response.status_code == 202, response.text


def test_flag_page_charts_impact_metrics_per_flag_state(dashboard: Dashboard) -> None:
    key = dashboard.key
    admin = dashboard.service.admin("setup")
    create_flag(
        admin,
        key,
        enabled=True,
        rollout=50,
        payload={},
        guardrails=[Guardrail("error_rate", "<=", 0.01, window_s=60, min_samples=20, kind="comparative")],
    )
    for _ in range(3):
        send_impact_metrics(dashboard, optimized_errors=10)
    # The 5-minute chart steps by 5 s and ends at the last whole step: wait for one after the sends.
    sent = datetime.now(UTC).timestamp()
    wait_until(lambda: datetime.now(UTC).timestamp() // 5 * 5 > sent, timeout=10, what="the next 5 s step")

    # The controller judges the flag on the same impact metrics: 10% errors against none, over 300 calls.
    [decision] = tick_controller(
        dashboard.control_database_url,
        admin,
        env={
            "ROLLGUARD_METRICS": "impact",
            "ROLLGUARD_FLAGS_URL": dashboard.service.url,
            "ROLLGUARD_ADMIN_TOKEN": dashboard.service.admin_token,
            "ROLLGUARD_IMPACT_METRIC_NAMES": NAMES,
        },
    )
    [verdict] = decision.verdicts
    assert verdict.verdict == "fail", verdict

    at = dashboard.open(metrics="impact", impact_metric_names=NAMES)
    at.query_params["flag"] = key
    at.query_params["range"] = "5m"
    at.run()
    assert not at.exception, at.exception
    rows = {row["flag"]: row for row in at.table[0].value.to_dict("records")}
    assert rows[key]["health"] == "▲ BREACHED"  # the controller's verdict, on the overview
    at.switch_page("views/flag.py").run()

    assert not at.exception, at.exception
    panel = next(str(c.value) for c in at.caption if str(c.value).startswith("Health:"))
    assert "judged" in panel and "error_rate[optimized-direct]<=0.01: 10% (300 samples) → fail" in panel, (
        panel
    )
    rows = panels(page_figures(at)[0])
    errors = rows["Error rate per cohort"]
    assert drawn(errors["optimized"]["y"]) and max(drawn(errors["optimized"]["y"])) == 0.1
    assert drawn(errors["direct"]["y"]) and max(drawn(errors["direct"]["y"])) == 0.0
    latency = rows["p95 latency per cohort"]
    assert drawn(latency["optimized"]["y"]) and drawn(latency["direct"]["y"])

"""The impact source: derived metrics and guardrail checks from the impact metrics SDKs sent.

A real flag service app (in process, reached through httpx's WSGI transport by
the real `FlagsClient`) receives SDK-shaped metric posts; the source reads them
back through the admin API, as the controller does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from flask import Flask

from control.checks import check_flag
from control.decisions import Outcome
from control.errors import PermanentError, TemporaryError
from control.impact_names import ImpactNames
from control.impact_source import ImpactSource
from control.metrics import open_source
from control.settings import ControlSettings
from flags.app import create_app
from flags.client import Flag, FlagsClient, Guardrail, RollbackPolicy
from flags.startup import prepare
from rollguard import free_port
from tests.flags.conftest import ADMIN, CLIENT, make_settings

FLAG = "portal-cache"
NAMES = ImpactNames.parse(
    "requests=http_requests_total,errors=http_errors_total,latency=http_request_seconds"
)
OPTIMIZED = {"appName": "node-portal", "environment": "default", FLAG: "config"}
DIRECT = {"appName": "node-portal", "environment": "default", FLAG: "disabled"}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    settings = make_settings(tmp_path)
    prepare(settings)
    app = create_app(settings)
    yield app
    app.extensions["rollguard"].db.dispose()


@pytest.fixture
def source(app: Flask) -> Iterator[ImpactSource]:
    flags = FlagsClient("http://flags.test", ADMIN, transport=httpx.WSGITransport(app=app))
    yield ImpactSource(flags, names=NAMES)
    flags.close()


def post(app: Flask, *metrics: dict, instance: str = "node-1") -> None:
    now = datetime.now(UTC).isoformat()
    body = {
        "appName": "node-portal",
        "instanceId": instance,
        "bucket": {"start": now, "stop": now, "toggles": {}},
        "impactMetrics": list(metrics),
    }
    response = app.test_client().post("/api/client/metrics", json=body, headers={"Authorization": CLIENT})
    assert response.status_code == 202, response.json


def counter(name: str, *samples: tuple[dict, float]) -> dict:
    return {
        "name": name,
        "help": name,
        "type": "counter",
        "samples": [{"labels": labels, "value": v} for labels, v in samples],
    }


def latency(labels: dict, buckets: list[tuple[float | str, int]]) -> dict:
    return {
        "name": "http_request_seconds",
        "help": "latency",
        "type": "histogram",
        "samples": [
            {
                "labels": labels,
                "count": buckets[-1][1],
                "sum": 1.0,
                "buckets": [{"le": le, "count": c} for le, c in buckets],
            }
        ],
    }


def traffic(app: Flask, *, optimized_errors: int) -> None:
    """Two sends of 100 requests per cohort; the optimized cohort fails `optimized_errors` of them."""
    for _ in range(2):
        post(
            app,
            counter("http_requests_total", (OPTIMIZED, 100), (DIRECT, 100)),
            counter("http_errors_total", (OPTIMIZED, optimized_errors // 2), (DIRECT, 1)),
            latency(OPTIMIZED, [(0.05, 90), (0.25, 98), (1.0, 100), ("+Inf", 100)]),
            latency(DIRECT, [(0.05, 99), (0.25, 100), (1.0, 100), ("+Inf", 100)]),
        )


def flag(*guardrails: Guardrail) -> Flag:
    return Flag(
        key=FLAG,
        enabled=True,
        rollout=50,
        stages=(10, 50, 100),
        stage_hold_s=60,
        auto_promote=True,
        guardrails=guardrails,
        rollback=RollbackPolicy(),
        state="rolling_out",
        payload={},
        version=1,
    )


def test_error_rate_and_p95_per_flag_state(app: Flask, source: ImpactSource) -> None:
    traffic(app, optimized_errors=30)
    optimized = source.window("error_rate", path="optimized", flag=FLAG)
    direct = source.window("error_rate", path="direct", flag=FLAG)
    both = source.window("error_rate", flag=FLAG)
    assert optimized.value == pytest.approx(0.15) and optimized.samples == 200
    assert direct.value == pytest.approx(0.01) and direct.samples == 200
    assert both.value == pytest.approx(32 / 400) and both.samples == 400
    # p95 interpolates in the bucket holding rank 190 of 200: 0.05 + 0.2 * (10 / 16)
    assert source.window("p95_latency_s", path="optimized", flag=FLAG).value == pytest.approx(0.175)
    assert source.latency_histogram(path="direct", flag=FLAG).count == 200
    assert source.window("request_rate", path="direct", flag=FLAG, window_s=50).value == pytest.approx(4.0)
    # The app records no backend calls: no call reduction, rather than a reduction of 100%.
    assert source.window("call_reduction", flag=FLAG).value is None


def test_cohorts_need_the_flag_label(app: Flask, source: ImpactSource) -> None:
    other = {"appName": "node-portal", "other-flag": "enabled"}
    post(app, counter("http_requests_total", (other, 50), (OPTIMIZED, 10)))
    assert source.window("request_rate", path="optimized", flag=FLAG, window_s=10).samples == 10
    assert source.window("request_rate", path="direct", flag="other-flag", window_s=10).samples == 0
    assert source.window("request_rate", path="optimized", flag="other-flag", window_s=10).samples == 50
    assert source.window("request_rate", path="optimized", window_s=10).value is None
    assert source.window("request_rate", window_s=10).samples == 60


def test_comparative_and_absolute_guardrails_judge_impact_metrics(app: Flask, source: ImpactSource) -> None:
    guardrails = (
        Guardrail("error_rate", "<=", 0.01, window_s=30, min_samples=50, kind="comparative"),
        Guardrail("p95_latency_s", "<=", 0.1, window_s=30, min_samples=50, kind="comparative"),
        Guardrail("error_rate", "<=", 0.05, window_s=30, min_samples=50, path="optimized"),
    )
    traffic(app, optimized_errors=0)
    healthy = check_flag(flag(*guardrails), source, now=datetime.now(UTC))
    assert [v.outcome for v in healthy] == [Outcome.PASS, Outcome.PASS, Outcome.PASS]

    traffic(app, optimized_errors=60)
    faulty = check_flag(flag(*guardrails), source, now=datetime.now(UTC))
    assert faulty[0].outcome is Outcome.FAIL
    assert faulty[2].outcome is Outcome.FAIL
    assert faulty[2].value == pytest.approx(60 / 400)


def test_gauges_sum_the_largest_value_of_each_instance(app: Flask, source: ImpactSource) -> None:
    def gauge(value: float) -> dict:
        return {"name": "optimizer_cache_bytes", "help": "b", "type": "gauge", "samples": [{"value": value}]}

    post(app, gauge(100), instance="a")
    post(app, gauge(300), instance="a")
    post(app, gauge(50), instance="b")
    window = source.window("cache_bytes", window_s=30)
    assert (window.value, window.samples) == (350, 2)


def test_series_points_agree_with_windows(app: Flask, source: ImpactSource) -> None:
    traffic(app, optimized_errors=20)
    end = datetime.now(UTC) + timedelta(seconds=5)
    points = source.series(
        "error_rate",
        path="optimized",
        flag=FLAG,
        start=end - timedelta(seconds=20),
        end=end,
        step_s=5,
        window_s=30,
    )
    assert points, "a point covering the sends"
    assert points[-1].value == pytest.approx(source.window("error_rate", path="optimized", flag=FLAG).value)


def test_data_time_is_the_newest_arrival(app: Flask, source: ImpactSource) -> None:
    assert source.data_time() is None
    before = datetime.now(UTC) - timedelta(seconds=1)
    post(app, counter("http_requests_total", (OPTIMIZED, 1)))
    newest = source.data_time()
    assert newest is not None and before <= newest <= datetime.now(UTC) + timedelta(seconds=1)


def test_an_unreachable_flag_service_is_a_temporary_error_and_no_data() -> None:
    flags = FlagsClient(f"http://127.0.0.1:{free_port()}", ADMIN, retries=0)
    source = ImpactSource(flags, names=NAMES)
    with pytest.raises(TemporaryError):
        source.window("error_rate", flag=FLAG)
    [verdict] = check_flag(flag(Guardrail("error_rate", "<=", 0.1)), source, now=datetime.now(UTC))
    assert verdict.outcome is Outcome.NO_DATA
    flags.close()


def test_settings_choose_the_impact_source_and_its_names() -> None:
    settings = ControlSettings.from_env(
        {
            "ROLLGUARD_METRICS": "impact",
            "ROLLGUARD_ADMIN_TOKEN": ADMIN,
            "ROLLGUARD_IMPACT_METRIC_NAMES": "requests=http_requests_total, latency=http_request_seconds",
        }
    )
    source = open_source(settings)
    assert isinstance(source, ImpactSource)
    assert source.names.requests == "http_requests_total"
    assert source.names.errors == "optimizer_errors_total"
    assert source.names.inputs("p95_latency_s") == ("http_request_seconds",)


@pytest.mark.parametrize("text", ["requests", "speed=x", "requests=", "requests=a,errors"])
def test_malformed_names_are_refused(text: str) -> None:
    with pytest.raises(PermanentError):
        ImpactNames.parse(text)


def test_call_reduction_and_cache_hit_rate_from_the_contract_names(app: Flask, source: ImpactSource) -> None:
    post(
        app,
        counter("http_requests_total", (OPTIMIZED, 100), (DIRECT, 100)),
        counter("optimizer_backend_calls_total", (OPTIMIZED, 20), (DIRECT, 100)),
        counter("optimizer_cache_hits_total", ({}, 80)),
        counter("optimizer_cache_misses_total", ({}, 20)),
    )
    assert source.window("call_reduction", path="optimized", flag=FLAG).value == pytest.approx(0.8)
    assert source.window("call_reduction", flag=FLAG).value == pytest.approx(0.4)
    assert source.window("cache_hit_rate", flag=FLAG).value == pytest.approx(0.8)
    assert source.window("breaker_bypass_rate", flag=FLAG).value == 0.0

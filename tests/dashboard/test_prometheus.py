"""The dashboard reading a real Prometheus through the controller's Prometheus source."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard import data
from dashboard.plots import BASE_STEP_S
from tests.control.prometheus import LivePrometheus, start_prometheus
from tests.dashboard.conftest import FN, Dashboard, create_flag
from tests.dashboard.figures import drawn, page_figures, panels
from tests.dashboard.metrics import MetricsTarget, tick_controller
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def busy_target() -> Iterator[MetricsTarget]:
    """A metrics target that keeps receiving traffic until the test ends."""
    target = MetricsTarget(FN)
    stop = threading.Event()

    def serve_traffic() -> None:
        while not stop.wait(0.2):
            target.traffic(calls=10, error_fraction=0.0, latency_s=0.03)

    thread = threading.Thread(target=serve_traffic, daemon=True)
    thread.start()
    yield target
    stop.set()
    thread.join(timeout=5)
    target.stop()


@pytest.fixture
def prometheus(busy_target: MetricsTarget, tmp_path: Path) -> Iterator[LivePrometheus]:
    live = start_prometheus(tmp_path, [busy_target.url], scrape_interval_s=1)
    yield live
    live.process.terminate()


def test_flag_page_charts_come_from_prometheus(dashboard: Dashboard, prometheus: LivePrometheus) -> None:
    key = dashboard.key
    create_flag(dashboard.service.admin("setup"), key, enabled=True)
    # The page's newest point lies at now floored to its 5 s step; that instant must already see
    # enough scrapes for an increase() over the window, not only the present one.
    wait_until(
        lambda: prometheus.has_samples(
            'count_over_time(optimizer_requests_total{path="optimized"}[1m])',
            4,
            at=data.window_end(BASE_STEP_S).timestamp(),
        ),
        timeout=60,
        what="Prometheus to hold a few scrapes before the page's newest point",
    )

    # The controller judges the flag on the same Prometheus, on the traffic since the flag's creation.
    admin = dashboard.service.admin("setup")
    on_prometheus = {"ROLLGUARD_METRICS": "prometheus", "ROLLGUARD_PROMETHEUS_URL": prometheus.url}

    def errors_judged_passing() -> bool:
        decisions = tick_controller(dashboard.control_database_url, admin, env=on_prometheus)
        judged = {v.guardrail: v.verdict for d in decisions for v in d.verdicts}
        return judged.get("error_rate[optimized]<=0.01") == "pass"

    wait_until(errors_judged_passing, timeout=60, what="the controller to judge the error rate on Prometheus")

    at = dashboard.open(metrics="prometheus", prometheus_url=prometheus.url)
    at.query_params["flag"] = key
    at.run()
    at.switch_page("views/flag.py").run()

    assert not at.exception
    assert "metric source is unavailable" not in "\n".join(str(w.value) for w in at.warning)
    rows = panels(page_figures(at)[0])
    optimized = drawn(rows["Error rate per cohort"]["optimized"]["y"])
    assert optimized and max(optimized) == 0.0
    assert drawn(rows["Call reduction"]["call reduction"]["y"])[-1] == pytest.approx(0.4, abs=0.05)
    health = next(str(c.value) for c in at.caption if str(c.value).startswith("Health"))
    assert "judged" in health and "by the controller" in health
    assert "error_rate[optimized]<=0.01: 0% (" in health and "samples) → pass" in health

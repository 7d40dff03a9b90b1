"""The real chain: Prometheus -> Alertmanager -> `rollguard alerts serve` -> flag service.

Every component is the real binary or our real server on free loopback ports,
with temporary configuration and data; Alertmanager's configuration is
deploy/alertmanager.yml with only the receiver's address, the token file and
the grouping delays changed.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from alerts.rules import RuleOptions, build_rules, to_yaml
from flags.client import Guardrail
from rollguard import ROLLGUARD, free_port
from tests.alerts.conftest import FN, admin, new_flag
from tests.conftest import LiveFlagService
from tests.control.prometheus import serve_prometheus
from tests.support import REPO, require_binary, start_process, wait_until

pytestmark = pytest.mark.integration

DEPLOY = REPO / "deploy"


def test_deploy_configs_pass_promtool_and_amtool() -> None:
    promtool = require_binary("promtool")
    amtool = require_binary("amtool")

    prometheus = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    alertmanager = subprocess.run(
        [amtool, "check-config", str(DEPLOY / "alertmanager.yml")], capture_output=True, text=True, timeout=60
    )

    assert prometheus.returncode == 0, prometheus.stdout + prometheus.stderr
    assert "rule files found" in prometheus.stdout + prometheus.stderr
    assert alertmanager.returncode == 0, alertmanager.stdout + alertmanager.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        pytest.param(["action=rollback", "flag=opt"], "rollguard-rollback", id="rollback"),
        pytest.param(["flag=opt", "severity=page"], "default", id="no-action"),
        pytest.param(["action=rollback"], "default", id="no-flag"),
        pytest.param(["action=notify", "flag=opt"], "default", id="other-action"),
    ],
)
def test_alertmanager_routes_only_rollback_alerts_to_the_receiver(labels: list[str], receiver: str) -> None:
    amtool = require_binary("amtool")

    route = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={DEPLOY / 'alertmanager.yml'}", *labels],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert route.returncode == 0, route.stderr
    assert route.stdout.strip() == receiver


@dataclass
class Chain:
    receiver_url: str
    token: str
    alertmanager_url: str

    def deliveries(self, **params: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.receiver_url}/alertmanager/deliveries",
            params=params,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=5,
        )
        response.raise_for_status()
        return list(response.json()["deliveries"])


def _alertmanager_config(receiver_url: str, token_file: Path) -> dict[str, Any]:
    config = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text())
    (route,) = [r for r in config["route"]["routes"] if r["receiver"] == "rollguard-rollback"]
    route.update(group_wait="1s", group_interval="1s")
    (receiver,) = [r for r in config["receivers"] if r["name"] == "rollguard-rollback"]
    webhook = receiver["webhook_configs"][0]
    webhook["url"] = f"{receiver_url}/alertmanager/webhook"
    webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    return dict(config)


@pytest.fixture
def chain(tmp_path: Path, flags_live: LiveFlagService) -> Iterator[Chain]:
    """`rollguard alerts serve` (gunicorn) and Alertmanager routed to it."""
    alertmanager = require_binary("prometheus-alertmanager")
    token = secrets.token_hex(16)
    token_file = tmp_path / "alerts.token"
    token_file.write_text(token + "\n")
    receiver_port = free_port()
    receiver_url = f"http://127.0.0.1:{receiver_port}"
    receiver = start_process(
        [*ROLLGUARD, "alerts", "serve", "--host", "127.0.0.1", "--port", str(receiver_port)],
        ready_url=f"{receiver_url}/healthz",
        log_path=tmp_path / "receiver.log",
        env={
            "ROLLGUARD_FLAGS_URL": flags_live.url,
            "ROLLGUARD_ADMIN_TOKEN": flags_live.admin_token,
            "ROLLGUARD_ALERTS_TOKEN_FILE": str(token_file),
            "ROLLGUARD_ALERTS_DATABASE_URL": f"sqlite:///{tmp_path / 'alerts.db'}",
        },
    )
    am_port = free_port()
    am_config = tmp_path / "alertmanager.yml"
    am_config.write_text(yaml.safe_dump(_alertmanager_config(receiver_url, token_file)))
    am_url = f"http://127.0.0.1:{am_port}"
    try:
        am = start_process(
            [
                alertmanager,
                f"--config.file={am_config}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            ready_url=f"{am_url}/-/ready",
            log_path=tmp_path / "alertmanager.log",
        )
    except BaseException:
        receiver.stop()
        raise
    yield Chain(receiver_url, token, am_url)
    am.stop()
    receiver.stop()


def _kills(flags: LiveFlagService, key: str) -> list[Any]:
    with admin(flags) as client:
        return [e for e in client.events(flag=key) if e.action == "kill"]


def _post_alerts(chain: Chain, alerts: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{chain.alertmanager_url}/api/v2/alerts", json=alerts, timeout=5)
    assert response.status_code == 200, response.text


def test_alert_posted_to_alertmanager_rolls_flag_back(chain: Chain, flags_live: LiveFlagService) -> None:
    flag = new_flag(flags_live)
    alert = {
        "labels": {
            "alertname": "RollguardErrorBudgetBurn",
            "flag": flag.key,
            "action": "rollback",
            "severity": "page",
        },
        "annotations": {"summary": "optimized path burns its error budget 50x", "value": "0.5"},
        "startsAt": datetime.now(UTC).isoformat(),
        "generatorURL": "http://127.0.0.1:9090/graph",
    }

    _post_alerts(chain, [alert])

    wait_until(
        lambda: len(_kills(flags_live, flag.key)) == 1, timeout=30, what="the flag killed by the alert"
    )
    with admin(flags_live) as client:
        assert client.get_flag(flag.key).enabled is False
    (kill,) = _kills(flags_live, flag.key)
    assert kill.actor == "alertmanager:RollguardErrorBudgetBurn"
    assert kill.reason is not None and "burns its error budget 50x" in kill.reason

    # Alertmanager reports the alert resolved; the receiver records it and leaves the flag off.
    _post_alerts(chain, [{**alert, "endsAt": datetime.now(UTC).isoformat()}])

    wait_until(
        lambda: any(d["status"] == "resolved" for d in chain.deliveries(flag=flag.key)),
        timeout=30,
        what="the resolved notification",
    )
    actions = [d["action"] for d in chain.deliveries(flag=flag.key)]
    assert actions[0] == "resolved"
    assert "killed" in actions
    assert set(actions) <= {"killed", "duplicate", "resolved"}
    with admin(flags_live) as client:
        assert client.get_flag(flag.key).enabled is False
    assert len(_kills(flags_live, flag.key)) == 1


# Prometheus evaluating generated rules


class _FailingPortal(Collector):
    """A scrape target whose optimized path fails half its calls, growing with time."""

    def __init__(self) -> None:
        self._started = time.monotonic()

    def collect(self) -> Iterable[Metric]:
        elapsed = time.monotonic() - self._started
        for name, per_second in (("optimizer_requests", 100.0), ("optimizer_errors", 50.0)):
            family = CounterMetricFamily(name, name, labels=["fn", "path"])
            family.add_metric([FN, "optimized"], per_second * elapsed)
            family.add_metric([FN, "direct"], 100.0 * elapsed if name == "optimizer_requests" else 0.0)
            yield family


@pytest.fixture
def failing_portal() -> Iterator[str]:
    registry = CollectorRegistry()
    registry.register(_FailingPortal())
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield f"127.0.0.1:{port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_prometheus_burn_rate_alert_rolls_flag_back(
    chain: Chain, flags_live: LiveFlagService, failing_portal: str, tmp_path: Path
) -> None:
    slo = Guardrail("error_rate", "<", 0.01, window_s=60, min_samples=50, path="optimized")
    flag = new_flag(flags_live, guardrails=(slo,))
    with admin(flags_live) as client:
        flags = [client.get_flag(flag.key)]
    rules = tmp_path / "rules.yml"
    rules.write_text(to_yaml(build_rules(flags, RuleOptions())))
    am_target = chain.alertmanager_url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am_target]}]}]},
        "scrape_configs": [{"job_name": "portal", "static_configs": [{"targets": [failing_portal]}]}],
    }
    server = serve_prometheus(tmp_path, config)
    try:
        wait_until(
            lambda: len(_kills(flags_live, flag.key)) == 1,
            timeout=90,
            what=f"Prometheus firing the burn-rate alert for {flag.key}",
        )
    finally:
        server.stop()

    (kill,) = _kills(flags_live, flag.key)
    assert kill.actor == "alertmanager:RollguardErrorBudgetBurn"
    assert kill.reason is not None and f"Flag {flag.key}" in kill.reason
    with admin(flags_live) as client:
        assert client.get_flag(flag.key).enabled is False

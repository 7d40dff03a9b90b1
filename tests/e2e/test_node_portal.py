"""A Node.js app guarded end to end through impact metrics, with no Prometheus and no scraping.

The example `examples/node-portal` (plain `node:http`, the official `unleash-client`
recording impact metrics per flag state) runs against a real flag service under
steady traffic from its `load.js`. The controller runs as `rollguard control run
--metrics impact`: it promotes the flag 10 -> 50 on healthy impact metrics, and,
after the fault switch breaks the optimized path, rolls the flag back with the
reason in the audit log. Nothing is timed: only what happened is asserted.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flags.client import Guardrail, RollbackPolicy
from rollguard import ROLLGUARD, Child, free_port, stop_children
from tests.conftest import LiveFlagService
from tests.support import REPO, missing, start_process, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = REPO / "examples" / "node-portal"
FLAG = "node-portal-cache"
IMPACT_NAMES = "requests=portal_requests_total,errors=portal_errors_total,latency=portal_request_seconds"


@pytest.fixture(scope="session")
def node_portal() -> Path:
    """The example with its locked dependencies installed (from npm's cache when it holds them)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing("Node.js and npm are needed for the Node portal example")
    installed = EXAMPLE / "node_modules" / ".package-lock.json"
    lock = EXAMPLE / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            ["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund", "--silent"],
            cwd=EXAMPLE,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            missing(f"npm ci failed in {EXAMPLE}: {done.stderr[-500:]}")
    return EXAMPLE


@pytest.fixture
def started() -> Iterator[list[Child]]:
    """The test's background processes (controller, load), stopped together at the end."""
    processes: list[Child] = []
    yield processes
    stop_children(processes, grace_s=15)


def test_node_portal_is_promoted_on_impact_metrics_and_rolled_back_on_a_fault(
    tmp_path: Path, flag_service: LiveFlagService, node_portal: Path, started: list[Child]
) -> None:
    with flag_service.admin("operator") as admin:
        admin.create_flag(
            FLAG,
            enabled=True,
            rollout=10,
            stages=[10, 50],
            stage_hold_s=4,
            auto_promote=True,
            state="rolling_out",
            guardrails=[
                Guardrail("error_rate", "<=", 0.01, window_s=5, min_samples=20, kind="comparative"),
                Guardrail("p95_latency_s", "<=", 0.1, window_s=5, min_samples=20, kind="comparative"),
            ],
            rollback=RollbackPolicy(consecutive_failures=2, on_no_data="hold"),
        )
    port, fault_token = free_port(), "fault-" + secrets.token_hex(8)
    portal_url = f"http://127.0.0.1:{port}"
    portal = start_process(
        ["node", str(node_portal / "server.js")],
        ready_url=f"{portal_url}/healthz",
        log_path=tmp_path / "node-portal.log",
        env={
            "UNLEASH_URL": f"{flag_service.url}/api",
            "UNLEASH_TOKEN": flag_service.client_token,
            "FLAG": FLAG,
            "PORT": str(port),
            "PORTAL_ADMIN_TOKEN": fault_token,
        },
    )
    started.append(
        start_process(
            ["node", str(node_portal / "load.js")],
            log_path=tmp_path / "load.log",
            env={"TARGET": portal_url, "USERS": "6", "DURATION_S": "0"},
            cwd=node_portal,
        )
    )
    started.append(
        start_process(
            [*ROLLGUARD, "control", "run", "--metrics", "impact"],
            log_path=tmp_path / "controller.log",
            env={
                "ROLLGUARD_FLAGS_URL": flag_service.url,
                "ROLLGUARD_ADMIN_TOKEN": flag_service.admin_token,
                "ROLLGUARD_CONTROL_DATABASE_URL": f"sqlite:///{tmp_path / 'control.db'}",
                "ROLLGUARD_IMPACT_METRIC_NAMES": IMPACT_NAMES,
            },
        )
    )
    try:
        with flag_service.admin("test") as admin:
            wait_until(lambda: admin.get_flag(FLAG).rollout == 50, timeout=60, what="the promotion to 50%")
            # Healthy at the last stage: the rollout completes and stays guarded.
            wait_until(lambda: admin.get_flag(FLAG).state == "complete", timeout=60, what="completion")
            assert admin.get_flag(FLAG).enabled

            fault = httpx.post(
                f"{portal_url}/api/admin/fault",
                json={"error_rate": 0.5},
                headers={"Authorization": fault_token},
                timeout=5,
            )
            assert fault.status_code == 200, fault.text
            wait_until(lambda: not admin.get_flag(FLAG).enabled, timeout=60, what="the rollback")
            events = admin.events(flag=FLAG)
    finally:
        portal.stop()
    rollouts = [
        ((e.before or {}).get("rollout"), (e.after or {}).get("rollout"))
        for e in events
        if e.actor == "controller"
    ]
    assert (10, 50) in rollouts
    [kill] = [e for e in events if e.action == "kill"]
    assert kill.actor == "controller"
    assert kill.reason and "error_rate[optimized-direct]" in kill.reason, kill.reason

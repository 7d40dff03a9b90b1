"""End to end with the real portal: a fault on the optimized path is rolled back, healthy traffic is not.

Real flag service, real portal (gunicorn subprocess) gated by the flag through
the Unleash SDK, real traffic from `rollguard traffic run`, and the controller
as `rollguard control run` on the embedded source. Kept short: windows of
10 s, checks every second.
"""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import datetime

import pytest

from control.embedded import EmbeddedSource
from control.store import ControlStore
from flags.client import Guardrail, RollbackPolicy
from tests.control.portal import Traffic, start_portal
from tests.support import REPO, ROLLGUARD, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "exam-attempts-optimization"
FN = "get_all_exam_attempts"


def create_flag(flag_service, *, rollout: int, guardrails=()) -> None:
    with flag_service.admin("operator") as admin:
        admin.create_flag(
            KEY,
            enabled=True,
            rollout=rollout,
            state="rolling_out",
            stage_hold_s=3600,
            auto_promote=False,
            guardrails=list(guardrails),
            rollback=RollbackPolicy(2, "hold"),
            payload={"fn": FN},
        )


def test_fault_on_the_optimized_path_is_rolled_back_and_healthy_traffic_is_not(tmp_path, flag_service):
    guardrails = [
        Guardrail("error_rate", "<=", 0.05, window_s=10, min_samples=20, path="optimized"),
        Guardrail("error_rate", "<=", 0.02, window_s=10, min_samples=20, kind="comparative"),
        Guardrail("p95_latency_s", "<=", 1.0, window_s=10, min_samples=20, path="optimized"),
    ]
    create_flag(flag_service, rollout=10, guardrails=guardrails)
    portal = start_portal(tmp_path, flag_service)
    database_url = f"sqlite:///{tmp_path / 'control.db'}"
    env = {
        "ROLLGUARD_FLAGS_URL": flag_service.url,
        "ROLLGUARD_ADMIN_TOKEN": flag_service.admin_token,
        "ROLLGUARD_CONTROL_DATABASE_URL": database_url,
        "ROLLGUARD_SCRAPE_TARGETS": portal.url,
    }
    log = open(tmp_path / "controller.log", "wb")  # closed in the finally below
    controller = subprocess.Popen(
        [*ROLLGUARD, "control", "run", "--interval", "1", "--scrape-interval", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        cwd=REPO,
        start_new_session=True,
    )
    store = ControlStore(database_url)
    traffic = Traffic(portal, tmp_path / "traffic.log", users=20, duration_s=150)
    admin = flag_service.admin("operator")
    try:
        # Healthy, noisy traffic: 15 checks with every guardrail judged on data, no rollback.
        wait_until(lambda: _passing_rounds(store) >= 15, timeout=60, what="15 healthy checks")
        assert admin.get_flag(KEY).enabled
        assert [d for d in store.decisions(KEY) if d.action == "rollback"] == []
        assert {v.verdict for v in store.verdicts(KEY)} <= {"pass", "no_data"}

        portal.inject_fault(error_rate=0.5)
        wait_until(lambda: not admin.get_flag(KEY).enabled, timeout=60, what="the controller's rollback")
        (kill,) = [e for e in admin.events(flag=KEY) if e.action == "kill"]
        assert kill.actor == "controller"
        assert "guardrail error_rate" in kill.reason and "value" in kill.reason and "threshold" in kill.reason
        assert admin.get_flag(KEY).state == "rolled_back"
        # Level two reached the portal: its SDK stops choosing the optimized path.
        source = EmbeddedSource(store)
        wait_until(
            lambda: source.window("request_rate", fn=FN, path="optimized", window_s=3).value == 0.0,
            timeout=30,
            what="the portal sending no more calls down the optimized path",
        )
    finally:
        traffic.stop()
        if controller.poll() is None:
            os.killpg(controller.pid, signal.SIGTERM)
            controller.wait(timeout=20)
        log.close()
        portal.stop()
        store.close()
        admin.close()


def _passing_rounds(store: ControlStore) -> int:
    rounds: dict[datetime, list[str]] = {}
    for v in store.verdicts(KEY):
        rounds.setdefault(v.time, []).append(v.verdict)
    return sum(1 for verdicts in rounds.values() if len(verdicts) == 3 and set(verdicts) == {"pass"})

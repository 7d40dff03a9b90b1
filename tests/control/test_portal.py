"""End to end with the real portal: a fault on the optimized path is rolled back, a healthy spike is not.

Real flag service, real portal (gunicorn subprocess) gated by the flag through
the Unleash SDK, real traffic from `rollguard traffic run` (steady, then a
mass submission on top), and the controller as `rollguard control run` at its
defaults (a check on every scrape, each second) on the embedded source, with
the default guardrails. No timing is asserted: only what happened.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from control.defaults import default_guardrails, default_rollback
from control.embedded import EmbeddedSource
from control.store import ControlStore
from rollguard import ROLLGUARD, stop_children
from tests.control.portal import start_portal, start_traffic
from tests.support import start_process, wait_until

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
            rollback=default_rollback(),
            payload={"fn": FN},
        )


def test_fault_on_the_optimized_path_is_rolled_back_and_a_healthy_spike_is_not(tmp_path, flag_service):
    create_flag(flag_service, rollout=50, guardrails=default_guardrails())
    portal = start_portal(tmp_path, flag_service)
    database_url = f"sqlite:///{tmp_path / 'control.db'}"
    env = {
        "ROLLGUARD_FLAGS_URL": flag_service.url,
        "ROLLGUARD_ADMIN_TOKEN": flag_service.admin_token,
        "ROLLGUARD_CONTROL_DATABASE_URL": database_url,
        "ROLLGUARD_SCRAPE_TARGETS": portal.url,
    }
    controller = start_process([*ROLLGUARD, "control", "run"], log_path=tmp_path / "controller.log", env=env)
    store = ControlStore(database_url)
    traffic = start_traffic(portal, tmp_path / "traffic.log", users=20, duration_s=240)
    spike = None
    admin = flag_service.admin("operator")
    try:
        # Healthy, noisy traffic: 10 checks with every guardrail judged on data.
        wait_until(lambda: _passing_rounds(store) >= 10, timeout=90, what="10 healthy checks")
        # A mass submission on top: the machine saturates, both cohorts slow down; no rollback.
        spike = start_traffic(
            portal, tmp_path / "spike.log", users=200, duration_s=15, scenario="mass-submission"
        )
        wait_until(lambda: not spike.running, timeout=120, what="the mass submission to finish")
        # Judged rounds, not passing ones: the saturated machine may breach a guardrail for
        # a round or two; what matters is that the controller kept judging and did not roll back.
        checks_after_spike = _judged_rounds(store) + 5
        wait_until(
            lambda: _judged_rounds(store) >= checks_after_spike or not admin.get_flag(KEY).enabled,
            timeout=60,
            what="5 more checks",
        )
        assert admin.get_flag(KEY).enabled, [e.reason for e in admin.events(flag=KEY) if e.action == "kill"]
        assert [d for d in store.decisions(KEY) if d.action == "rollback"] == []

        portal.inject_fault(error_rate=0.5)
        wait_until(lambda: not admin.get_flag(KEY).enabled, timeout=60, what="the controller's rollback")
        (kill,) = [e for e in admin.events(flag=KEY) if e.action == "kill"]
        assert kill.actor == "controller"
        assert "guardrail " in kill.reason and "value" in kill.reason and "threshold" in kill.reason
        assert admin.get_flag(KEY).state == "rolled_back"
        # Level two reached the portal: its SDK stops choosing the optimized path.
        source = EmbeddedSource(store)
        wait_until(
            lambda: source.window("request_rate", fn=FN, path="optimized", window_s=3).value == 0.0,
            timeout=30,
            what="the portal sending no more calls down the optimized path",
        )
    finally:
        stop_children([traffic, *([spike] if spike else []), controller], grace_s=20)
        portal.process.terminate()
        store.close()
        admin.close()


def _rounds(store: ControlStore) -> list[list[str]]:
    rounds: dict[datetime, list[str]] = {}
    for v in store.verdicts(KEY):
        rounds.setdefault(v.time, []).append(v.verdict)
    return [verdicts for verdicts in rounds.values() if len(verdicts) == 4]


def _passing_rounds(store: ControlStore) -> int:
    return sum(1 for verdicts in _rounds(store) if set(verdicts) == {"pass"})


def _judged_rounds(store: ControlStore) -> int:
    return len(_rounds(store))

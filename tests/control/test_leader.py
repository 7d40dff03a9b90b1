"""Two `rollguard control run` processes against one store: exactly one acts; the other takes over."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from control.store import ControlStore
from flags.client import Guardrail, RollbackPolicy
from rollguard import ROLLGUARD, Child
from tests.control.conftest import FN, MetricsTarget
from tests.support import start_process, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "leader-test"


def start_controller(log_path: Path, env: dict[str, str]) -> Child:
    """`rollguard control run` as a subprocess with its own log file."""
    argv = [*ROLLGUARD, "control", "run", "--interval", "0.5", "--scrape-interval", "0.5"]
    return start_process(argv, log_path=log_path, env=env)


def failing_traffic(target: MetricsTarget, stop: threading.Event) -> None:
    while not stop.wait(0.05):
        target.calls("optimized", 10, errors=3)
        target.calls("direct", 90)


def _rollbacks(store: ControlStore) -> int:
    return [d.action for d in store.decisions(KEY)].count("rollback")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'control.db'}"
    return request.getfixturevalue("fresh_postgres_url")


def test_one_controller_acts_and_the_other_takes_over(tmp_path, flag_service, metrics_target, store_url):
    database_url = store_url
    env = {
        "ROLLGUARD_FLAGS_URL": flag_service.url,
        "ROLLGUARD_ADMIN_TOKEN": flag_service.admin_token,
        "ROLLGUARD_CONTROL_DATABASE_URL": database_url,
        "ROLLGUARD_SCRAPE_TARGETS": metrics_target.url,
        "ROLLGUARD_METRICS": "embedded",
    }
    admin = flag_service.admin("operator")
    admin.create_flag(
        KEY,
        enabled=True,
        rollout=10,
        state="rolling_out",
        payload={"fn": FN},
        guardrails=[Guardrail("error_rate", "<=", 0.02, window_s=3, min_samples=5, path="optimized")],
        rollback=RollbackPolicy(2, "hold"),
    )
    store = ControlStore(database_url)
    stop = threading.Event()
    traffic = threading.Thread(target=failing_traffic, args=(metrics_target, stop))
    controllers = [start_controller(tmp_path / f"controller-{i}.log", env) for i in (1, 2)]
    traffic.start()
    try:
        wait_until(lambda: not admin.get_flag(KEY).enabled, timeout=60, what="the first rollback")
        # The controller records its decision once the kill is answered: a moment after the flag is off.
        wait_until(lambda: _rollbacks(store) == 1, timeout=30, what="the first rollback recorded")
        leader_holder = store.controller_status().holder
        by_pid = {c.pid: c for c in controllers}
        leader = by_pid[int(leader_holder.split(":")[1])]
        standby = next(c for c in controllers if c is not leader)

        kills = [e for e in admin.events(flag=KEY) if e.action == "kill"]
        assert len(kills) == 1 and kills[0].actor == "controller"
        assert {d.holder for d in store.decisions(KEY)} == {leader_holder}
        assert [d.action for d in store.decisions(KEY)].count("rollback") == 1

        # The leader dies without releasing its lease: the standby takes over once it expires.
        leader.kill()
        wait_until(
            lambda: (s := store.controller_status()) is not None and s.holder != leader_holder and s.is_live,
            timeout=30,
            what="the standby taking the lease",
        )
        new_holder = store.controller_status().holder
        assert int(new_holder.split(":")[1]) == standby.pid

        admin.resume(KEY, reason="operator retries")
        wait_until(lambda: not admin.get_flag(KEY).enabled, timeout=60, what="the second rollback")
        wait_until(lambda: _rollbacks(store) == 2, timeout=30, what="the second rollback recorded")
        rollbacks = [d for d in store.decisions(KEY) if d.action == "rollback"]
        assert [d.holder for d in rollbacks] == [leader_holder, new_holder]

        standby.signal(signal.SIGTERM)
        assert standby.proc.wait(timeout=20) == 0
        assert "stopped" in standby.log_path.read_text(errors="replace")
        assert not store.controller_status().is_live  # released on a clean stop
    finally:
        stop.set()
        traffic.join(timeout=10)
        for c in controllers:
            c.kill()
        store.close()
        admin.close()

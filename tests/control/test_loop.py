"""The decision loop against a real flag service, a real /metrics target and the embedded store.

Time is an injected clock moved 5 s per tick; scrapes and ticks are called
directly, so each test is deterministic and takes about a second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from control.embedded import EmbeddedSource
from control.loop import Controller
from control.notify import Notifier
from control.scraper import Scraper
from control.store import ControlStore
from flags.client import FlagsClient, Guardrail, RollbackPolicy
from tests.control.conftest import FN, FakeClock, MetricsTarget

pytestmark = pytest.mark.integration

KEY = "exam-attempts-optimization"
ERRORS = Guardrail("error_rate", "<=", 0.02, window_s=60, min_samples=20, path="optimized")


class Webhook:
    """The notification endpoint (a boundary): records what it receives."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.events.append(json.loads(request.content))
        return httpx.Response(204)


@pytest.fixture
def clock(flag_service) -> FakeClock:
    # Start at the real time, once the flag service is up, so that its audit times
    # and the controller's are comparable.
    return FakeClock(datetime.now(UTC))


@pytest.fixture
def admin(flag_service) -> Iterator[FlagsClient]:
    client = flag_service.admin("operator")
    yield client
    client.close()


@pytest.fixture
def webhook() -> Webhook:
    return Webhook()


class Harness:
    """Traffic on the target, a scrape, a controller tick, 5 s later: one step of the loop."""

    def __init__(self, target: MetricsTarget, store: ControlStore, clock: FakeClock, flag_service, webhook):
        self.target, self.store, self.clock = target, store, clock
        self.scraper = Scraper(store, [target.url], clock=clock)
        self.flag_service, self.webhook = flag_service, webhook
        self.controllers: list[Controller] = []

    def controller(self, holder: str = "controller-a", *, dry_run: bool = False) -> Controller:
        c = Controller(
            flags=self.flag_service.admin("controller"),
            source=EmbeddedSource(self.store, clock=self.clock),
            store=self.store,
            holder=holder,
            notifier=Notifier(
                webhook_url="http://hooks.test/rollguard", transport=httpx.MockTransport(self.webhook)
            ),
            interval_s=5,
            lease_s=15,
            dry_run=dry_run,
            clock=self.clock,
        )
        self.controllers.append(c)
        return c

    def step(self, controller: Controller, *, error_pct: int = 0):
        self.target.calls("optimized", 100, errors=error_pct, backend=10)
        self.target.calls("direct", 900, errors=0)
        self.scraper.scrape_once()
        decisions = controller.tick()
        self.clock.advance(5)
        return decisions

    def close(self) -> None:
        self.scraper.close()
        for c in self.controllers:
            c.flags.close()


@pytest.fixture
def harness(metrics_target, store, clock, flag_service, webhook) -> Iterator[Harness]:
    h = Harness(metrics_target, store, clock, flag_service, webhook)
    yield h
    h.close()


def create_flag(admin: FlagsClient, **fields) -> None:
    base = {
        "enabled": True,
        "rollout": 10,
        "stages": [10, 50, 100],
        "stage_hold_s": 20,
        "auto_promote": True,
        "state": "rolling_out",
        "guardrails": [ERRORS],
        "rollback": RollbackPolicy(2, "hold"),
        "payload": {"fn": FN},
    }
    admin.create_flag(KEY, reason="test", **{**base, **fields})


def controller_events(admin: FlagsClient) -> list:
    return [e for e in admin.events(flag=KEY) if e.actor == "controller"]


def test_failing_guardrail_rolls_back_with_reason_in_audit_and_notification(harness, admin, store, webhook):
    create_flag(admin)
    controller = harness.controller()
    actions = []
    for _ in range(5):
        actions += [d.action.kind.value for d in harness.step(controller, error_pct=30)]
        if not admin.get_flag(KEY).enabled:
            break

    # The first scrape predates the flag's creation (the stage's start): not judged.
    # Then fail, fail -> rollback on the second failing check.
    assert actions == ["hold", "hold", "rollback"]
    flag = admin.get_flag(KEY)
    assert (flag.enabled, flag.state) == (False, "rolled_back")
    (kill,) = controller_events(admin)
    assert kill.action == "kill"
    assert ERRORS.name in kill.reason and "value 0.3" in kill.reason and "threshold 0.02" in kill.reason
    assert [v.verdict for v in store.verdicts(KEY)] == ["fail", "fail"]
    assert [(e["action"], e["flag"], e["reason"]) for e in webhook.events] == [("rollback", KEY, kill.reason)]

    # Killed: the controller leaves it alone.
    assert harness.step(controller) == []

    # An operator resumes after a fix: old failures belong to the old stage.
    admin.resume(KEY, reason="fixed")
    assert [d.action.kind.value for _ in range(4) for d in harness.step(controller)] == ["hold"] * 4
    assert admin.get_flag(KEY).enabled


def test_healthy_stages_are_promoted_after_the_hold_until_complete(harness, admin, store, webhook):
    create_flag(admin)
    controller = harness.controller()
    for _ in range(30):
        harness.step(controller)
        if admin.get_flag(KEY).state == "complete":
            break

    flag = admin.get_flag(KEY)
    assert (flag.rollout, flag.state, flag.enabled) == (100, "complete", True)
    promotions = [d for d in store.decisions(KEY) if d.action == "promote"]
    assert [d.rollout for d in promotions] == [50, 100]
    # Each stage stayed healthy for stage_hold_s before its promotion.
    first_pass = next(v.time for v in store.verdicts(KEY) if v.verdict == "pass")
    assert promotions[0].time - first_pass >= timedelta(seconds=20)
    assert promotions[1].time - promotions[0].time >= timedelta(seconds=25)
    assert [e.action for e in controller_events(admin)] == ["set_rollout", "set_rollout"]
    assert [(e["action"], e["rollout"]) for e in webhook.events] == [("promote", 50), ("complete", 100)]


def test_no_auto_promote_holds_a_healthy_stage(harness, admin, store):
    create_flag(admin, auto_promote=False)
    controller = harness.controller()
    for _ in range(8):
        harness.step(controller)
    assert admin.get_flag(KEY).rollout == 10
    assert "auto_promote is off" in store.decisions(KEY)[-1].reason


def test_dry_run_records_the_decision_and_changes_nothing(harness, admin, store, webhook):
    create_flag(admin)
    controller = harness.controller(dry_run=True)
    for _ in range(4):
        harness.step(controller, error_pct=30)

    flag = admin.get_flag(KEY)
    assert (flag.enabled, flag.rollout, flag.version) == (True, 10, 1)
    assert controller_events(admin) == []
    rollbacks = [d for d in store.decisions(KEY) if d.action == "rollback"]
    assert rollbacks and all(d.dry_run for d in rollbacks)
    assert webhook.events == []


def test_paused_flag_is_judged_but_never_acted_on(harness, admin, store):
    create_flag(admin, state="paused")
    controller = harness.controller()
    for _ in range(4):
        harness.step(controller, error_pct=30)

    assert admin.get_flag(KEY).enabled
    assert [v.verdict for v in store.verdicts(KEY)][-2:] == ["fail", "fail"]
    assert store.decisions(KEY) == []


def test_a_restarted_controller_continues_from_stored_verdicts(harness, admin, store):
    create_flag(admin)
    first = harness.controller("controller-a")
    harness.step(first, error_pct=30)  # no data
    harness.step(first, error_pct=30)  # first failure; then controller-a dies without releasing
    second = harness.controller("controller-b")
    assert harness.step(second, error_pct=30) == []  # a's lease still runs
    harness.clock.advance(5)  # a's lease has expired now

    (decision,) = harness.step(second, error_pct=30)
    # b's first check is the streak's second failure, counted with a's stored one.
    assert decision.action.kind.value == "rollback" and decision.applied
    assert store.decisions(KEY)[-1].holder == "controller-b"
    assert not admin.get_flag(KEY).enabled


def test_standby_controller_does_nothing_while_the_leader_is_live(harness, admin, store):
    create_flag(admin)
    leader, standby = harness.controller("controller-a"), harness.controller("controller-b")
    for _ in range(4):
        harness.step(leader, error_pct=0)
        assert standby.tick() == []
    assert leader.is_leader and not standby.is_leader
    assert {d.holder for d in store.decisions(KEY)} == {"controller-a"}
    assert store.controller_status().holder == "controller-a"


def test_a_controller_restarted_mid_stage_keeps_the_hold(harness, admin, store):
    create_flag(admin)
    first = harness.controller("controller-a")
    for _ in range(3):
        harness.step(first)
    assert admin.get_flag(KEY).rollout == 10
    store.release_lease("controller-a")  # a clean stop; the next one takes over at once

    second = harness.controller("controller-b")
    for _ in range(10):
        harness.step(second)
        if admin.get_flag(KEY).rollout == 50:
            break
    for _ in range(2):
        harness.step(second)
    store.release_lease("controller-b")  # stopped again, now in the stage it began

    third = harness.controller("controller-c")
    for _ in range(10):
        harness.step(third)
        if admin.get_flag(KEY).state == "complete":
            break

    promotions = [d for d in store.decisions(KEY) if d.action == "promote"]
    assert [(d.rollout, d.holder) for d in promotions] == [(50, "controller-b"), (100, "controller-c")]
    # Each promotion came at the first check stage_hold_s (20 s) after the stage's first passing
    # check, as without the restarts: the stage start survived them, on the flag and in the store.
    passes = sorted({v.time for v in store.verdicts(KEY) if v.verdict == "pass"})
    first_at_10 = passes[0]
    first_at_50 = next(t for t in passes if t > promotions[0].time)
    assert promotions[0].time - first_at_10 == timedelta(seconds=20)
    assert promotions[1].time - first_at_50 == timedelta(seconds=20)
    flag = admin.get_flag(KEY)
    assert flag.stage_started_by == "controller" and flag.stage_started_at is not None


def test_the_hold_counts_from_the_stage_start_past_a_page_of_audit_events(harness, admin, store):
    """The stage's start is older than the newest 100 audit events of the flag (a page of the log).

    Real time, because the edits must land after checks of the stage: the flag
    service stamps them on its own clock.
    """
    hold = timedelta(seconds=3)
    create_flag(admin, stage_hold_s=int(hold.total_seconds()))
    controller = harness.controller()

    def step() -> None:
        harness.clock.now = datetime.now(UTC)
        harness.target.calls("optimized", 100, backend=10)
        harness.target.calls("direct", 900)
        harness.scraper.scrape_once()
        controller.tick()

    def step_until(done, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            assert time.monotonic() < deadline, "timed out"
            step()

    step_until(lambda: any(v.verdict == "pass" for v in store.verdicts(KEY)), 30)
    first_pass = store.verdicts(KEY)[-1].time
    flag = admin.get_flag(KEY)
    for n in range(101):
        flag = admin.update_flag(KEY, {"description": f"edit {n}"}, version=flag.version)
    assert len(admin.events(flag=KEY, limit=200)) == 102
    assert flag.stage_started_at == flag.created_at

    step_until(lambda: admin.get_flag(KEY).rollout == 50, 60)
    (promotion,) = [d for d in store.decisions(KEY) if d.action == "promote"]
    # Promoted at the first check a hold after the first passing one: the edits restarted nothing
    # (counted from the latest edit, the hold started again, and the windows cut at the edit held no data).
    assert promotion.time - first_pass >= hold
    checks = sorted({v.time for v in store.verdicts(KEY)})
    assert [t for t in checks if first_pass + hold <= t < promotion.time] == []
    assert all(v.verdict == "pass" for v in store.verdicts(KEY, since=first_pass))

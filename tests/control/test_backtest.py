"""Backtest: recorded samples replayed through the same policy with a simulated clock."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from control.backtest import backtest
from control.control_cli import command
from control.embedded import EmbeddedSource
from control.loop import Controller
from control.scraper import Scraper
from control.store import ControlStore
from flags.client import Flag, Guardrail, RollbackPolicy
from tests.control.conftest import FN, FakeClock

ERRORS = Guardrail("error_rate", "<=", 0.02, window_s=30, min_samples=20, path="optimized")


def flag(**changes) -> Flag:
    fields: dict[str, Any] = {
        "key": "bt",
        "enabled": False,
        "rollout": 0,
        "stages": (10, 50, 100),
        "stage_hold_s": 60,
        "auto_promote": True,
        "guardrails": (ERRORS,),
        "rollback": RollbackPolicy(2, "hold"),
        "state": "draft",
        "payload": {"fn": FN},
        "version": 1,
    }
    fields.update(changes)
    return Flag(**fields)


@pytest.fixture
def recorded(store, metrics_target, clock):
    """Three minutes of recorded traffic, a scrape every 5 s: healthy for 100 s, then 30% errors."""
    start = clock.now
    scraper = Scraper(store, [metrics_target.url], clock=clock)
    try:
        for i in range(37):
            metrics_target.calls("optimized", 50, errors=15 if i * 5 >= 100 else 0)
            metrics_target.calls("direct", 50)
            scraper.scrape_once()
            clock.advance(5)
    finally:
        scraper.close()
    return start


def test_replay_promotes_after_the_hold_then_rolls_back_on_the_fault(store, recorded):
    result = backtest(
        flag(), EmbeddedSource(store), start=recorded, end=recorded + timedelta(seconds=180), step_s=5
    )

    promote, rollback = result.events
    assert (promote.action, promote.rollout_before, promote.rollout_after) == ("promote", 10, 50)
    # The first check with two scrapes is at 5 s; 60 s of passing checks later it promotes.
    assert promote.time - recorded == timedelta(seconds=65)
    assert (rollback.action, rollback.rollout_before) == ("rollback", 50)
    # The error counter first appears in the scrape at 100 s. As with PromQL's
    # increase(), a series needs two samples in the window, so the checks at
    # 105 s and 110 s are the two failing ones.
    assert rollback.time - recorded == timedelta(seconds=110)
    assert ERRORS.name in rollback.reason
    assert result.verdict_counts["fail"] == 2


def test_replay_of_healthy_traffic_never_rolls_back(store, recorded):
    result = backtest(
        flag(stage_hold_s=20),
        EmbeddedSource(store),
        start=recorded,
        end=recorded + timedelta(seconds=95),
        step_s=5,
    )
    assert [(e.action, e.rollout_after) for e in result.events] == [("promote", 50), ("complete", 100)]


def test_cli_prints_the_replay_as_json(store, recorded, flag_service):
    admin = flag_service.admin("operator")
    admin.create_flag(
        "bt",
        enabled=True,
        rollout=10,
        state="rolling_out",
        stage_hold_s=60,
        auto_promote=True,
        guardrails=[ERRORS],
        payload={"fn": FN},
    )
    env = {
        "ROLLGUARD_FLAGS_URL": flag_service.url,
        "ROLLGUARD_ADMIN_TOKEN": flag_service.admin_token,
        "ROLLGUARD_CONTROL_DATABASE_URL": str(store.url),
    }
    start = recorded.strftime("%Y-%m-%dT%H:%M:%S")
    end = (recorded + timedelta(seconds=180)).strftime("%Y-%m-%dT%H:%M:%S")
    out = CliRunner().invoke(
        command, ["backtest", "--flag", "bt", "--from", start, "--to", end, "--step", "5", "--json"], env=env
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert [e["action"] for e in result["events"]] == ["promote", "rollback"], result

    text = CliRunner().invoke(command, ["backtest", "--flag", "bt", "--from", start, "--to", end], env=env)
    assert text.exit_code == 0 and "rollback" in text.output and ERRORS.name in text.output
    missing = CliRunner().invoke(command, ["backtest", "--flag", "nope", "--json"], env=env)
    assert missing.exit_code != 0 and "nope" in missing.output
    admin.close()


@pytest.mark.integration
def test_backtest_of_recorded_checks_repeats_the_live_loops_decisions(
    store, metrics_target, flag_service, tmp_path
):
    """A live controller (real flag service, real /metrics, injected clock) promotes and rolls back;
    the backtest over the same store, at the recorded checks, decides the same at the same instants."""
    clock = FakeClock(datetime.now(UTC))
    store = ControlStore(str(store.url), clock=clock)
    admin = flag_service.admin("operator")
    guardrails = [
        Guardrail("error_rate", "<=", 0.01, window_s=10, min_samples=20, kind="comparative"),
        Guardrail("p95_latency_s", "<=", 0.1, window_s=10, min_samples=20, kind="comparative"),
    ]
    admin.create_flag(
        "bt",
        enabled=True,
        rollout=10,
        stages=[10, 50, 100],
        stage_hold_s=15,
        auto_promote=True,
        state="rolling_out",
        guardrails=guardrails,
        rollback=RollbackPolicy(2, "hold"),
        payload={"fn": FN},
    )
    scraper = Scraper(store, [metrics_target.url], clock=clock)
    controller = Controller(
        flags=flag_service.admin("controller"),
        source=EmbeddedSource(store, clock=clock),
        store=store,
        holder="live",
        interval_s=1,
        clock=clock,
    )
    rng = random.Random(7)
    try:
        for second in range(80):
            faulty = second >= 25
            optimized = rng.randint(20, 40)
            errors = sum(rng.random() < (0.3 if faulty else 0.002) for _ in range(optimized))
            metrics_target.calls("optimized", optimized, errors=errors, latency_s=0.002)
            metrics_target.calls(
                "direct", rng.randint(150, 250), errors=int(rng.random() < 0.3), latency_s=0.03
            )
            scraper.scrape_once()
            controller.tick()
            clock.advance(1)
            if not admin.get_flag("bt").enabled:
                break
    finally:
        scraper.close()
        controller.flags.close()

    live = [(d.time, d.action, d.rollout) for d in store.decisions("bt") if d.action != "hold"]
    assert [a for _t, a, _r in live] == ["promote", "rollback"], live
    times = sorted({v.time for v in store.verdicts("bt")})
    replay = backtest(
        admin.get_flag("bt"),
        EmbeddedSource(store),
        start=times[0],
        end=times[-1],
        step_s=1,
        start_rollout=10,
        times=times,
        events=admin.events(flag="bt"),
    )
    replayed = [
        (e.time, e.action, e.rollout_after if e.action == "promote" else e.rollout_before)
        for e in replay.events
    ]
    assert replayed == live
    recorded = Counter(v.verdict for v in store.verdicts("bt"))
    assert replay.verdict_counts == {k: recorded.get(k, 0) for k in ("pass", "fail", "no_data")}

    # The same through the command line.
    env = {
        "ROLLGUARD_FLAGS_URL": flag_service.url,
        "ROLLGUARD_ADMIN_TOKEN": flag_service.admin_token,
        "ROLLGUARD_CONTROL_DATABASE_URL": str(store.url),
        "ROLLGUARD_CONTROL_INTERVAL_S": "1",
    }
    out = CliRunner().invoke(command, ["backtest", "--flag", "bt", "--recorded-checks", "--json"], env=env)
    assert out.exit_code == 0, out.output
    cli_events = json.loads(out.output)["events"]
    assert [(e["time"], e["action"]) for e in cli_events] == [(t.isoformat(), a) for t, a, _r in live]
    admin.close()
    store.close()

"""The controller's store: records, the leader lease and status, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from control.store import ControlStore, DecisionRecord, VerdictRecord
from tests.control.conftest import FakeClock


def verdict(clock: FakeClock, outcome: str, *, flag: str = "f", value: float | None = 0.01) -> VerdictRecord:
    return VerdictRecord(
        time=clock.now,
        flag=flag,
        guardrail="error_rate[optimized]<=0.02",
        verdict=outcome,
        value=value,
        threshold=0.02,
        samples=400,
        metric="error_rate",
        path="optimized",
    )


def test_creates_the_sqlite_directory(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'nested' / 'var' / 'control.db'}"
    ControlStore(url).close()
    assert (tmp_path / "nested" / "var" / "control.db").exists()


def test_verdicts_and_decisions_come_back_in_time_order_within_bounds(store, clock):
    start = clock.now
    store.record_verdicts([verdict(clock, "pass"), verdict(clock, "pass", flag="other")])
    clock.advance(5)
    store.record_verdicts([verdict(clock, "fail", value=0.05)])
    store.record_decision(DecisionRecord(clock.now, "f", "hold", "1 of 2 failures", False, 10, "a"))
    clock.advance(5)
    store.record_verdicts([verdict(clock, "no_data", value=None)])
    store.record_decision(DecisionRecord(clock.now, "f", "rollback", "error_rate 0.05 > 0.02", True, 0, "a"))

    assert [v.verdict for v in store.verdicts("f")] == ["pass", "fail", "no_data"]
    within = store.verdicts("f", since=start + timedelta(seconds=1), until=start + timedelta(seconds=6))
    assert [(v.verdict, v.value, v.samples) for v in within] == [("fail", 0.05, 400)]
    assert within[0].time == start + timedelta(seconds=5)
    assert within[0].time.tzinfo is not None
    decisions = store.decisions("f")
    assert [(d.action, d.dry_run, d.rollout) for d in decisions] == [
        ("hold", False, 10),
        ("rollback", True, 0),
    ]
    assert store.decisions(since=clock.now) == decisions[1:]
    assert store.decisions("other") == []


def test_one_holder_leads_until_its_lease_expires(store, clock):
    assert store.controller_status() is None
    assert store.acquire_lease("a", lease_s=15)
    assert not store.acquire_lease("b", lease_s=15)
    clock.advance(10)
    assert store.acquire_lease("a", lease_s=15)  # renewal extends to t+25
    clock.advance(10)
    assert not store.acquire_lease("b", lease_s=15)
    status = store.controller_status()
    assert status is not None and status.holder == "a" and status.is_live

    clock.advance(6)  # a stopped renewing: its lease ran out
    assert not store.controller_status().is_live
    assert store.acquire_lease("b", lease_s=15)
    assert not store.acquire_lease("a", lease_s=15)
    status = store.controller_status()
    assert status.holder == "b" and status.acquired_at == clock.now


def test_released_lease_is_taken_over_at_once(store, clock):
    assert store.acquire_lease("a", lease_s=15)
    store.mark_evaluation("a")
    assert store.controller_status().last_evaluation_at == clock.now
    store.release_lease("a")
    assert store.acquire_lease("b", lease_s=15)
    store.mark_evaluation("a")  # a former leader cannot write the status any more
    assert store.controller_status().holder == "b"


@pytest.mark.integration
def test_lease_and_records_on_postgresql(fresh_postgres_url: str, clock: FakeClock):
    first = ControlStore(fresh_postgres_url, clock=clock)
    second = ControlStore(fresh_postgres_url, clock=clock)
    try:
        assert first.acquire_lease("a", lease_s=15)
        assert not second.acquire_lease("b", lease_s=15)
        clock.advance(16)
        assert second.acquire_lease("b", lease_s=15)
        assert not first.acquire_lease("a", lease_s=15)
        first.record_verdicts([verdict(clock, "pass")])
        assert [v.verdict for v in second.verdicts("f")] == ["pass"]
    finally:
        first.close()
        second.close()

"""The controller's history as other parts read it: the store's records, read-only, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import exc

from control.history import ControlHistory
from control.store import ControlStore, DecisionRecord, Sample, VerdictRecord
from flags.client import Flag, Guardrail, RollbackPolicy
from tests.control.conftest import FakeClock

ERRORS = Guardrail("error_rate", "<=", 0.02, window_s=60, min_samples=20, path="optimized")
LATENCY = Guardrail("p95_latency_s", "<=", 0.2, window_s=60, min_samples=20, path="optimized")
FLAG = Flag(
    key="f",
    enabled=True,
    rollout=10,
    stages=(10, 50, 100),
    stage_hold_s=60,
    auto_promote=True,
    guardrails=(ERRORS, LATENCY),
    rollback=RollbackPolicy(2, "hold"),
    state="rolling_out",
    payload={},
    version=1,
)


def verdict(
    clock: FakeClock, guardrail: Guardrail, outcome: str, value: float | None = 0.01
) -> VerdictRecord:
    return VerdictRecord(
        time=clock.now,
        flag="f",
        guardrail=guardrail.name,
        verdict=outcome,
        value=value,
        threshold=guardrail.threshold,
        samples=1200,
        metric=guardrail.metric,
        path=guardrail.path,
        detail="" if outcome != "no_data" else "3 samples < 20 needed",
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'control.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
def history(database_url: str, clock: FakeClock) -> Iterator[ControlHistory]:
    found = ControlHistory(database_url, interval_s=5, clock=clock)
    yield found
    found.close()


def test_before_any_controller_the_history_is_empty_and_creates_nothing(
    database_url: str, history: ControlHistory, clock: FakeClock, tmp_path: Path
) -> None:
    assert history.verdicts("f") == []
    assert history.decisions() == []
    assert history.controller_status() is None
    assert history.raw_samples(["optimizer_requests_total"], start=clock.now, end=clock.now) == []
    assert history.newest_sample_time() is None
    check = history.last_check(FLAG)
    assert (check.verdicts, check.not_judged) == ((), "no controller has run against this store")
    # A reader leaves no trace: no SQLite file, no table in PostgreSQL.
    if database_url.startswith("sqlite"):
        assert not (tmp_path / "var").exists()
    else:
        engine = sqlalchemy.create_engine(database_url)
        assert sqlalchemy.inspect(engine).get_table_names() == []
        engine.dispose()

    # The same history finds the store once a controller has written it.
    store = ControlStore(database_url, clock=clock)
    store.acquire_lease("controller-a", lease_s=15)
    store.record_verdicts([verdict(clock, ERRORS, "pass")])
    store.close()
    assert [v.verdict for v in history.verdicts("f")] == ["pass"]


def test_it_reads_what_the_controller_recorded(
    database_url: str, history: ControlHistory, clock: FakeClock
) -> None:
    store = ControlStore(database_url, clock=clock)
    assert store.acquire_lease("controller-a", lease_s=15)
    store.record_verdicts([verdict(clock, ERRORS, "pass"), verdict(clock, LATENCY, "no_data", None)])
    store.add_samples([Sample(clock.now, "http://app/metrics", "optimizer_requests_total", {"fn": "g"}, 7.0)])
    clock.advance(5)
    store.record_verdicts([verdict(clock, ERRORS, "fail", 0.25), verdict(clock, LATENCY, "pass", 0.12)])
    store.record_decision(
        DecisionRecord(clock.now, "f", "hold", "1 of 2 failures", False, 10, "controller-a")
    )
    store.mark_evaluation("controller-a")
    clock.advance(2)

    assert history.verdicts("f") == store.verdicts("f")
    assert history.decisions("f") == store.decisions("f")
    assert history.controller_status() == store.controller_status()
    start = clock.now - timedelta(minutes=1)
    assert history.raw_samples(["optimizer_requests_total"], start=start, end=clock.now) == store.raw_samples(
        ["optimizer_requests_total"], start=start, end=clock.now
    )
    assert history.newest_sample_time() == store.newest_sample_time()
    # The last check is the newest one, every guardrail of it, judged 2 s ago.
    check = history.last_check(FLAG)
    assert check.judged and check.judged_at == clock.now - timedelta(seconds=2)
    assert {(v.guardrail, v.verdict, v.value) for v in check.verdicts} == {
        (ERRORS.name, "fail", 0.25),
        (LATENCY.name, "pass", 0.12),
    }
    assert all(v.metric and v.threshold and v.samples == 1200 for v in check.verdicts)
    # A guardrail the newest check no longer judged (removed meanwhile) is not in it.
    clock.advance(5)
    store.record_verdicts([verdict(clock, ERRORS, "pass")])
    assert [v.guardrail for v in history.last_check(replace(FLAG, guardrails=(ERRORS,))).verdicts] == [
        ERRORS.name
    ]
    # A few of the controller's intervals (here 5 s: 30 s at least) later it no longer counts.
    store.release_lease("controller-a")
    clock.advance(31)
    assert history.last_check(FLAG).not_judged == "no controller running"
    store.close()


def test_a_reader_cannot_write_the_store(
    database_url: str, history: ControlHistory, clock: FakeClock
) -> None:
    ControlStore(database_url, clock=clock).close()
    assert history.verdicts("f") == []  # opens the reader
    reader = history._open()  # the connection every read of the history uses
    assert reader is not None
    with pytest.raises(exc.DBAPIError, match="(?i)read.only|readonly"), reader.engine.begin() as conn:
        conn.execute(sqlalchemy.text("DELETE FROM control_verdicts"))

"""The dashboard's reads against real sources: chunked series equal the metric source's own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from control.metrics import open_source
from control.scraper import Scraper
from control.settings import ControlSettings
from control.store import ControlStore, VerdictRecord
from dashboard import data, plots
from dashboard.settings import DashboardSettings
from dashboard.verdicts import silence_s, verdict_runs
from flags.client import Flag, Guardrail, RollbackPolicy
from tests.dashboard.conftest import FN
from tests.dashboard.figures import panels
from tests.dashboard.metrics import MetricsTarget, scrape_history


@pytest.fixture
def target() -> Iterator[MetricsTarget]:
    target = MetricsTarget(FN)
    yield target
    target.stop()


@pytest.mark.parametrize("metric,path", [("call_reduction", None), ("p95_latency_s", "optimized")])
def test_chunked_series_equal_one_query(
    target: MetricsTarget, control_database_url: str, metric: str, path: str | None
) -> None:
    scrape_history(control_database_url, target, seconds=2 * 3600 + 600, step_s=30, wave=True)
    settings = DashboardSettings.from_env({"ROLLGUARD_CONTROL_DATABASE_URL": control_database_url})
    end = data.window_end(30)
    start = end - timedelta(hours=2, minutes=7)  # not aligned to a chunk: three partial chunks

    chunked = data.series(settings, metric, fn=FN, path=path, start=start, end=end, step_s=30)

    store = ControlStore(control_database_url)
    source = open_source(
        ControlSettings.from_env({"ROLLGUARD_CONTROL_DATABASE_URL": control_database_url}), store=store
    )
    whole = source.series(metric, fn=FN, path=path, start=start, end=end, step_s=30)
    store.close()
    assert len(whole) > 200
    assert chunked == whole


def test_verdicts_read_by_the_hour_give_the_runs_of_one_read(control_database_url: str) -> None:
    # Three guardrails judged every 5 s for 3 h 20 min up to now, with flips and a 10-minute silence.
    end = data.now()
    start = end - timedelta(hours=3, minutes=20)
    records = []
    for step in range(int((end - start).total_seconds()) // 5):
        if 1000 <= step < 1120:
            continue
        moment = start + timedelta(seconds=5 * step, microseconds=step * 7919 % 400_000)
        for index, name in enumerate(("a", "b", "c")):
            verdict = "fail" if (step // (40 + 30 * index)) % 5 == 0 else "pass"
            records.append(VerdictRecord(moment, FN, name, verdict, step / 10, 0.01, 100))
    store = ControlStore(control_database_url)
    store.record_verdicts(records)
    settings = DashboardSettings.from_env({"ROLLGUARD_CONTROL_DATABASE_URL": control_database_url})
    since = data.window_end(120) - timedelta(hours=3)  # not on an hour: a part of an hour first

    chunked = data.verdict_runs(settings, FN, since=since)

    whole = store.verdicts(FN, since=since)
    store.close()
    assert chunked == (verdict_runs(whole), silence_s(whole))
    assert sum(run.count for run in chunked[0]) == len(whole) > 6000


def test_error_rate_chart_uses_the_guardrails_window(
    target: MetricsTarget, control_database_url: str
) -> None:
    # Two minutes of clean traffic, then 30 s with 12% errors on the optimized cohort.
    store = ControlStore(control_database_url)
    last = data.window_end(5)
    moment = [last - timedelta(seconds=150)]
    scraper = Scraper(store, [target.url], interval_s=5, clock=lambda: moment[0])
    try:
        while moment[0] <= last:
            burst = moment[0] > last - timedelta(seconds=30)
            target.traffic(calls=100, error_fraction=0.12 if burst else 0.0, latency_s=0.03)
            assert scraper.scrape_once() > 0
            moment[0] += timedelta(seconds=5)
    finally:
        scraper.close()
        store.close()
    guardrail = Guardrail("error_rate", "<", 0.02, window_s=20, min_samples=5, path="optimized")
    flag = Flag(
        key="burst",
        enabled=True,
        rollout=50,
        stages=(10, 50, 100),
        stage_hold_s=60,
        auto_promote=True,
        guardrails=(guardrail,),
        rollback=RollbackPolicy(2, "hold"),
        state="rolling_out",
        payload={"fn": FN},
        version=1,
    )
    settings = DashboardSettings.from_env({"ROLLGUARD_CONTROL_DATABASE_URL": control_database_url})
    start = last - timedelta(seconds=60)

    rows = panels(plots.metrics_figure(settings, flag, start=start, end=last, step_s=5))

    optimized = rows["Error rate per cohort"]["optimized"]
    # What the guardrail judged: the burst alone, not diluted by the minute before it.
    assert optimized["y"][-1] == pytest.approx(0.12)
    assert "over 20 s" in optimized["hovertemplate"]
    assert optimized["y"] == [
        p.value
        for p in data.series(
            settings, "error_rate", fn=FN, path="optimized", start=start, end=last, step_s=5, window_s=20
        )
    ]
    diluted = data.series(settings, "error_rate", fn=FN, path="optimized", start=start, end=last, step_s=5)
    assert diluted[-1].value < 0.08
    latency = rows["p95 latency per cohort"]
    assert all("over 60 s" in latency[name]["hovertemplate"] for name in ("optimized", "direct"))


def test_guardrail_window_is_the_smallest_judging_a_line() -> None:
    guardrails = (
        Guardrail("error_rate", "<", 0.02, window_s=20, path="optimized"),
        Guardrail("error_rate", "<", 0.05, window_s=45),
        Guardrail("error_rate", "<=", 0.01, window_s=10, path="direct"),
        Guardrail("p95_latency_s", "<=", 0.01, window_s=30, kind="comparative"),
    )
    assert plots.guardrail_window(guardrails, "error_rate", "optimized") == 20
    assert plots.guardrail_window(guardrails, "error_rate", "direct") == 10
    assert plots.guardrail_window(guardrails, "p95_latency_s", "direct") == 30
    assert plots.guardrail_window(guardrails, "call_reduction", None) is None

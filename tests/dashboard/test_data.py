"""The dashboard's reads against real sources: chunked series equal the metric source's own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from control.metrics import open_source
from control.settings import ControlSettings
from control.store import ControlStore
from dashboard import data
from dashboard.settings import DashboardSettings
from tests.dashboard.conftest import FN
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

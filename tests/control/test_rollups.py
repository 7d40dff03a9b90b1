"""Per-minute and per-5-minute rollups: written as samples are stored, read for long steps, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from control.embedded import EmbeddedSource
from control.rollups import resolution_for
from control.store import ControlStore, Sample

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TARGET = "http://portal:8000/metrics"
FN = "get_all_exam_attempts"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ControlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'control.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    store = ControlStore(url)
    yield store
    store.close()


def scrape(moment: datetime, requests: float, backend: float, cache_bytes: float) -> list[Sample]:
    labels = {"fn": FN, "path": "optimized"}
    return [
        Sample(moment, TARGET, "optimizer_requests_total", labels, requests),
        Sample(moment, TARGET, "optimizer_backend_calls_total", labels, backend),
        Sample(moment, TARGET, "optimizer_cache_bytes", {"fn": FN}, cache_bytes),
    ]


def fill(store: ControlStore, *, hours: float, batch_s: int) -> None:
    """Scrapes every 5 s: 40 requests and 6 backend calls each, a cache that grows and shrinks."""
    batch: list[Sample] = []
    for step in range(int(hours * 720)):
        moment = T0 + timedelta(seconds=5 * step)
        batch += scrape(moment, 40.0 * step, 6.0 * step, 1e6 * (2 + math.sin(step / 50)))
        if (step + 1) % (batch_s // 5) == 0:
            store.add_samples(batch)
            batch.clear()
    store.add_samples(batch)


def test_rollups_give_the_raw_series_figures_at_long_steps(store: ControlStore) -> None:
    # Batches of 25 s: most buckets are written by several batches and must merge.
    fill(store, hours=3, batch_s=25)
    source = EmbeddedSource(store, clock=lambda: T0 + timedelta(hours=3))
    start, end = T0 + timedelta(minutes=30), T0 + timedelta(hours=3)

    reduction = source.series("call_reduction", fn=FN, start=start, end=end, step_s=300)
    cache = source.series("cache_bytes", fn=FN, start=start, end=end, step_s=300)

    assert resolution_for(300, 300) == 60
    assert len(reduction) == len(cache) == 31
    assert all(p.value == pytest.approx(1 - 6 / 40) for p in reduction)
    for point in cache:
        # max_over_time over the whole minutes before the point (the sample at the point itself
        # opens the next bucket), from the raw samples.
        raw = store.raw_samples(
            ["optimizer_cache_bytes"],
            start=point.time - timedelta(seconds=300),
            end=point.time - timedelta(seconds=1),
            fn=FN,
        )
        assert point.value == pytest.approx(max(r.value for r in raw))


def test_a_bucket_keeps_its_last_sample_and_its_largest_value(store: ControlStore) -> None:
    store.add_samples(scrape(T0 + timedelta(seconds=5), 10, 1, 7e6))
    store.add_samples(scrape(T0 + timedelta(seconds=50), 30, 2, 3e6))
    store.add_samples(scrape(T0 + timedelta(seconds=20), 20, 1, 5e6))  # late, out of order

    rows = store.rollup_samples(
        ["optimizer_requests_total", "optimizer_cache_bytes"],
        resolution_s=60,
        start=T0,
        end=T0 + timedelta(minutes=1),
        largest=["optimizer_cache_bytes"],
    )

    assert sorted((r.name, r.ts, r.value, r.fn, r.path) for r in rows) == [
        ("optimizer_cache_bytes", (T0 + timedelta(seconds=50)).timestamp(), 7e6, FN, None),
        ("optimizer_requests_total", (T0 + timedelta(seconds=50)).timestamp(), 30, FN, "optimized"),
    ]


def test_pruning_drops_old_rollups_with_the_raw_samples(store: ControlStore) -> None:
    fill(store, hours=0.5, batch_s=60)

    store.prune_samples(before=T0 + timedelta(minutes=20))

    rows = store.rollup_samples(
        ["optimizer_requests_total"], resolution_s=60, start=T0, end=T0 + timedelta(hours=1)
    )
    assert rows
    assert min(r.ts for r in rows) >= (T0 + timedelta(minutes=19)).timestamp()


def test_short_steps_read_the_raw_samples() -> None:
    assert resolution_for(5, 60) is None
    assert resolution_for(90, 90) is None
    assert resolution_for(120, 120) == 60
    assert resolution_for(900, 900) == 300

"""The embedded source computes the derived series from a real /metrics target scraped into the store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from prometheus_client import ProcessCollector

from control.embedded import EmbeddedSource
from control.errors import UnknownMetric
from control.scraper import Scraper
from control.store import ControlStore
from tests.control.conftest import FN, FakeClock, MetricsTarget


def scrape_steps(
    target: MetricsTarget, scraper: Scraper, clock: FakeClock, steps: int, step_s: float = 5.0
) -> None:
    """Record calls on both cohorts, scrape, advance the clock; `steps` times."""
    for i in range(steps):
        target.calls("optimized", 100, errors=2, backend=10, latency_s=0.02)
        target.calls("direct", 50, backend=50, latency_s=0.3)
        target.hits.labels(FN).inc(90)
        target.misses.labels(FN).inc(10)
        target.cache_bytes.labels(FN).set(1000 + i)
        scraper.scrape_once()
        if i < steps - 1:
            clock.advance(step_s)


@pytest.fixture
def scraper(store: ControlStore, metrics_target: MetricsTarget, clock: FakeClock) -> Iterator[Scraper]:
    s = Scraper(store, [metrics_target.url], clock=clock)
    yield s
    s.close()


@pytest.fixture
def source(store: ControlStore, clock: FakeClock) -> EmbeddedSource:
    return EmbeddedSource(store, clock=clock)


def test_ratios_per_cohort_over_an_aligned_window(metrics_target, scraper, clock, source):
    scrape_steps(metrics_target, scraper, clock, 13)

    optimized_errors = source.window("error_rate", fn=FN, path="optimized", window_s=60)
    assert optimized_errors.value == pytest.approx(0.02)
    assert optimized_errors.samples == 1200
    assert source.window("error_rate", fn=FN, path="direct").value == 0.0
    assert source.window("call_reduction", fn=FN, path="optimized").value == pytest.approx(0.9)
    # Both cohorts: 1 - (120 + 600) / (1200 + 600)
    both = source.window("call_reduction", fn=FN)
    assert both.value == pytest.approx(0.6)
    assert both.samples == 1800
    assert source.window("cache_hit_rate", fn=FN).value == pytest.approx(0.9)
    assert source.window("request_rate", fn=FN, path="direct").value == pytest.approx(10.0)
    assert source.window("backend_rate", fn=FN).value == pytest.approx(12.0)


def test_p95_interpolates_inside_the_bucket_like_histogram_quantile(metrics_target, scraper, clock, source):
    scrape_steps(metrics_target, scraper, clock, 13)

    # All optimized calls fall in (0.01, 0.025]: 0.01 + 0.015 * 0.95
    optimized = source.window("p95_latency_s", fn=FN, path="optimized")
    assert optimized.value == pytest.approx(0.02425)
    assert optimized.samples == 1200
    # All direct calls fall in (0.25, 0.5]: 0.25 + 0.25 * 0.95
    assert source.window("p95_latency_s", fn=FN, path="direct").value == pytest.approx(0.4875)
    # Both cohorts: 1800 calls, rank 1710 lies in (0.25, 0.5] holding 600 with 1200 below.
    assert source.window("p95_latency_s", fn=FN).value == pytest.approx(0.25 + 0.25 * (510 / 600))


def test_unaligned_window_extrapolates_to_its_edges_like_increase(metrics_target, scraper, clock, source):
    scrape_steps(metrics_target, scraper, clock, 13)

    # Window [2.5 s, 62.5 s] after the first scrape holds 12 scrapes spanning 55 s of
    # a steady 20 calls/s; increase() extrapolates 2.5 s at each edge: 1100 * 60/55.
    end = clock.now + timedelta(seconds=2.5)
    value = source.window("request_rate", fn=FN, path="optimized", window_s=60, end=end)
    assert value.samples == 1200
    assert value.value == pytest.approx(20.0)


def test_counter_reset_counts_the_value_after_the_restart(metrics_target, scraper, clock, source):
    for i in range(13):
        if i == 7:
            metrics_target.restart()
        metrics_target.calls("optimized", 100)
        scraper.scrape_once()
        if i < 12:
            clock.advance(5)

    # Scrapes show 100..700, then 100..600 after the restart: 12 x 100 calls in the window.
    value = source.window("error_rate", fn=FN, path="optimized")
    assert value.samples == 1200
    assert value.value == 0.0


def test_gauges_take_the_window_maximum_and_count_scrapes(metrics_target, scraper, clock, source):
    ProcessCollector(registry=metrics_target.registry)
    scrape_steps(metrics_target, scraper, clock, 13)

    cache = source.window("cache_bytes", fn=FN)
    assert cache.value == 1012.0
    assert cache.samples == 13
    rss = source.window("rss_bytes")
    assert rss.value is not None and rss.value > 1_000_000
    assert rss.samples == 13


def test_no_value_without_two_scrapes_or_without_calls(metrics_target, scraper, clock, source):
    assert source.window("error_rate", fn=FN, path="optimized").value is None
    metrics_target.calls("optimized", 10)
    scraper.scrape_once()
    single = source.window("error_rate", fn=FN, path="optimized")
    assert single.value is None and single.samples == 0
    clock.advance(5)
    scraper.scrape_once()
    # Two scrapes but no new call: 0 / 0 has no value, as PromQL's NaN.
    idle = source.window("error_rate", fn=FN, path="optimized")
    assert idle.value is None and idle.samples == 0
    assert source.window("p95_latency_s", fn=FN, path="optimized").value is None


def test_series_gives_one_point_per_step(metrics_target, scraper, clock, source):
    start = clock.now
    scrape_steps(metrics_target, scraper, clock, 25)

    points = source.series("request_rate", fn=FN, path="optimized", start=start, end=clock.now, step_s=10)
    assert [p.time for p in points] == [start + timedelta(seconds=s) for s in range(10, 121, 10)]
    # Every point after the first full minute sees a steady 20 calls/s.
    assert [round(p.value, 6) for p in points if p.time >= start + timedelta(seconds=60)] == [20.0] * 7
    assert all(p.time.tzinfo is not None for p in points)


def test_series_over_a_short_window_shows_a_burst_the_default_dilutes(metrics_target, scraper, clock, source):
    start = clock.now
    # A minute without errors, then 20 s with 12% errors on the optimized cohort.
    for i in range(17):
        metrics_target.calls("optimized", 100, errors=12 if i >= 13 else 0)
        scraper.scrape_once()
        if i < 16:
            clock.advance(5)

    short = source.series("error_rate", fn=FN, path="optimized", start=start, end=clock.now, window_s=20)
    default = source.series("error_rate", fn=FN, path="optimized", start=start, end=clock.now)
    assert short[-1].time == default[-1].time == clock.now
    # What a 20 s guardrail judges: the burst alone.
    assert short[-1].value == pytest.approx(0.12)
    assert short[-1].value == source.window("error_rate", fn=FN, path="optimized", window_s=20).value
    # The default minute holds 1200 calls of which the burst's 48 failed.
    assert default[-1].value == pytest.approx(0.04)
    # A window shorter than the step is clamped to the step.
    clamped = source.series(
        "error_rate", fn=FN, path="optimized", start=start, end=clock.now, step_s=10, window_s=1
    )
    assert clamped == source.series(
        "error_rate", fn=FN, path="optimized", start=start, end=clock.now, step_s=10, window_s=10
    )
    assert clamped[-1].value == pytest.approx(0.12)


def test_other_functions_do_not_leak_into_a_flags_function(metrics_target, scraper, clock, source):
    for _ in range(13):
        metrics_target.calls("optimized", 100, errors=0)
        metrics_target.calls("optimized", 100, errors=100, fn="other_fn")
        scraper.scrape_once()
        clock.advance(5)
    assert source.window("error_rate", fn=FN, path="optimized", end=clock.now).value == 0.0
    assert source.window("error_rate", path="optimized", end=clock.now).value == pytest.approx(0.5)


def test_unknown_metric_is_refused(source):
    with pytest.raises(UnknownMetric):
        source.window("latency_p99")


def test_breaker_bypass_rate_counts_the_breakers_bypasses_of_the_optimized_cohort(
    metrics_target, scraper, clock, source
):
    for _ in range(4):
        metrics_target.calls("optimized", 90)
        metrics_target.calls("direct", 100)
        metrics_target.bypass.labels(FN, "breaker_error_rate").inc(10)
        # The SDK had not loaded the flag yet: not the breaker, so not counted.
        metrics_target.bypass.labels(FN, "flag_unavailable").inc(50)
        scraper.scrape_once()
        clock.advance(1)
    clock.advance(-1)
    rate = source.window("breaker_bypass_rate", fn=FN, window_s=3)
    assert rate.value == pytest.approx(0.1)
    assert rate.samples == 300


def test_no_breaker_bypass_is_a_rate_of_zero(metrics_target, scraper, clock, source):
    scrape_steps(metrics_target, scraper, clock, 3, step_s=1)
    assert source.window("breaker_bypass_rate", fn=FN, window_s=2).value == 0.0


def test_latency_histogram_sums_bucket_increases_by_bound(metrics_target, scraper, clock, source):
    scrape_steps(metrics_target, scraper, clock, 3, step_s=1)
    direct = source.latency_histogram(fn=FN, path="direct", window_s=2)
    optimized = source.latency_histogram(fn=FN, path="optimized", window_s=2)
    assert direct.count == pytest.approx(100) and optimized.count == pytest.approx(200)
    # direct calls take 0.3 s: all in the bucket up to 0.5 s; optimized ones (0.02 s) up to 0.025 s.
    assert direct.bound_of_rank(0.95 * direct.count) == 0.5
    assert optimized.bound_of_rank(0.95 * optimized.count) == 0.025
    assert direct.cumulative(0.25) == 0.0

"""The embedded scraper keeps the contract's samples, survives dead targets and prunes old samples."""

from __future__ import annotations

from datetime import timedelta

from control.scraper import Scraper, parse_samples
from control.store import ControlStore
from rollguard import free_port
from tests.control.conftest import FN, FakeClock, MetricsTarget


def test_stores_contract_samples_only(store: ControlStore, metrics_target: MetricsTarget, clock: FakeClock):
    metrics_target.calls("optimized", 3, errors=1)
    metrics_target.unrelated.inc()
    scraper = Scraper(store, [metrics_target.url], clock=clock)
    try:
        stored = scraper.scrape_once()
    finally:
        scraper.close()

    rows = store.raw_samples(
        [
            "optimizer_requests_total",
            "optimizer_call_seconds_bucket",
            "optimizer_call_seconds_count",
            "unrelated_thing_total",
            "optimizer_requests_created",
        ],
        start=clock.now - timedelta(seconds=1),
        end=clock.now,
    )
    names = {r.name for r in rows}
    assert names == {
        "optimizer_requests_total",
        "optimizer_call_seconds_bucket",
        "optimizer_call_seconds_count",
    }
    assert stored >= len(rows)
    buckets = {r.le: r.value for r in rows if r.name == "optimizer_call_seconds_bucket"}
    assert buckets["+Inf"] == 3.0 and buckets["0.01"] == 0.0
    requests = [r for r in rows if r.name == "optimizer_requests_total"]
    assert [(r.fn, r.path, r.value) for r in requests] == [(FN, "optimized", 3.0)]


def test_a_dead_target_does_not_stop_the_others(store, metrics_target, clock):
    metrics_target.calls("direct", 1)
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    scraper = Scraper(store, [dead, metrics_target.url], clock=clock)
    try:
        assert scraper.scrape_once() > 0
    finally:
        scraper.close()
    rows = store.raw_samples(["optimizer_requests_total"], start=clock.now, end=clock.now)
    assert {r.target for r in rows} == {metrics_target.url}


def test_prunes_samples_older_than_the_retention(store, metrics_target, clock):
    metrics_target.calls("direct", 1)
    scraper = Scraper(store, [metrics_target.url], clock=clock, retention_s=600)
    try:
        scraper.scrape_once()
        first = clock.now
        clock.advance(601)
        scraper.scrape_once()
    finally:
        scraper.close()
    names = ["optimizer_requests_total"]
    assert store.raw_samples(names, start=first - timedelta(seconds=1), end=first) == []
    assert len(store.raw_samples(names, start=clock.now, end=clock.now)) == 1


def test_parse_keeps_histogram_buckets_and_skips_created_series(clock):
    text = (
        "# TYPE optimizer_call_seconds histogram\n"
        'optimizer_call_seconds_bucket{fn="f",path="direct",le="0.1"} 2\n'
        'optimizer_call_seconds_bucket{fn="f",path="direct",le="+Inf"} 3\n'
        'optimizer_call_seconds_count{fn="f",path="direct"} 3\n'
        'optimizer_call_seconds_sum{fn="f",path="direct"} 0.4\n'
        'optimizer_call_seconds_created{fn="f",path="direct"} 1.7e9\n'
    )
    samples = parse_samples(text, target="t", time=clock.now)
    assert [(s.name, s.labels.get("le"), s.value) for s in samples] == [
        ("optimizer_call_seconds_bucket", "0.1", 2.0),
        ("optimizer_call_seconds_bucket", "+Inf", 3.0),
        ("optimizer_call_seconds_count", None, 3.0),
        ("optimizer_call_seconds_sum", None, 0.4),
    ]

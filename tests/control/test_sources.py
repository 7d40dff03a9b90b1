"""Side by side: the Prometheus source and the embedded source agree on the same traffic.

Both scrape the same real /metrics target every second: a real Prometheus
(Debian's binary) and the embedded scraper into the store. Both are then
asked for every derived metric over the same window ending at the same
instant. They cannot agree to the last digit: each samples the counters at
its own scrape instants (up to one scrape interval apart) and, like PromQL's
increase(), extrapolates from its first and last sample to the window's edges.
So a rate may differ by about one scrape interval's worth of traffic at each
edge, 2 x 1 s / 20 s = 10% at most; ratios of counters scraped together
(error rate, call reduction, hit rate) and the p95 of a steady mix differ
only by the calls in flight during a scrape, well under 1%.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from control.embedded import EmbeddedSource
from control.metrics import MetricSource
from control.prometheus_source import PrometheusSource
from control.scraper import Scraper
from control.store import ControlStore
from tests.control.conftest import FN, MetricsTarget
from tests.control.prometheus import start_prometheus
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW_S = 20
# (metric, path, relative tolerance, absolute tolerance)
EXPECTATIONS = [
    ("error_rate", "optimized", 0.0, 0.005),
    ("error_rate", "direct", 0.0, 0.005),
    ("call_reduction", "optimized", 0.0, 0.005),
    ("call_reduction", None, 0.0, 0.005),
    ("cache_hit_rate", None, 0.0, 0.005),
    ("p95_latency_s", "optimized", 0.01, 0.0),
    ("p95_latency_s", "direct", 0.01, 0.0),
    ("request_rate", "optimized", 0.10, 0.0),
    ("request_rate", "direct", 0.10, 0.0),
    ("backend_rate", None, 0.10, 0.0),
    ("cache_bytes", None, 0.0, 0.0),
]


def drive(target: MetricsTarget, stop: threading.Event) -> None:
    """Steady traffic: every 50 ms, 10 optimized calls (1 error, 2 reach the backend) and 20 direct."""
    while not stop.wait(0.05):
        target.calls("optimized", 10, errors=1, backend=2, latency_s=0.02)
        target.calls("direct", 18, latency_s=0.003)
        target.calls("direct", 2, latency_s=0.3)
        target.hits.labels(FN).inc(8)
        target.misses.labels(FN).inc(2)
        target.cache_bytes.labels(FN).set(123_456)


@pytest.fixture
def live_sources(tmp_path, metrics_target: MetricsTarget) -> Iterator[tuple[MetricSource, MetricSource]]:
    store = ControlStore(f"sqlite:///{tmp_path / 'control.db'}")
    scraper = Scraper(store, [metrics_target.url], interval_s=1.0)
    stop = threading.Event()
    threads = [
        threading.Thread(target=drive, args=(metrics_target, stop)),
        threading.Thread(target=scraper.run, args=(stop,)),
    ]
    prometheus = start_prometheus(tmp_path, [metrics_target.url])
    for t in threads:
        t.start()
    try:
        yield PrometheusSource(prometheus.url), EmbeddedSource(store)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        prometheus.stop()
        scraper.close()
        store.close()


def test_prometheus_and_embedded_sources_agree_on_every_metric(live_sources):
    prometheus, embedded = live_sources
    full_window = f'count_over_time(optimizer_requests_total{{path="optimized"}}[{WINDOW_S + 2}s])'
    wait_until(
        lambda: prometheus_ready(prometheus, full_window) and embedded_ready(embedded),
        timeout=60,
        what=f"{WINDOW_S + 2}s of samples in Prometheus and in the store",
    )
    end = datetime.now(UTC) - timedelta(seconds=1.5)  # both have scraped past this instant

    for metric, path, rel, abs_ in EXPECTATIONS:
        ours = embedded.window(metric, fn=FN, path=path, window_s=WINDOW_S, end=end)
        theirs = prometheus.window(metric, fn=FN, path=path, window_s=WINDOW_S, end=end)
        assert ours.value is not None and theirs.value is not None, (metric, path, ours, theirs)
        assert ours.value == pytest.approx(theirs.value, rel=rel, abs=abs_), (metric, path, ours, theirs)
        assert ours.samples == pytest.approx(theirs.samples, rel=0.10, abs=2), (metric, path, ours, theirs)
    # Series for charts agree point by point too.
    start = end - timedelta(seconds=10)
    ours = embedded.series("error_rate", fn=FN, path="optimized", start=start, end=end, step_s=5)
    theirs = prometheus.series("error_rate", fn=FN, path="optimized", start=start, end=end, step_s=5)
    assert [p.time for p in ours] == [p.time for p in theirs]
    assert len(ours) >= 2
    assert [round(p.value, 2) for p in ours] == [round(p.value, 2) for p in theirs] == [0.1] * len(ours)


def prometheus_ready(source: MetricSource, query: str) -> bool:
    assert isinstance(source, PrometheusSource)
    from prometheus_api_client import PrometheusApiClientException
    from requests import RequestException

    try:
        result = source._prom.custom_query(query)
    except (PrometheusApiClientException, RequestException):
        return False
    return bool(result) and float(result[0]["value"][1]) >= WINDOW_S + 1


def embedded_ready(source: MetricSource) -> bool:
    assert isinstance(source, EmbeddedSource)
    span = source.store.sample_span()
    return span is not None and span[1] - span[0] >= timedelta(seconds=WINDOW_S + 2)

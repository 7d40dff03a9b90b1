"""Side by side: the Prometheus source and the embedded source agree on the same traffic.

One real Prometheus (Debian's binary) and the embedded scraper both scrape,
every second, two real targets: the live portal under `rollguard traffic run`
(with a fault injected on its optimized path so that error rates are not
zero), and a prometheus_client endpoint the test drives with a steady,
known mix under another `fn`. Both sources are then asked for every derived
metric over the same window ending at the same instant.

They cannot agree to the last digit: each samples the counters at its own
scrape instants (up to one scrape interval apart) and, like PromQL's increase(),
extrapolates from its first and last sample to the window's edges. So a count
(and a rate, a count over the window) may differ at each edge by the calls of
about one interval: see `count_band`. A ratio of counters scraped together
differs only through the calls at those edges, which for the steady mix is
nothing and for the portal at most their share of the window; a p95 moves as
much as those edge calls shift its rank: within its bucket for the steady mix,
across empty buckets for the portal, whose p95s are compared by rank instead.

The portal's optimized path must carry steady traffic for that: its local
circuit breaker would trip on the injected fault (a 20% error share is its
default threshold, and one failed MyTestSeries batch is 12 errors at once) and
send the optimized cohort direct for 5 s cool-downs and probes, so that the
path ran in on/off episodes of 40-75 calls a second and a window held 35 to
183 of its calls, a whole episode's second possibly at one edge (54 calls
against 84 failed). The flag's payload keeps the breaker from judging: the
optimized path then runs at about 40 calls a second, some 800 a window.
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta

import pytest

from control.embedded import EmbeddedSource
from control.metrics import Histogram
from control.prometheus_source import PrometheusSource
from control.scraper import Scraper
from control.store import ControlStore
from flags.client import RollbackPolicy
from tests.control.conftest import MetricsTarget
from tests.control.portal import start_portal, start_traffic
from tests.control.prometheus import start_prometheus
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW_S = 20
RAMP_S = 10
SCRAPE_S = 1  # both sources' scrape interval
PORTAL_FN = "get_all_exam_attempts"
RATIOS = {"error_rate", "call_reduction", "cache_hit_rate", "breaker_bypass_rate"}
RATES = {"request_rate", "backend_rate"}
GAUGES = {"cache_bytes", "rss_bytes"}
STEADY_FN = "steady_mix"
# metric, path, relative tolerance, absolute tolerance
STEADY = [
    ("error_rate", "optimized", 0, 0.002),
    ("error_rate", "direct", 0, 0.002),
    ("call_reduction", "optimized", 0, 0.002),
    ("call_reduction", None, 0, 0.002),
    ("cache_hit_rate", None, 0, 0.002),
    ("p95_latency_s", "optimized", 0.01, 0),
    ("p95_latency_s", "direct", 0.01, 0),
    ("request_rate", "optimized", 0, 0),  # rates: the counts' band, see count_band
    ("request_rate", "direct", 0, 0),
    ("backend_rate", None, 0, 0),
    ("cache_bytes", None, 0, 0),
    ("breaker_bypass_rate", None, 0, 0.01),
]
PORTAL = [
    ("error_rate", "optimized", 0, 0.03),
    ("error_rate", "direct", 0, 0.005),
    ("call_reduction", "optimized", 0, 0.04),
    ("cache_hit_rate", None, 0, 0.04),
    ("request_rate", "optimized", 0, 0),
    ("request_rate", "direct", 0, 0),
    ("p95_latency_s", "optimized", 0, 0),  # compared by rank: see below
    ("p95_latency_s", "direct", 0, 0),
    ("cache_bytes", None, 0.10, 0),
]


# The most calls of one `fn` that arrive together: a 50 ms tick's direct calls of the steady mix,
# a MyTestSeries page load's calls of the portal.
BURSTS = {STEADY_FN: 20, PORTAL_FN: 12}


def count_band(n: int, burst: int) -> float:
    """How far two sources' counts of the same `n` calls in a window may differ.

    At each edge the sources' scrapes lie up to SCRAPE_S apart. The calls between
    them are counted by one and not the other, and each extrapolates to the edge at
    its window's average rate r = n / WINDOW_S instead: they differ by those calls
    less r times the gap, at most r x SCRAPE_S (no calls there) or the calls of one
    interval, r x SCRAPE_S plus a burst arriving at once. Two edges: 2 x (r x SCRAPE_S
    + burst), about 10% of n plus two bursts (the portal's ~800 optimized calls: 104;
    the worst seen, on a busy machine, was 0.43 of that). A source that counts twice the calls is off by n.
    """
    return 2 * (n / WINDOW_S * SCRAPE_S + burst)


def steady_mix(target: MetricsTarget, stop: threading.Event) -> None:
    """Every 50 ms: 10 optimized calls (1 error, 2 reach the backend) and 20 direct (2 slow)."""
    while not stop.wait(0.05):
        target.calls("optimized", 10, errors=1, backend=2, latency_s=0.02, fn=STEADY_FN)
        target.calls("direct", 18, latency_s=0.003, fn=STEADY_FN)
        target.calls("direct", 2, latency_s=0.3, fn=STEADY_FN)
        target.hits.labels(STEADY_FN).inc(8)
        target.misses.labels(STEADY_FN).inc(2)
        target.cache_bytes.labels(STEADY_FN).set(123_456)
        # One optimized-cohort call in 11 sent direct by the breaker; SDK-not-ready bypasses don't count.
        target.bypass.labels(STEADY_FN, "breaker_error_rate").inc(1)
        target.bypass.labels(STEADY_FN, "flag_unavailable").inc(5)


def test_prometheus_and_embedded_sources_agree(tmp_path, flag_service, metrics_target):
    with flag_service.admin("operator") as admin:
        admin.create_flag(
            "exam-attempts-optimization",
            enabled=True,
            rollout=50,
            state="rolling_out",
            rollback=RollbackPolicy(2, "hold"),
            # The breaker judges only with this many optimized calls in its 1 s window: never (see above).
            payload={"fn": PORTAL_FN, "breaker_min_calls": 1_000_000},
        )
    portal = start_portal(tmp_path, flag_service)
    targets = [portal.metrics_url, metrics_target.url]
    store = ControlStore(f"sqlite:///{tmp_path / 'control.db'}")
    scraper = Scraper(store, targets, interval_s=SCRAPE_S)
    stop = threading.Event()
    threads = [
        threading.Thread(target=steady_mix, args=(metrics_target, stop)),
        threading.Thread(target=scraper.run, args=(stop,)),
    ]
    prometheus = None
    traffic = None
    try:
        # Inside the try: a missing Prometheus skips the test, and the portal must still stop.
        prometheus = start_prometheus(tmp_path, targets, scrape_interval_s=SCRAPE_S)
        portal.inject_fault(error_rate=0.2)
        traffic = start_traffic(portal, tmp_path / "traffic.log", users=20, duration_s=120)
        for t in threads:
            t.start()
        full = f'count_over_time(optimizer_requests_total{{path="optimized"}}[{WINDOW_S + 2}s])'
        # All users load MyTestSeries together as the traffic starts: a burst of about 120 calls
        # that one source may catch at the window's edge and the other not. The window starts
        # RAMP_S after the portal's first optimized call, when the users' pauses have spread them.
        served = f'optimizer_requests_total{{path="optimized",fn="{PORTAL_FN}"}} > 0'
        settled = f"count_over_time(({served})[{WINDOW_S + RAMP_S}s:1s])"
        wait_until(
            lambda: (
                prometheus.has_samples(full, WINDOW_S + 1)
                and prometheus.has_samples(settled, WINDOW_S + RAMP_S)
                and _span_s(store) >= WINDOW_S + 2
            ),
            timeout=120,
            what="a full window of samples from both targets in Prometheus and in the store",
        )
        end = datetime.now(UTC) - timedelta(seconds=1.5)  # both have scraped past this instant
        theirs, ours = PrometheusSource(prometheus.url), EmbeddedSource(store)

        for fn, expectations in ((STEADY_FN, STEADY), (PORTAL_FN, PORTAL)):
            for metric, path, rel, abs_ in expectations:
                mine = ours.window(metric, fn=fn, path=path, window_s=WINDOW_S, end=end)
                prom = theirs.window(metric, fn=fn, path=path, window_s=WINDOW_S, end=end)
                where = (fn, metric, path, mine, prom)
                assert mine.value is not None and prom.value is not None, where
                # The samples of a gauge are scrapes, of which one may be late past an edge.
                burst = 1 if metric in GAUGES else BURSTS[fn]
                band = count_band(max(mine.samples, prom.samples), burst)
                if metric == "cache_bytes":
                    # A growing gauge, scraped by each on its own 1 s schedule: their newest scrapes in
                    # the window lie up to a scrape apart, so they may differ by up to 2 s of growth.
                    earlier = ours.window(metric, fn=fn, window_s=WINDOW_S, end=end - timedelta(seconds=2))
                    abs_ = max(abs_, mine.value - (earlier.value or 0.0))
                if metric in RATES:
                    abs_ = band / WINDOW_S
                if metric in RATIOS:
                    # A ratio differs only through the calls one window holds and the other not: at
                    # most their share of the larger window (a failed MyTestSeries batch of 12 calls at
                    # an edge moves the portal's error rate by 0.015 at about 800 calls).
                    abs_ = max(abs_, abs(mine.samples - prom.samples) / max(mine.samples, prom.samples))
                if metric == "p95_latency_s" and fn == PORTAL_FN:
                    # The portal's latencies crowd a few buckets with empty ones between them (optimized:
                    # ~96% cache hits under 0.5 ms, then a sparse tail from 1 ms): the calls at an edge
                    # may carry the p95's rank across several buckets. Compare ranks, not buckets.
                    hists = tuple(
                        source.latency_histogram(fn=fn, path=path, window_s=WINDOW_S, end=end)
                        for source in (ours, theirs)
                    )
                    _assert_p95s_agree((mine.value, prom.value), (hists[0], hists[1]), band, where)
                else:
                    assert mine.value == pytest.approx(prom.value, rel=rel, abs=abs_), where
                assert abs(mine.samples - prom.samples) <= band, (where, band)
        assert ours.window("breaker_bypass_rate", fn=STEADY_FN, window_s=WINDOW_S, end=end).value == (
            pytest.approx(1 / 11, abs=0.01)
        )
        # The latency histograms behind the comparative latency test: same buckets, same counts.
        for path in ("optimized", "direct"):
            mine_h, prom_h = (
                s.latency_histogram(fn=STEADY_FN, path=path, window_s=WINDOW_S, end=end)
                for s in (ours, theirs)
            )
            assert [b for b, _ in mine_h.buckets] == [b for b, _ in prom_h.buckets]
            assert mine_h.count == pytest.approx(prom_h.count, rel=0.10)
            assert mine_h.bound_of_rank(0.95 * mine_h.count) == prom_h.bound_of_rank(0.95 * prom_h.count)
        # RSS sums both targets' processes (the portal's and this test's).
        rss = (
            ours.window("rss_bytes", window_s=WINDOW_S, end=end),
            theirs.window("rss_bytes", window_s=WINDOW_S, end=end),
        )
        assert rss[0].value == pytest.approx(rss[1].value, rel=0.05)
        # The fault shows on the portal's optimized path only.
        assert (
            ours.window("error_rate", fn=PORTAL_FN, path="optimized", window_s=WINDOW_S, end=end).value > 0.02  # type: ignore[operator]
        )
        assert ours.window("error_rate", fn=PORTAL_FN, path="direct", window_s=WINDOW_S, end=end).value == 0
        # Chart series agree point by point, at the same step-aligned instants.
        start = end - timedelta(seconds=10)
        mine_series = ours.series(
            "error_rate", fn=STEADY_FN, path="optimized", start=start, end=end, step_s=5
        )
        prom_series = theirs.series(
            "error_rate", fn=STEADY_FN, path="optimized", start=start, end=end, step_s=5
        )
        assert len(mine_series) >= 2
        assert [p.time for p in mine_series] == [p.time for p in prom_series]
        assert [round(p.value, 2) for p in mine_series] == [round(p.value, 2) for p in prom_series]
        assert {round(p.value, 2) for p in mine_series} == {0.1}
        # And over a guardrail's shorter window, which the Prometheus source uses as the range.
        mine_short, prom_short = (
            source.series(
                "error_rate", fn=STEADY_FN, path="optimized", start=start, end=end, step_s=5, window_s=10
            )
            for source in (ours, theirs)
        )
        assert len(mine_short) >= 2
        assert [p.time for p in mine_short] == [p.time for p in prom_short]
        assert [round(p.value, 2) for p in mine_short] == [round(p.value, 2) for p in prom_short]
    finally:
        stop.set()
        if traffic is not None:
            traffic.stop()
        for t in threads:
            if t.is_alive():
                t.join(timeout=10)
        if prometheus is not None:
            prometheus.process.terminate()
        portal.process.terminate()
        scraper.close()
        store.close()


def _assert_p95s_agree(
    values: tuple[float, float], hists: tuple[Histogram, Histogram], band: float, where: object
) -> None:
    """Each p95 sits at rank 0.95 n of its own histogram; up to the calls at the edges, of the other's too.

    If the histograms' cumulative counts differ by at most `apart` at every bound, so do
    their counts interpolated at any value, as histogram_quantile interpolates: the other's
    count at one's p95 lies within `apart` of that one's rank. `apart` is the calls one
    window holds and the other not, within the count band.
    """
    bounds = [bound for bound, _ in hists[0].buckets]
    assert bounds == [bound for bound, _ in hists[1].buckets], where
    apart = max(abs(hists[0].cumulative(bound) - hists[1].cumulative(bound)) for bound in bounds)
    assert apart <= band, (where, apart, band)
    for value, own, other in ((values[0], hists[0], hists[1]), (values[1], hists[1], hists[0])):
        rank = 0.95 * own.count
        assert abs(_count_at(other, value) - rank) <= apart + 1e-6, (where, apart, hists)


def _count_at(hist: Histogram, value: float) -> float:
    """The observations at or below `value`, interpolated in its bucket as histogram_quantile does."""
    lower, below = 0.0, 0.0
    for bound, count in hist.buckets:
        if value <= bound:
            return below if math.isinf(bound) else below + (count - below) * (value - lower) / (bound - lower)
        lower, below = bound, count
    return below


def _span_s(store: ControlStore) -> float:
    span = store.sample_span()
    return 0.0 if span is None else (span[1] - span[0]).total_seconds()

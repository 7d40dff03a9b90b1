"""The comparative latency guardrail: table tests on histograms, and its false-alarm rate and power."""

from __future__ import annotations

import math

import numpy as np
import pytest

from control.decisions import DEFAULT_ALPHA, Outcome
from control.latency import binomial_upper_tail, evaluate_latency
from control.metrics import Histogram
from flags.client import Guardrail

LATENCY = Guardrail("p95_latency_s", "<=", 0.1, window_s=10, min_samples=20, kind="comparative")


def _bounds() -> list[float]:
    # The portal's buckets: 0.5 ms growing by 25% up to 5 s, then +Inf.
    bounds = [0.0005]
    while bounds[-1] < 5.0:
        bounds.append(round(bounds[-1] * 1.25, 6))
    return [*bounds, math.inf]


BOUNDS = _bounds()


def histogram(latencies) -> Histogram:
    values = np.asarray(latencies, dtype=float)
    return Histogram.of({b: float(np.count_nonzero(values <= b)) for b in BOUNDS})


rng = np.random.default_rng(14)
FAST = rng.lognormal(np.log(0.002), 0.5, 800)  # cache hits, a couple of ms
DB = rng.lognormal(np.log(0.02), 0.4, 800)  # a query each, ~20 ms
SATURATED = rng.lognormal(np.log(1.2), 0.3, 800)  # everything queues for a second or more


@pytest.mark.parametrize(
    ("optimized", "direct", "expected"),
    [
        pytest.param(FAST, DB, Outcome.PASS, id="healthy-cache-faster-than-direct"),
        pytest.param(SATURATED * 0.8, SATURATED, Outcome.PASS, id="saturated-machine-both-slow"),
        pytest.param(
            np.concatenate([FAST, SATURATED[:60]]),
            SATURATED,
            Outcome.PASS,
            id="spike-of-misses-still-below-direct",
        ),
        pytest.param(FAST + 0.3, DB, Outcome.FAIL, id="fault-adds-300ms-to-every-optimized-call"),
        pytest.param(DB + 0.05, DB, Outcome.PASS, id="slower-within-the-margin"),
        pytest.param(
            np.concatenate([FAST[:700], DB[:100] + 1.0]), DB, Outcome.FAIL, id="one-in-eight-a-second-slow"
        ),
        pytest.param(FAST[:10] + 1.0, DB, Outcome.NO_DATA, id="too-few-optimized-calls"),
        pytest.param(FAST, DB + 10.0, Outcome.NO_DATA, id="direct-beyond-the-last-bucket"),
    ],
)
def test_latency_verdicts(optimized, direct, expected):
    verdict = evaluate_latency(LATENCY, histogram(optimized), histogram(direct))
    assert verdict.outcome is expected, verdict.detail
    if expected is Outcome.FAIL:
        assert verdict.value is not None and verdict.value > LATENCY.threshold


def test_false_alarms_per_check_stay_below_alpha_at_the_null_boundary():
    # Worst case H0 allows: exactly 5% of optimized calls above the limit L, drawn anew each check.
    direct = histogram(DB)
    limit = direct.bound_at_or_above(direct.bound_of_rank(0.95 * direct.count) + LATENCY.threshold)
    checks, n = 4000, 200
    alarms = 0
    for slow in rng.binomial(n, 0.05, checks):
        optimized = np.concatenate([np.full(n - slow, 0.002), np.full(slow, limit * 2)])
        alarms += evaluate_latency(LATENCY, histogram(optimized), direct).outcome is Outcome.FAIL
    assert alarms / checks <= DEFAULT_ALPHA * 2


def test_power_of_a_tail_three_times_the_allowed_share():
    # 15% of 130 optimized calls a second slower: the stated power is about 0.9 at alpha 0.001.
    direct = histogram(DB)
    checks, n = 2000, 130
    detected = 0
    for slow in rng.binomial(n, 0.15, checks):
        optimized = np.concatenate([np.full(n - slow, 0.002), np.full(slow, 1.0)])
        detected += evaluate_latency(LATENCY, histogram(optimized), direct).outcome is Outcome.FAIL
    assert 0.8 < detected / checks < 0.97


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [(0, 10, 0.05), (1, 1, 0.05), (3, 20, 0.05), (12, 40, 0.05), (60, 1000, 0.05), (5, 4, 0.05)],
)
def test_binomial_upper_tail_matches_the_direct_sum(k, n, p):
    exact = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))
    assert binomial_upper_tail(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-15)

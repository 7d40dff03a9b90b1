"""C_min and eta as portal.ideal defines them: table tests of the pure functions in portal.ideal."""

from __future__ import annotations

import pytest

from portal.ideal import Call, Invalidation, eta, minimum_batched_queries, minimum_calls, summarize


def calls(key: str, *times: float) -> list[Call]:
    return [Call(t, key) for t in times]


@pytest.mark.parametrize(
    ("log", "invalidations", "tau", "expected"),
    [
        pytest.param([], [], 1.0, 0, id="empty-log"),
        pytest.param(calls("a", 0.0), [], 1.0, 1, id="one-call"),
        pytest.param(calls("a", 0.0, 0.1, 0.5, 0.99), [], 1.0, 1, id="all-inside-one-window"),
        pytest.param(calls("a", 0.0, 1.0), [], 1.0, 2, id="window-is-half-open"),
        pytest.param(calls("a", 0.0, 0.6, 1.2, 1.8), [], 1.0, 2, id="greedy-reopens-at-first-uncovered"),
        pytest.param(calls("a", 0.0, 0.5) + calls("b", 0.1, 0.2), [], 1.0, 2, id="keys-counted-apart"),
        pytest.param(calls("a", 0.0, 0.5), [Invalidation(0.3, "a")], 1.0, 2, id="invalidation-cuts-window"),
        pytest.param(
            calls("a", 0.0, 0.5), [Invalidation(0.3, "b")], 1.0, 1, id="other-key-invalidation-ignored"
        ),
        pytest.param(calls("a", 0.0, 0.5), [Invalidation(0.0, "a")], 1.0, 2, id="tie-counts-call-first"),
        pytest.param(
            calls("a", 0.0, 0.5), [Invalidation(0.5, "a")], 1.0, 1, id="invalidation-after-last-call"
        ),
        pytest.param(
            calls("a", 0.0, 0.2, 0.4, 0.6),
            [Invalidation(0.1, "a"), Invalidation(0.5, "a")],
            10.0,
            3,
            id="two-cuts-three-windows",
        ),
        pytest.param(calls("a", 0.0, 0.1, 0.2), [], 0.0, 3, id="zero-tau-no-sharing"),
        pytest.param(calls("a", 0.5, 0.0, 0.2), [], 1.0, 1, id="unsorted-input"),
    ],
)
def test_minimum_calls_covers_each_key_greedily(log, invalidations, tau, expected):
    assert minimum_calls(log, invalidations, tau) == expected


@pytest.mark.parametrize(
    ("n", "c_actual", "c_min", "expected"),
    [
        pytest.param(100, 10, 10, 1.0, id="perfect"),
        pytest.param(100, 100, 10, 0.0, id="no-cache"),
        pytest.param(100, 55, 10, 0.5, id="half-way"),
        pytest.param(100, 5, 10, 95 / 90, id="above-one-means-stale"),
        pytest.param(10, 10, 10, 1.0, id="nothing-to-save"),
        pytest.param(10, 8, 10, None, id="fewer-than-possible-with-nothing-to-save"),
    ],
)
def test_eta_is_saved_over_saveable(n, c_actual, c_min, expected):
    assert eta(n=n, c_actual=c_actual, c_min=c_min) == (pytest.approx(expected) if expected else expected)


def test_eta_rejects_more_minimum_than_calls():
    with pytest.raises(ValueError):
        eta(n=5, c_actual=5, c_min=6)


def test_minimum_calls_rejects_negative_tau():
    with pytest.raises(ValueError):
        minimum_calls([], [], -1.0)


@pytest.mark.parametrize(("c_min", "batch", "expected"), [(0, 10, 0), (10, 10, 1), (11, 10, 2), (7, 1, 7)])
def test_batched_minimum_rounds_up(c_min, batch, expected):
    assert minimum_batched_queries(c_min, batch) == expected


def test_summary_reports_n_cmin_and_eta():
    log = calls("a", 0.0, 0.1, 0.2, 0.3) + calls("b", 0.0)
    result = summarize(calls=log, invalidations=[Invalidation(0.15, "a")], tau=5.0, c_actual=3)
    assert result == {"n": 5, "c_actual": 3, "c_min": 3, "tau_s": 5.0, "eta": 1.0}

"""Stale-read detection and latency summaries of the traffic recorder."""

from __future__ import annotations

import pytest

from portal.recording import RunRecorder, check_page, latency_summary, percentile


def my_test_series(*series):
    return {
        "student_id": 7,
        "path": "optimized",
        "calls": [f"7:{sid}" for sid, _ in series],
        "series": [{"series_id": sid, "attempts": [{"id": i} for i in ids]} for sid, ids in series],
    }


def exam_home(series_id, ids, widget_last):
    return {
        "student_id": 7,
        "series_id": series_id,
        "path": "direct",
        "calls": [f"7:{series_id}"] * len(widget_last),
        "attempts": [{"id": i} for i in ids],
        "widgets": [{"last_attempt_id": last} for last in widget_last],
    }


@pytest.mark.parametrize(
    ("page", "body", "own", "stale"),
    [
        pytest.param("my-test-series", my_test_series((1, [1, 50])), {1: {50}}, [], id="shows-own-attempt"),
        pytest.param(
            "my-test-series", my_test_series((1, [1]), (2, [2])), {2: {50}}, [(2, (50,))], id="misses-it"
        ),
        pytest.param("my-test-series", my_test_series((1, [1])), {}, [], id="nothing-submitted"),
        pytest.param("exam-home", exam_home(3, [4, 60], [60, 60]), {3: {60}}, [], id="exam-home-fresh"),
        pytest.param("exam-home", exam_home(3, [4], [4, 4]), {3: {60}}, [(3, (60,))], id="exam-home-stale"),
        pytest.param(
            "exam-home", exam_home(3, [4, 60], [4, 60]), {3: {60}}, [(3, (60,))], id="one-widget-stale"
        ),
        pytest.param("exam-home", exam_home(3, [4], [4]), {2: {60}}, [], id="other-series-submission"),
    ],
)
def test_check_page_finds_missing_own_submissions(page, body, own, stale):
    found = check_page(page, body, own)
    assert [(s.series_id, s.missing_attempt_ids) for s in found] == stale


def test_recorder_counts_stale_reads_only_after_the_submission_returned():
    recorder = RunRecorder()
    recorder.page(page="exam-home", started=0.0, elapsed_s=0.01, body=exam_home(3, [4], [4]))
    recorder.submitted(
        elapsed_s=0.02, returned_at=1.0, body={"student_id": 7, "series_id": 3, "attempt": {"id": 60}}
    )
    recorder.page(page="exam-home", started=1.1, elapsed_s=0.01, body=exam_home(3, [4], [4]))
    recorder.page(page="exam-home", started=1.2, elapsed_s=0.01, body=exam_home(3, [4, 60], [60]))
    assert recorder.stale_reads == 1
    assert len(recorder.calls) == 3
    assert [(i.time, i.key) for i in recorder.invalidation_log()] == [(1.0, "7:3")]
    assert sorted(recorder.latencies_by_path) == ["direct"]


def test_pages_loaded_on_a_fresh_connection_are_counted_with_their_stale_reads():
    recorder = RunRecorder()
    recorder.submitted(
        elapsed_s=0.02, returned_at=1.0, body={"student_id": 7, "series_id": 3, "attempt": {"id": 60}}
    )
    stale, fresh = exam_home(3, [4], [4]), exam_home(3, [4, 60], [60])
    recorder.page(page="exam-home", started=1.1, elapsed_s=0.01, body=stale, fresh_connection=True)
    recorder.page(page="exam-home", started=1.2, elapsed_s=0.01, body=fresh, fresh_connection=True)
    recorder.page(page="exam-home", started=1.3, elapsed_s=0.01, body=stale)
    assert recorder.fresh_connection_checks == 2
    assert recorder.fresh_connection_stale_reads == 1
    assert recorder.stale_reads == 2


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.5, None),
        ([1.0], 0.99, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 0.95, 4.0),
    ],
)
def test_percentile_is_nearest_rank(values, q, expected):
    assert percentile(values, q) == expected


def test_latency_summary_is_in_milliseconds():
    assert latency_summary([0.001, 0.002, 0.003]) == {
        "requests": 3,
        "p50_ms": 2.0,
        "p95_ms": 3.0,
        "p99_ms": 3.0,
    }

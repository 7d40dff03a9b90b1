"""Reading /metrics text: samples summed by name and label."""

from __future__ import annotations

from portal.promtext import parse

TEXT = """# HELP optimizer_requests_total Logical calls.
# TYPE optimizer_requests_total counter
optimizer_requests_total{fn="get_all_exam_attempts",path="optimized"} 120.0
optimizer_requests_total{fn="get_all_exam_attempts",path="direct"} 30.0
optimizer_requests_total{fn="other",path="direct"} 5.0
# HELP portal_db_pool_in_use Connections.
# TYPE portal_db_pool_in_use gauge
portal_db_pool_in_use 7.0
"""


def test_total_sums_the_samples_matching_the_labels():
    scrape = parse(TEXT)
    assert scrape.total("optimizer_requests_total") == 155.0
    assert scrape.total("optimizer_requests_total", fn="get_all_exam_attempts") == 150.0
    assert scrape.total("optimizer_requests_total", fn="get_all_exam_attempts", path="direct") == 30.0
    assert scrape.total("portal_db_pool_in_use") == 7.0
    assert scrape.total("missing_total") == 0.0


def test_values_groups_by_one_label():
    assert parse(TEXT).values("optimizer_requests_total", "path") == {"optimized": 120.0, "direct": 35.0}

"""Optimized and direct paths serve the same data for every request of every scenario, and no stale reads."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from portal.data import load_catalog
from portal.recording import check_page
from portal.scenarios import SCENARIOS, Catalog, LoadPage, Pause, Submit
from tests.portal.conftest import portal

STUDENTS = range(1, 9)
ACTIONS_PER_STUDENT = 40


def _without_path(body):
    return {k: v for k, v in body.items() if k != "path"}


# The tiered layout three times: at the default shares every key stays hot; with a hot tier of 1/2000
# of the budget (about 15 fragments) the keys keep moving between the tiers; with that hot tier free to
# grow to 0.85% of the budget (142 KB, of which the packed tier's index holds 40 KB and its first
# arena chunk 64 KB) while little is packed, the hot tier grows past its share, then shrinks back to it
# once the packed tier takes its first chunk, pushing out what no longer fits.
LAYOUTS: dict[str, dict[str, Any]] = {
    "tiered": {"cache_layout": "tiered"},
    "tiered-small-hot": {"cache_layout": "tiered", "cache_hot_share": 0.0005, "cache_pack_above": 0.0005},
    "tiered-elastic": {"cache_layout": "tiered", "cache_hot_share": 0.0005, "cache_pack_above": 0.0085},
    "packed": {"cache_layout": "packed"},
    "objects": {"cache_layout": "objects"},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_request_of_a_scenario_reads_the_same_data_on_both_paths(make_app, scenario, layout):
    optimized = make_app(optimize=True, **LAYOUTS[layout])
    direct = make_app(optimize=False)
    fast, slow = optimized.test_client(), direct.test_client()
    catalog = load_catalog(portal(optimized).engine)
    plan_catalog = Catalog(catalog.exams)
    plans = {s: SCENARIOS[scenario](s, plan_catalog, random.Random(s)) for s in STUDENTS}
    own: dict[int, dict[int, set[int]]] = {s: {} for s in STUDENTS}
    compared = submitted = 0
    # Students take turns, so one student's submission lands between others' page loads.
    for _round in range(ACTIONS_PER_STUDENT):
        for student, plan in plans.items():
            action = next(a for a in plan if not isinstance(a, Pause))
            if isinstance(action, Submit):
                response = fast.post("/api/exam/submit", json=action.body)
                assert response.status_code == 201
                body = response.get_json()
                own[student].setdefault(body["series_id"], set()).add(body["attempt"]["id"])
                submitted += 1
                continue
            assert isinstance(action, LoadPage)
            a, b = fast.get(action.url), slow.get(action.url)
            assert a.status_code == b.status_code == 200
            assert a.get_json()["path"] == "optimized" and b.get_json()["path"] == "direct"
            assert _without_path(a.get_json()) == _without_path(b.get_json()), action.url
            # Byte for byte, not just the same JSON: both paths splice the same encoded fragments.
            assert a.data.replace(b'"path":"optimized"', b'"path":"direct"', 1) == b.data, action.url
            assert check_page(action.page, a.get_json(), own[student]) == []
            compared += 1
    stats = portal(optimized).optimizer.stats()
    assert compared > 100 and submitted > 0
    # The comparison is only meaningful if the optimized app really served from its cache.
    assert stats["hits"] > stats["misses"] and stats["cache_entries"] > 0


def test_plans_are_endless_and_start_as_documented():
    catalog = Catalog({1: (1, 2), 2: (3, 4)})
    first = list(itertools.islice(SCENARIOS["mass-submission"](9, catalog, random.Random(0)), 3))
    assert isinstance(first[0], Submit) and first[0].student_id == 9
    assert isinstance(first[1], LoadPage) and first[1].page == "my-test-series"
    for plan in SCENARIOS.values():
        assert len(list(itertools.islice(plan(1, catalog, random.Random(1)), 500))) == 500

"""The page endpoints that reproduce the incident's call patterns.

- `GET /api/pages/my-test-series?student_id=`: one `get_all_exam_attempts` call
  per test series of the student (12 with the default seed), made through
  `Optimizer.get_many` so that the optimized path can batch them.
- `GET /api/pages/exam-home?student_id=&series_id=&step=`: one step of an exam
  session; its widgets each read the same attempts, 14 calls over the 5 steps.

The optimizer's value for a key is its `portal.fragments` form: the JSON of
the attempts, encoded when loaded; pages splice it in without re-encoding.
Each response carries the attempts it read, the keys of its logical calls in
order (`calls`) and the path that served them (`path`, and the header
X-Rollguard-Path), so the traffic generator and the tests can compare paths,
compute the ideal and detect stale reads.
"""

from __future__ import annotations

import functools

from flask import Blueprint, Response

from portal import data, fragments
from portal.errors import NotFound
from portal.runtime import Portal, current_portal
from portal.schemas import query_int

bp = Blueprint("pages", __name__, url_prefix="/api/pages")

PATH_HEADER = "X-Rollguard-Path"

# Widgets of each ExamHome step that read the attempts (in the original app each
# widget fetched them on its own): 3 + 3 + 2 + 3 + 3 = 14 calls per session.
EXAM_HOME_STEPS: tuple[tuple[str, ...], ...] = (
    ("header", "progress", "history"),
    ("instructions", "eligibility", "history"),
    ("timer", "resume"),
    ("navigator", "progress", "autosave"),
    ("review", "score", "history"),
)


def user_id_for(student_id: int) -> str:
    """The id the gate buckets a student by (sticky rollout on userId)."""
    return f"s{student_id}"


def _student(portal: Portal) -> int:
    student_id = query_int("student_id", minimum=1)
    if student_id > portal.catalog().max_student_id and student_id > portal.refresh_catalog().max_student_id:
        raise NotFound(f"no student {student_id}", code="unknown_student")
    return student_id


def json_response(body: bytes, *, status: int = 200, path: str | None = None) -> Response:
    """A response of JSON encoded already, passed to the server as it is; `path` in `PATH_HEADER`."""
    headers = {PATH_HEADER: path} if path is not None else None
    return Response(
        body, status=status, content_type="application/json", headers=headers, direct_passthrough=True
    )


def _page(portal: Portal, page: str, path: str, body: bytes) -> Response:
    portal.metrics.page_loaded(page, path)
    return json_response(body, path=path)


@functools.lru_cache(maxsize=1024)
def _series_head(series_id: int, name: str) -> bytes:
    """`{"series_id":..,"name":..,"attempts":` of one series, for its attempts to follow."""
    return fragments.json_object({"series_id": series_id, "name": name})[:-1] + b',"attempts":'


@functools.lru_cache(maxsize=64)
def _widget_head(widget: str) -> bytes:
    return fragments.json_object({"widget": widget})[:-1] + b","


@bp.get("/my-test-series")
def my_test_series() -> Response:
    """List the student's test series, each with its attempts (one call per series)."""
    portal = current_portal()
    student_id = _student(portal)
    user = user_id_for(student_id)
    path = portal.path_for(user)
    catalog = portal.catalog().series
    calls = [data.attempts_key(student_id, series_id) for series_id in catalog]
    # One logical call per series. Direct, that is one query per series as in the original app;
    # optimized, the misses among them are loaded in one batch instead of one batch window each.
    found = portal.optimizer.get_many(calls, user_id=user)
    series = fragments.json_array(
        _series_head(series_id, name) + fragments.attempts_json(found[key]) + b"}"
        for (series_id, name), key in zip(catalog.items(), calls, strict=True)
    )
    fields = {"page": "my-test-series", "path": path, "student_id": student_id, "calls": calls}
    return _page(portal, "my-test-series", path, fragments.json_object(fields, {"series": series}))


@bp.get("/exam-home")
def exam_home() -> Response:
    """One step of an exam session: every widget of the step reads the attempts again."""
    portal = current_portal()
    student_id = _student(portal)
    catalog = portal.catalog()
    series_id = query_int("series_id", minimum=1)
    if series_id not in catalog.series:
        raise NotFound(f"no test series {series_id}", code="unknown_series")
    step = query_int("step", minimum=0, maximum=len(EXAM_HOME_STEPS) - 1, default=0)
    user = user_id_for(student_id)
    path = portal.path_for(user)
    key = data.attempts_key(student_id, series_id)
    widgets = []
    fragment = b""
    for widget in EXAM_HOME_STEPS[step]:
        fragment = portal.optimizer(key, user_id=user)
        widgets.append(_widget_head(widget) + fragments.widget_fields(fragment) + b"}")
    fields = {
        "page": "exam-home",
        "path": path,
        "student_id": student_id,
        "series_id": series_id,
        "step": step,
        "steps": len(EXAM_HOME_STEPS),
        "exams": list(catalog.exams.get(series_id, ())),
        "calls": [key] * len(widgets),
    }
    encoded = {"widgets": fragments.json_array(widgets), "attempts": fragments.attempts_json(fragment)}
    return _page(portal, "exam-home", path, fragments.json_object(fields, encoded))

"""The portal's JSON API besides the pages: submissions, batch reads, info, health, metrics.

- `POST /api/exam/submit` writes an attempt, then invalidates the one key it
  changed, `<student_id>:<series_id>`, before answering, in this worker and
  (PostgreSQL without Redis) every other worker, so the student's next page
  shows it (read-your-writes) while the student's other series stay cached.
  With write-through on (PostgreSQL, `settings.write_through`) its INSERT also
  reads back the keys of the student's MyTestSeries page that are not fresh
  in the cache, the changed one among them, and stores them
  (`Optimizer.write_through`): the page a submit leads to is then served from
  the cache, not loaded after it.
- `POST /api/exam/batch-attempts` reads many keys through the optimizer's
  batched path; bounded (413), rate limited and concurrency capped (429).
- `GET /api/portal/info` tells the traffic generator what it needs for the
  ideal (TTL, stale window, catalog size).
- `GET /healthz`, `GET /metrics`.
"""

from __future__ import annotations

import functools

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from portal import data, fragments
from portal.errors import BadRequest, NotFound, TooLarge
from portal.metrics import CONTENT_TYPE_LATEST
from portal.pages import json_response, user_id_for
from portal.runtime import Portal, current_portal
from portal.schemas import BatchRequest, Submission, parse_body
from portal.submits import Recorded

bp = Blueprint("api", __name__)


@bp.post("/api/exam/submit")
def submit() -> ResponseReturnValue:
    """Record one attempt and drop the cached attempts of its series before answering."""
    portal = current_portal()
    body = parse_body(Submission)
    catalog = portal.catalog()
    series_id = catalog.exam_series.get(body.exam_id)
    if series_id is None:
        raise NotFound(f"no exam {body.exam_id}", code="unknown_exam")
    if body.student_id > catalog.max_student_id and body.student_id > portal.refresh_catalog().max_student_id:
        raise NotFound(f"no student {body.student_id}", code="unknown_student")
    # Only this series' attempts changed: the student's other keys stay valid.
    key = data.attempts_key(body.student_id, series_id)
    recorded = _record(portal, body, series_id, key, catalog)
    # The INSERT told the other workers (if any); the answer waits until they have dropped the key too.
    portal.attempts.confirm(recorded)
    portal.metrics.submissions.inc()
    result = {
        "student_id": body.student_id,
        "series_id": series_id,
        "attempt": data.render_attempt(recorded.row),
        "invalidated": key,
    }
    return json_response(fragments.json_object(result), status=201)


def _record(portal: Portal, body: Submission, series_id: int, key: str, catalog: data.Catalog) -> Recorded:
    """Record the attempt and drop `key`, its series' cached attempts; with write-through on, store
    instead the keys of the student's MyTestSeries that its INSERT read back."""
    record = functools.partial(
        portal.attempts.record,
        student_id=body.student_id,
        series_id=series_id,
        exam_id=body.exam_id,
        score=body.score,
    )
    if not portal.reads_back:
        recorded = record()
        portal.optimizer.invalidate(key)
        return recorded
    page = [data.attempts_key(body.student_id, series) for series in catalog.series]
    write = portal.optimizer.write_through([key], also=page, user_id=user_id_for(body.student_id))
    try:
        recorded = record(read_back=write.keys)
    except BaseException:
        write.abort()
        raise
    write.commit(recorded.fragments)
    return recorded


@bp.post("/api/exam/batch-attempts")
def batch_attempts() -> Response:
    """Return the attempts of many students (all their series) or of explicit keys."""
    portal = current_portal()
    body = parse_body(BatchRequest)
    catalog = portal.catalog()
    limit = portal.settings.batch_max_keys
    if body.student_ids is not None:
        if any(s < 1 for s in body.student_ids):
            raise BadRequest("student ids must be >= 1")
        if len(body.student_ids) * max(len(catalog.series), 1) > limit:
            raise TooLarge(
                f"at most {limit} keys per batch", details={"max_keys": limit, "series": len(catalog.series)}
            )
        keys = [data.attempts_key(s, series) for s in body.student_ids for series in catalog.series]
    else:
        assert body.keys is not None
        if len(body.keys) > limit:
            raise TooLarge(f"at most {limit} keys per batch", details={"max_keys": limit})
        for key in body.keys:
            try:
                data.parse_key(key)
            except ValueError:
                raise BadRequest(f"not an attempts key: {key[:40]!r}", details={"key": key[:40]}) from None
        keys = list(dict.fromkeys(body.keys))
    user = body.user_id or (user_id_for(body.student_ids[0]) if body.student_ids else "batch")
    with portal.throttle.admit(request.remote_addr or "unknown"):
        path = portal.path_for(user)
        values = portal.optimizer.get_many(keys, user_id=user)
    attempts = fragments.json_object({}, {key: fragments.attempts_json(values[key]) for key in keys})
    return json_response(fragments.json_object({"path": path}, {"attempts": attempts}), path=path)


@bp.get("/api/portal/info")
def info() -> Response:
    """What a load generator needs to know about this portal."""
    portal = current_portal()
    catalog = portal.catalog()
    # The flag payload may have changed the TTL since start.
    config = portal.optimizer.effective_config
    return jsonify(
        {
            "function": "get_all_exam_attempts",
            "gate": portal.gate.kind,
            "ttl_s": config.ttl_s,
            "stale_s": config.stale_s,
            "max_batch": config.max_batch,
            "max_entries": config.max_entries,
            "max_bytes": config.max_bytes,
            "pool_capacity": portal.settings.pool_size + portal.settings.pool_overflow,
            "students": catalog.max_student_id,
            "series": list(catalog.series),
            "exams": {str(sid): list(ids) for sid, ids in catalog.exams.items()},
        }
    )


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/metrics")
def metrics() -> Response:
    return Response(current_portal().metrics.render(), content_type=CONTENT_TYPE_LATEST)

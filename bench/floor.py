"""The capacity floor: the portal's server stack answering every page with a constant body of a page's size.

`bench/portal_capacity.py` starts it next to the real portal, under the same
WSGI server and options (`portal.server`) and the same load generator, so the gap
between the two is what the portal's own work costs. It answers just what
`rollguard traffic run` needs: /api/portal/info, /metrics (empty), the two
pages and the submit endpoint. Page bodies are rendered once at start the way
the portal renders a seeded student (12 series, 2 attempts each), so they have
a real page's size and shape but belong to no student, and never count as stale.

    .venv/bin/python bench/floor.py --port 8100 [--server granian] [--workers 1] [--threads 64]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flask import Flask, Response  # noqa: E402

from portal.data import AttemptRow, attempts_key, render_attempts  # noqa: E402
from portal.pages import EXAM_HOME_STEPS  # noqa: E402
from portal.server import DEFAULT_SERVER, SERVERS, serve  # noqa: E402

SERIES = 12
EXAMS_PER_SERIES = 5
# No page of the floor belongs to a student; its submissions land in a series no page shows.
NOBODY = 0
UNSHOWN_SERIES = 0


def _attempts(series_id: int) -> list[AttemptRow]:
    first_exam = (series_id - 1) * EXAMS_PER_SERIES + 1
    return [(series_id * 10 + n, first_exam + n, 60 + n, 1_767_225_600_000 + n) for n in range(2)]


def _my_test_series() -> dict[str, Any]:
    return {
        "page": "my-test-series",
        "path": "floor",
        "student_id": NOBODY,
        "calls": [attempts_key(NOBODY, s) for s in range(1, SERIES + 1)],
        "series": [
            {"series_id": s, "name": f"Test series {s}", "attempts": render_attempts(_attempts(s))}
            for s in range(1, SERIES + 1)
        ],
    }


def _exam_home() -> dict[str, Any]:
    attempts = _attempts(1)
    widgets = EXAM_HOME_STEPS[0]
    return {
        "page": "exam-home",
        "path": "floor",
        "student_id": NOBODY,
        "series_id": 1,
        "step": 0,
        "steps": len(EXAM_HOME_STEPS),
        "exams": list(range(1, EXAMS_PER_SERIES + 1)),
        "calls": [attempts_key(NOBODY, 1)] * len(widgets),
        "widgets": [
            {"widget": w, "attempt_count": 2, "best_score": 61, "last_attempt_id": attempts[-1][0]}
            for w in widgets
        ],
        "attempts": render_attempts(attempts),
    }


def create_floor_app() -> Flask:
    """A Flask app whose pages are constant bodies rendered once."""
    app = Flask(__name__)
    pages = {
        "my-test-series": json.dumps(_my_test_series()).encode(),
        "exam-home": json.dumps(_exam_home()).encode(),
    }
    submitted = json.dumps(
        {
            "student_id": NOBODY,
            "series_id": UNSHOWN_SERIES,
            "attempt": {"id": 1, "exam_id": 1, "score": 1, "submitted_at": "2026-01-01T00:00:00.000+00:00"},
            "invalidated": f"student:{NOBODY}",
        }
    ).encode()
    info = json.dumps(
        {
            "function": "floor",
            "gate": "static",
            "ttl_s": 30.0,
            "stale_s": 0.0,
            "max_batch": 1,
            "pool_capacity": 0,
            "students": 10**9,
            "series": list(range(1, SERIES + 1)),
            "exams": {
                str(s): list(range((s - 1) * EXAMS_PER_SERIES + 1, s * EXAMS_PER_SERIES + 1))
                for s in range(1, SERIES + 1)
            },
        }
    ).encode()

    def page(name: str) -> Response:
        return Response(pages[name], content_type="application/json")

    app.add_url_rule("/api/pages/<name>", "page", page)
    app.add_url_rule(
        "/api/exam/submit",
        "submit",
        lambda: Response(submitted, status=201, content_type="application/json"),
        methods=["POST"],
    )
    app.add_url_rule("/api/portal/info", "info", lambda: Response(info, content_type="application/json"))
    app.add_url_rule("/metrics", "metrics", lambda: Response(b"", content_type="text/plain"))
    app.add_url_rule("/healthz", "healthz", lambda: Response(b'{"status":"ok"}'))
    return app


def page_sizes() -> dict[str, int]:
    """Bytes of each constant page body."""
    return {
        "my-test-series": len(json.dumps(_my_test_series())),
        "exam-home": len(json.dumps(_exam_home())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--server", choices=SERVERS, default=DEFAULT_SERVER)
    args = parser.parse_args()
    serve(
        "bench.floor:create_floor_app",
        server=args.server,
        host=args.host,
        port=args.port,
        workers=args.workers,
        threads=args.threads,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

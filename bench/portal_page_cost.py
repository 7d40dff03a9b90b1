"""CPU a portal page costs in process: what one request takes of the portal's core, without the server.

Builds the portal app (SQLite, seeded here) optimized with each cache layout
(`tiered`, the default, and `objects`; ROLLGUARD_PORTAL_CACHE_LAYOUT) and direct, and the
capacity floor's app (`bench/floor.py`: the same pages as constant bodies, what
Flask and the test client cost on their own), warms the optimized caches, then
loads MyTestSeries and ExamHome pages through Flask's test client and reports
the CPU time (process_time) per page: min / median / max over --repeats
rounds, interleaved. Less sensitive to a busy machine than wall time, so it
shows what a change to the page path saves. Writes
bench/results/portal_page_cost.json (`--result NAME` to name it otherwise).

    .venv/bin/python bench/portal_page_cost.py [--pages 2000] [--repeats 5] [--result portal_page_cost]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flask import Flask  # noqa: E402

from bench.floor import create_floor_app  # noqa: E402
from bench.machine import write_result  # noqa: E402
from portal.app import create_app  # noqa: E402
from portal.db import make_engine  # noqa: E402
from portal.seed import SeedPlan, seed  # noqa: E402
from portal.settings import PortalSettings  # noqa: E402

STUDENTS = 200


def urls(count: int) -> list[str]:
    out = []
    for n in range(count):
        student = n % STUDENTS + 1
        if n % 2:
            out.append(f"/api/pages/my-test-series?student_id={student}")
        else:
            out.append(f"/api/pages/exam-home?student_id={student}&series_id={n % 12 + 1}&step={n % 5}")
    return out


def cpu_per_page_us(app: Flask, pages: list[str]) -> float:
    client = app.test_client()
    started = time.process_time()
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
    return (time.process_time() - started) / len(pages) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=2000, help="page loads per round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds, interleaved optimized/direct/floor")
    parser.add_argument("--result", default="portal_page_cost", help="name of the bench/results file")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rollguard-page-cost-") as work:
        url = f"sqlite:///{Path(work) / 'portal.db'}"
        engine = make_engine(url)
        seed(engine, SeedPlan(students=STUDENTS))
        engine.dispose()
        portals = {
            mode: create_app(
                PortalSettings(
                    database_url=url,
                    optimize=mode != "direct",
                    cache_layout="objects" if mode == "optimized_objects" else "tiered",
                    var_dir=Path(work),
                )
            )
            for mode in ("optimized", "optimized_objects", "direct")
        }
        apps = {**portals, "floor": create_floor_app()}
        pages = urls(args.pages)
        for mode in ("optimized", "optimized_objects"):
            cpu_per_page_us(apps[mode], pages)  # warm the cache: every later load is a hit
        rounds: dict[str, list[float]] = {mode: [] for mode in apps}
        for _ in range(args.repeats):
            for mode, app in apps.items():
                rounds[mode].append(cpu_per_page_us(app, pages))
        for app in portals.values():
            app.extensions["portal"].close()
    figures: dict[str, Any] = {
        "pages_per_round": args.pages,
        "load_average_1m_before_after": [round(load, 2), round(os.getloadavg()[0], 2)],
        "cpu_us_per_page": {
            mode: {
                "min": round(min(v), 1),
                "median": round(statistics.median(v), 1),
                "max": round(max(v), 1),
            }
            for mode, v in rounds.items()
        },
    }
    for mode, spread in figures["cpu_us_per_page"].items():
        print(
            f"{mode:17} cpu per page: min {spread['min']} / median {spread['median']} / max {spread['max']} us"
        )
    path = write_result(
        args.result,
        figures,
        command=f"python bench/portal_page_cost.py --pages {args.pages} --repeats {args.repeats} --result {args.result}",
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

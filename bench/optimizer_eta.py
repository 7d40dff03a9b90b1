"""Live eta from the portal's /metrics against the exact eta the traffic generator computes after a run.

Starts a freshly seeded portal with the optimization on (gunicorn, SQLite, as
bench/portal_mass_submission.py does), scrapes /metrics, runs
`rollguard traffic run` against it, scrapes again, and compares over the run:

- live: requests, key fetches (backend calls - batch calls + batch keys) and
  `optimizer_ideal_fetches_total` (C_min counted by the optimizer as calls come,
  tau = ttl_s + stale_s), so eta = (requests - key_fetches) / (requests - ideal);
- exact: the traffic summary's N, C_actual, C_min and eta (`portal/ideal.py` over
  the client's call log, tau = ttl_s + stale_s + the slowest page).

    .venv/bin/python bench/optimizer_eta.py [--scenario mass-submission] [--users 500] [--duration 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import servers  # noqa: E402
from bench.machine import write_result  # noqa: E402
from bench.portal_mass_submission import start_portal  # noqa: E402
from portal.db import make_engine  # noqa: E402
from portal.promtext import Scrape, scrape  # noqa: E402
from portal.seed import SeedPlan, seed  # noqa: E402

FN = "get_all_exam_attempts"


def live_counts(before: Scrape, after: Scrape) -> dict[str, float]:
    """The run's deltas of what live eta needs, both paths together."""

    def delta(name: str, **labels: str) -> float:
        return after.total(name, fn=FN, **labels) - before.total(name, fn=FN, **labels)

    requests = delta("optimizer_requests_total")
    key_fetches = (
        delta("optimizer_backend_calls_total")
        - delta("optimizer_batch_calls_total")
        + delta("optimizer_batch_keys_total")
    )
    ideal = delta("optimizer_ideal_fetches_total")
    eta = (requests - key_fetches) / (requests - ideal) if requests > ideal else None
    return {"n": requests, "c_actual": key_fetches, "c_min": ideal, "eta": eta}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="mass-submission")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="rollguard-eta-"))
    try:
        db = work / "portal.db"
        engine = make_engine(f"sqlite:///{db}")
        seed(engine, SeedPlan(students=args.users, series=12, exams_per_series=5, attempts_per_series=2))
        engine.dispose()
        proc, url = start_portal(db, work, optimize=True)
        try:
            before = scrape(url)
            summary = servers.run_traffic(
                url,
                users=args.users,
                duration_s=args.duration,
                scenario=args.scenario,
                timeout_s=args.duration + 180,
            )
            after = scrape(url)
        finally:
            proc.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    live = live_counts(before, after)
    exact = summary["ideal"]
    figures = {
        "scenario": args.scenario,
        "users": args.users,
        "duration_s": args.duration,
        "live": {**live, "eta": None if live["eta"] is None else round(live["eta"], 4)},
        "exact": exact,
        "c_min_live_over_exact": round(live["c_min"] / exact["c_min"], 4) if exact.get("c_min") else None,
        "eta_live_minus_exact": (
            round(live["eta"] - exact["eta"], 4)
            if live["eta"] is not None and exact.get("eta") is not None
            else None
        ),
        "load_average_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(figures, indent=2))
    path = write_result(
        "optimizer_eta", figures, command="python bench/optimizer_eta.py " + " ".join(sys.argv[1:])
    )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

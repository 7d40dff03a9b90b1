"""False trips of the local circuit breaker under the real portal's mass submission, with no fault.

Starts the real flag service (SQLite) with the portal's flag at `--rollout`
percent and the demo's payload (the breaker's defaults), a portal seeded with
`--users` students and gated by the flag through the Unleash SDK, then runs
`rollguard traffic run --scenario mass-submission --users N` `--runs` times
against the same portal. Counts, per run, the breaker's transitions to open
(`optimizer_breaker_transitions_total{state="open"}`), the calls it sent
direct, and the traffic summary's page p95 per path and errors.

Writes bench/results/optimizer_breaker_portal.json.

    .venv/bin/python bench/optimizer_breaker_portal.py [--runs 10] [--users 2000] [--duration 20] [--rollout 50]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import servers  # noqa: E402
from bench.machine import write_result  # noqa: E402
from flags.client import FlagsClient  # noqa: E402
from portal.promtext import Scrape, scrape  # noqa: E402
from rollguard.processes import ROLLGUARD, Supervisor, pick_port  # noqa: E402
from rollguard.up import demo_flag_fields  # noqa: E402

KEY = "exam-attempts-optimization"
FN = "get_all_exam_attempts"


def _counts(s: Scrape) -> dict[str, float]:
    return {
        "trips": s.total("optimizer_breaker_transitions_total", fn=FN, state="open"),
        "sent_direct_errors": s.total("optimizer_gate_bypass_total", fn=FN, reason="breaker_error_rate"),
        "sent_direct_latency": s.total("optimizer_gate_bypass_total", fn=FN, reason="breaker_latency"),
        "errors_optimized": s.total("optimizer_errors_total", fn=FN, path="optimized"),
        "errors_direct": s.total("optimizer_errors_total", fn=FN, path="direct"),
        "optimized": s.total("optimizer_requests_total", fn=FN, path="optimized"),
        "direct": s.total("optimizer_requests_total", fn=FN, path="direct"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--rollout", type=int, default=50)
    parser.add_argument("--logs", type=Path, default=None, help="Keep the processes' logs here.")
    parser.add_argument(
        "--result", default=None, help="name of bench/results/<name>.json (default: per rollout)"
    )
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rollguard-breaker-") as directory:
        tmp = Path(directory)
        ports = {name: pick_port(None) for name in ("flags", "portal")}
        flags_url, portal_url = (f"http://127.0.0.1:{ports[n]}" for n in ("flags", "portal"))
        admin_token = "admin-" + secrets.token_hex(12)
        env = {
            **os.environ,
            "ROLLGUARD_ADMIN_TOKEN": admin_token,
            "ROLLGUARD_CLIENT_TOKEN": "client-" + secrets.token_hex(12),
            "ROLLGUARD_DATABASE_URL": f"sqlite:///{tmp / 'flags.db'}",
            "ROLLGUARD_PORTAL_DATABASE_URL": f"sqlite:///{tmp / 'portal.db'}",
            "ROLLGUARD_FLAGS_URL": flags_url,
            "ROLLGUARD_VAR_DIR": str(tmp / "var"),
            "ROLLGUARD_LOG_LEVEL": "WARNING",
        }
        supervisor = Supervisor(log_dir=args.logs or tmp / "logs", env=env, cwd=REPO)
        try:
            flags = supervisor.start("flags", [*ROLLGUARD, "flags", "serve", "--port", str(ports["flags"])])
            flags.wait_ready(url=f"{flags_url}/readyz")
            fields = demo_flag_fields(stage_hold_s=3600)
            fields.update(rollout=args.rollout, auto_promote=False, guardrails=[], reason="bench: start")
            FlagsClient(flags_url, admin_token, actor="bench").create_flag(KEY, **fields)
            supervisor.run("seed", [*ROLLGUARD, "portal", "seed", "--students", str(args.users)], timeout=300)
            portal = supervisor.start(
                "portal", [*ROLLGUARD, "portal", "serve", "--port", str(ports["portal"])]
            )
            portal.wait_ready(url=f"{portal_url}/healthz")
            for index in range(args.runs):
                before = _counts(scrape(portal_url))
                load_before = os.getloadavg()[0]
                summary = servers.run_traffic(
                    portal_url,
                    users=args.users,
                    duration_s=args.duration,
                    timeout_s=args.duration + 240,
                    env=env,
                )
                after = _counts(scrape(portal_url))
                run = {
                    **{name: after[name] - before[name] for name in after},
                    "page_p95_ms": {
                        path: latency.get("p95_ms")
                        for path, latency in summary.get("latency_by_path", {}).items()
                    },
                    "errors": summary.get("errors"),
                    "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                }
                runs.append(run)
                print(f"run {index + 1}: {run}", flush=True)
        finally:
            supervisor.stop_all()
    figures = {
        "runs": len(runs),
        "users": args.users,
        "duration_s": args.duration,
        "rollout": args.rollout,
        "runs_with_a_trip": sum(1 for run in runs if run["trips"]),
        "trips": sum(run["trips"] for run in runs),
        "per_run": runs,
    }
    print(json.dumps({k: v for k, v in figures.items() if k != "per_run"}))
    default_name = "optimizer_breaker_portal" + ("" if args.rollout == 50 else f"_{args.rollout}")
    path = write_result(
        args.result or default_name,
        figures,
        command="python bench/optimizer_breaker_portal.py " + " ".join(sys.argv[1:]),
    )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Automatic rollback, measured: time from a fault to the flag being off, and false rollbacks when healthy.

Starts the real flag service, a seeded portal gated by the flag (Unleash SDK),
`rollguard traffic run --scenario steady` and the controller
(`rollguard control run`, embedded metric source, default interval 5 s and
scrape interval 5 s) with the default guardrails of `control.defaults` on the
portal's flag at 10%. Then:

1. healthy run (default 180 s): noisy steady traffic, no fault; counts the
   controller's rollbacks (each is false; the flag is resumed to go on);
2. fault: injects errors into the portal's optimized path and measures the
   time until the flag service has the flag off, and until the portal stops
   sending calls down the optimized path (its SDK refreshes every 5 s).

Writes bench/results/control_rollback.json with the machine and date.

    .venv/bin/python bench/control_rollback.py [--healthy-s 180] [--users 20] [--fault-error-rate 0.5]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import write_result  # noqa: E402
from control.defaults import default_guardrails, default_rollback  # noqa: E402
from control.store import ControlStore  # noqa: E402
from flags.client import FlagsClient  # noqa: E402
from rollguard.processes import ROLLGUARD, Supervisor, pick_port  # noqa: E402

KEY = "exam-attempts-optimization"
FN = "get_all_exam_attempts"
_OPTIMIZED = re.compile(
    r'^optimizer_requests_total\{fn="get_all_exam_attempts",path="optimized"\} (\S+)$', re.M
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--healthy-s", type=float, default=180.0, help="length of the healthy run")
    parser.add_argument("--users", type=int, default=20, help="virtual users of the steady traffic")
    parser.add_argument("--rollout", type=int, default=10, help="the flag's rollout during the run")
    parser.add_argument("--fault-error-rate", type=float, default=0.5, help="injected error rate")
    parser.add_argument("--interval", type=float, default=5.0, help="controller and scrape interval")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rollguard-bench-") as tmp:
        figures = run(Path(tmp), args)
    command = "python bench/control_rollback.py " + " ".join(sys.argv[1:])
    path = write_result("control_rollback", figures, command=command.strip())
    print(f"fault -> flag off:            {figures['fault_to_flag_off_s']:.1f} s")
    print(f"fault -> portal off optimized: {figures['fault_to_portal_off_s']:.1f} s")
    print(f"false rollbacks in {figures['healthy_run_s']:.0f} s healthy: {figures['false_rollbacks']}")
    print(f"healthy checks: {figures['healthy_verdicts']}")
    print(f"wrote {path}")
    return 0


def run(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    ports = {name: pick_port(None) for name in ("flags", "portal")}
    flags_url, portal_url = (f"http://127.0.0.1:{ports[n]}" for n in ("flags", "portal"))
    admin_token, portal_token = "admin-" + secrets.token_hex(12), "portal-" + secrets.token_hex(12)
    control_db = f"sqlite:///{tmp / 'control.db'}"
    env = {
        **os.environ,
        "ROLLGUARD_ADMIN_TOKEN": admin_token,
        "ROLLGUARD_CLIENT_TOKEN": "client-" + secrets.token_hex(12),
        "ROLLGUARD_DATABASE_URL": f"sqlite:///{tmp / 'flags.db'}",
        "ROLLGUARD_PORTAL_DATABASE_URL": f"sqlite:///{tmp / 'portal.db'}",
        "ROLLGUARD_PORTAL_ADMIN_TOKEN": portal_token,
        "ROLLGUARD_CONTROL_DATABASE_URL": control_db,
        "ROLLGUARD_FLAGS_URL": flags_url,
        "ROLLGUARD_SCRAPE_TARGETS": portal_url,
        "ROLLGUARD_SCRAPE_INTERVAL_S": str(args.interval),
        "ROLLGUARD_CONTROL_INTERVAL_S": str(args.interval),
        "ROLLGUARD_VAR_DIR": str(tmp / "var"),
    }
    supervisor = Supervisor(log_dir=tmp / "logs", env=env, cwd=REPO)
    store = ControlStore(control_db)
    try:
        flags = supervisor.start("flags", [*ROLLGUARD, "flags", "serve", "--port", str(ports["flags"])])
        supervisor.wait_ready(flags, f"{flags_url}/readyz")
        admin = FlagsClient(flags_url, admin_token, actor="bench")
        admin.create_flag(
            KEY,
            enabled=True,
            rollout=args.rollout,
            state="rolling_out",
            auto_promote=False,
            stage_hold_s=3600,
            guardrails=default_guardrails(),
            rollback=default_rollback(),
            payload={"fn": FN},
            reason="bench: start",
        )
        supervisor.run("seed", [*ROLLGUARD, "portal", "seed", "--students", "2000"], timeout=300)
        portal = supervisor.start("portal", [*ROLLGUARD, "portal", "serve", "--port", str(ports["portal"])])
        supervisor.wait_ready(portal, f"{portal_url}/healthz")
        supervisor.start("controller", [*ROLLGUARD, "control", "run"])
        total_s = args.healthy_s + 240
        supervisor.start(
            "traffic",
            [
                *ROLLGUARD,
                "traffic",
                "run",
                "--scenario",
                "steady",
                "--users",
                str(args.users),
                "--duration",
                str(total_s),
                "--target",
                portal_url,
            ],
        )

        # Warm-up: until every default guardrail has been judged on data once.
        names = {g.name for g in default_guardrails()}
        _wait(lambda: names <= {v.guardrail for v in store.verdicts(KEY) if v.verdict != "no_data"}, 180)

        healthy_start = time.time()
        false_rollbacks, reasons = 0, []
        while time.time() - healthy_start < args.healthy_s:
            supervisor.check_alive(("flags", "portal", "controller", "traffic"))
            flag = admin.get_flag(KEY)
            if not flag.enabled:
                false_rollbacks += 1
                kill = next(e for e in admin.events(flag=KEY) if e.action == "kill")
                reasons.append(kill.reason)
                admin.resume(KEY, reason="bench: false rollback, resume")
            time.sleep(1.0)
        healthy_end = time.time()
        healthy = [v for v in store.verdicts(KEY) if healthy_start <= v.time.timestamp() <= healthy_end]
        verdict_counts = {k: sum(1 for v in healthy if v.verdict == k) for k in ("pass", "fail", "no_data")}

        httpx.post(
            f"{portal_url}/api/admin/fault",
            json={"error_rate": args.fault_error_rate, "latency_ms": 0},
            headers={"Authorization": portal_token},
            timeout=5,
        ).raise_for_status()
        fault_at = time.time()
        _wait(lambda: not admin.get_flag(KEY).enabled, 120)
        off_at = time.time()
        kill = next(e for e in admin.events(flag=KEY) if e.action == "kill")

        # The portal keeps routing to the optimized path until its SDK refreshes.
        last_count, last_change = _optimized_calls(portal_url), time.time()
        while time.time() - max(off_at, last_change) < 15:
            count = _optimized_calls(portal_url)
            if count != last_count:
                last_count, last_change = count, time.time()
            time.sleep(0.2)
        return {
            "interval_s": args.interval,
            "users": args.users,
            "rollout": args.rollout,
            "guardrails": [g.name for g in default_guardrails()],
            "fault_error_rate": args.fault_error_rate,
            "fault_to_flag_off_s": round(off_at - fault_at, 2),
            "fault_to_portal_off_s": round(max(last_change, off_at) - fault_at, 2),
            "rollback_reason": kill.reason,
            "rollback_actor": kill.actor,
            "healthy_run_s": round(healthy_end - healthy_start, 1),
            "false_rollbacks": false_rollbacks,
            "false_rollback_reasons": reasons,
            "healthy_verdicts": verdict_counts,
        }
    finally:
        supervisor.stop_all()
        store.close()


def _optimized_calls(portal_url: str) -> float:
    match = _OPTIMIZED.search(httpx.get(f"{portal_url}/metrics", timeout=5).text)
    return float(match.group(1)) if match else 0.0


def _wait(predicate: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in {timeout_s:.0f}s")
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())

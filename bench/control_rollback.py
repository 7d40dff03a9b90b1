"""Rollback in seconds, measured: fault to breaker trip, to flag off, to the portal off; false rollbacks.

Starts the real flag service, `--instances` portal processes on one database
seeded with 2,000 students, each gated by the flag through its own Unleash SDK
(polling every `--sdk-refresh` s) and each under its own share of `rollguard
traffic run --scenario steady`, and the controller (`rollguard control run` at its
defaults: a check every second on the newest scrape) on the embedded metric
source, or on a real Prometheus scraping every second (`--metrics
prometheus`). The portal's flag carries `control.defaults`' guardrails.

1. healthy runs, no fault: `--healthy-s` at 10%, the same at 50%, then a
   mass submission of `--mass-users` students at 50%. Every rollback is
   false (counted, then the flag is resumed); breaker trips are counted too.
2. `--faults` faults (error rate `--fault-error-rate` on the optimized path
   at 50%), each measured from the fault's injection to: the first breaker
   trip any portal's /metrics shows (a breaker bypass or a counter named
   `*breaker*`; none when the breaker never trips); the flag off in the flag
   service; the last call down the optimized path of the last portal instance
   to stop (the fault is injected into every instance, as a faulty release
   would be). Between faults the fault is cleared and the flag resumed.

Writes bench/results/control_rollback[_prometheus].json with machine and date.

    .venv/bin/python bench/control_rollback.py [--quick] [--metrics embedded|prometheus] [--instances 3]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import write_result  # noqa: E402
from control.defaults import default_guardrails, default_rollback  # noqa: E402
from control.portal_metrics import gate_counts  # noqa: E402
from control.store import ControlStore  # noqa: E402
from flags.client import FlagsClient  # noqa: E402
from rollguard.processes import ROLLGUARD, Supervisor, pick_port  # noqa: E402

KEY = "exam-attempts-optimization"
FN = "get_all_exam_attempts"
POLL_S = 0.1


class Portal:
    """Reads the portal's /metrics: calls down the optimized path, and breaker activity."""

    def __init__(self, url: str) -> None:
        self.url = url
        # A saturated portal (the mass submission) answers /metrics slowly.
        self._http = httpx.Client(timeout=30)
        self._last = (0.0, 0.0)

    def counters(self) -> tuple[float, float]:
        """(optimized calls, breaker activity) so far, as `control.portal_metrics` reads them.

        The last values read when /metrics does not answer (then nothing has changed, as seen from here).
        """
        try:
            counts = gate_counts(self._http.get(f"{self.url}/metrics").text, fn=FN)
        except httpx.HTTPError as exc:
            print(f"portal /metrics unanswered: {exc!r}", flush=True)
            return self._last
        self._last = (counts.optimized_calls, counts.breaker_activity)
        return self._last

    def fault(self, token: str, error_rate: float) -> None:
        headers = {"Authorization": token}
        if error_rate > 0:
            body = {"error_rate": error_rate, "latency_ms": 0}
            self._http.post(f"{self.url}/api/admin/fault", json=body, headers=headers).raise_for_status()
        else:
            self._http.delete(f"{self.url}/api/admin/fault", headers=headers).raise_for_status()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 s healthy runs, 500-student spike, 3 faults")
    parser.add_argument("--healthy-s", type=float, default=600.0, help="length of each healthy run")
    parser.add_argument("--mass-users", type=int, default=2000, help="students in the mass submission")
    parser.add_argument("--faults", type=int, default=5)
    parser.add_argument("--users", type=int, default=20, help="virtual users of the steady traffic")
    parser.add_argument("--fault-error-rate", type=float, default=0.5)
    parser.add_argument("--sdk-refresh", type=int, default=1, help="the portal SDK's poll interval, s")
    parser.add_argument("--metrics", choices=("embedded", "prometheus"), default="embedded")
    parser.add_argument("--instances", type=int, default=1, help="portal processes, each with its own SDK")
    parser.add_argument("--result", default=None, help="name of bench/results/<name>.json")
    args = parser.parse_args()
    if args.instances < 1:
        parser.error("--instances must be at least 1")
    if args.quick:
        args.healthy_s, args.mass_users, args.faults = 60.0, 500, 3
    with tempfile.TemporaryDirectory(prefix="rollguard-bench-") as tmp:
        figures = run(Path(tmp), args)
    name = args.result or "control_rollback" + ("_prometheus" if args.metrics == "prometheus" else "")
    command = "python bench/control_rollback.py " + " ".join(sys.argv[1:])
    path = write_result(name, figures, command=command.strip())
    for label in ("fault_to_breaker_trip_s", "fault_to_flag_off_s", "fault_to_portal_off_s"):
        print(f"{label:<26} {figures[label]}")
    print(
        f"false rollbacks: {figures['false_rollbacks']}; breaker trips when healthy: {figures['false_trips']}"
    )
    print(f"wrote {path}")
    return 0


def run(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    names = ["flags", "prometheus", *(f"portal{i}" for i in range(args.instances))]
    ports = {name: pick_port(None) for name in names}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    portal_urls = [urls[f"portal{i}"] for i in range(args.instances)]
    tokens = {k: f"{k}-{secrets.token_hex(12)}" for k in ("admin", "client", "portal")}
    env = {
        **os.environ,
        "ROLLGUARD_ADMIN_TOKEN": tokens["admin"],
        "ROLLGUARD_CLIENT_TOKEN": tokens["client"],
        "ROLLGUARD_DATABASE_URL": f"sqlite:///{tmp / 'flags.db'}",
        "ROLLGUARD_PORTAL_DATABASE_URL": f"sqlite:///{tmp / 'portal.db'}",
        "ROLLGUARD_PORTAL_ADMIN_TOKEN": tokens["portal"],
        "ROLLGUARD_PORTAL_FLAGS_REFRESH_S": str(args.sdk_refresh),
        "ROLLGUARD_CONTROL_DATABASE_URL": f"sqlite:///{tmp / 'control.db'}",
        "ROLLGUARD_FLAGS_URL": urls["flags"],
        "ROLLGUARD_SCRAPE_TARGETS": ",".join(portal_urls),
        "ROLLGUARD_METRICS": args.metrics,
        "ROLLGUARD_PROMETHEUS_URL": urls["prometheus"],
        "ROLLGUARD_VAR_DIR": str(tmp / "var"),
    }
    supervisor = Supervisor(log_dir=tmp / "logs", env=env, cwd=REPO)
    store = ControlStore(env["ROLLGUARD_CONTROL_DATABASE_URL"])
    try:
        admin = _start(supervisor, portal_urls, ports, tmp, args)
        portals = [Portal(url) for url in portal_urls]
        traffic_s = 2 * args.healthy_s + args.faults * 90 + 400
        share = max(1, args.users // args.instances)
        for i, url in enumerate(portal_urls):
            _traffic(supervisor, f"traffic{i}", "steady", share, traffic_s, url)
        _wait(lambda: _judged(admin, store), 180, "the first checks of every guardrail")
        healthy = _healthy_runs(supervisor, admin, portals, portal_urls[0], args)
        faults = [_fault(admin, store, portals, tokens["portal"], args) for _ in range(args.faults)]
        return _figures(args, healthy, faults)
    finally:
        supervisor.stop_all()
        store.close()


def _start(
    supervisor: Supervisor, portal_urls: list[str], ports: dict[str, int], tmp: Path, args: argparse.Namespace
) -> FlagsClient:
    flags_url = supervisor.env["ROLLGUARD_FLAGS_URL"]
    flags = supervisor.start("flags", [*ROLLGUARD, "flags", "serve", "--port", str(ports["flags"])])
    flags.wait_ready(url=f"{flags_url}/readyz")
    admin = FlagsClient(flags_url, supervisor.env["ROLLGUARD_ADMIN_TOKEN"], actor="bench")
    admin.create_flag(
        KEY,
        enabled=True,
        rollout=10,
        state="rolling_out",
        auto_promote=False,
        stage_hold_s=3600,
        guardrails=default_guardrails(),
        rollback=default_rollback(),
        payload={"fn": FN},
        reason="bench: start",
    )
    supervisor.run("seed", [*ROLLGUARD, "portal", "seed", "--students", "2000"], timeout=300)
    for i, url in enumerate(portal_urls):
        argv = [*ROLLGUARD, "portal", "serve", "--port", str(ports[f"portal{i}"])]
        supervisor.start(f"portal{i}", argv).wait_ready(url=f"{url}/healthz")
    if args.metrics == "prometheus":
        _start_prometheus(supervisor, portal_urls, ports, tmp)
    supervisor.start("controller", [*ROLLGUARD, "control", "run"])
    return admin


def _start_prometheus(
    supervisor: Supervisor, portal_urls: list[str], ports: dict[str, int], tmp: Path
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("--metrics prometheus: the prometheus binary is not installed")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "portal", "static_configs": [{"targets": [u.split("://")[1] for u in portal_urls]}]}
        ],
    }
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    prom = supervisor.start(
        "prometheus",
        [
            binary,
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        ],
    )
    prom.wait_ready(url=f"http://127.0.0.1:{ports['prometheus']}/-/ready")


def _traffic(supervisor: Supervisor, name: str, scenario: str, users: int, seconds: float, url: str) -> Any:
    argv = [*ROLLGUARD, "traffic", "run", "--scenario", scenario, "--users", str(users)]
    argv += ["--duration", str(int(seconds)), "--target", url, "--settle", "5"]
    return supervisor.start(name, argv)


def _healthy_runs(
    supervisor: Supervisor, admin: FlagsClient, portals: list[Portal], url: str, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    runs = {"steady at 10%": _watch(admin, portals, args.healthy_s)}
    print(f"healthy: {runs}", flush=True)
    flag = admin.get_flag(KEY)
    admin.set_rollout(KEY, 50, version=flag.version, reason="bench: healthy run at 50%")
    runs["steady at 50%"] = _watch(admin, portals, args.healthy_s)
    print(f"healthy: {runs}", flush=True)
    spike = _traffic(supervisor, "mass-submission", "mass-submission", args.mass_users, 20, url)
    runs[f"mass submission of {args.mass_users} at 50%"] = _watch(
        admin, portals, 240, until=lambda: not spike.running
    )
    print(f"healthy: {runs}", flush=True)
    return runs


def _watch(
    admin: FlagsClient, portals: list[Portal], seconds: float, *, until: Callable[[], bool] | None = None
) -> dict[str, Any]:
    """Watch a healthy run: count (and undo) rollbacks, count breaker trips (polls where any instance's rose)."""
    load_before = os.getloadavg()
    start = time.monotonic()
    rollbacks: list[str] = []
    trips = 0
    last_breaker = _breakers(portals)
    while time.monotonic() - start < seconds and not (until and until()):
        flag = admin.get_flag(KEY)
        if not flag.enabled:
            kill = next(e for e in admin.events(flag=KEY) if e.action == "kill")
            rollbacks.append(kill.reason or "")
            admin.resume(KEY, reason="bench: false rollback, resume")
        breakers = _breakers(portals)
        trips += any(now > before for now, before in zip(breakers, last_breaker, strict=True))
        last_breaker = breakers
        time.sleep(0.5)
    return {
        "seconds": round(time.monotonic() - start, 1),
        "false_rollbacks": len(rollbacks),
        "reasons": rollbacks,
        "polls_with_breaker_bypass": trips,
        "load_avg_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }


def _breakers(portals: list[Portal]) -> list[float]:
    return [portal.counters()[1] for portal in portals]


def _fault(
    admin: FlagsClient, store: ControlStore, portals: list[Portal], token: str, args: argparse.Namespace
) -> dict[str, Any]:
    _wait(lambda: _judged(admin, store), 120, "every guardrail judged again")
    before = [portal.counters() for portal in portals]
    load = os.getloadavg()[0]
    for portal in portals:
        portal.fault(token, args.fault_error_rate)
    injected = time.monotonic()
    tripped = off = None
    last_optimized = [optimized for optimized, _breaker in before]
    last_change = [injected] * len(portals)
    while off is None or time.monotonic() - max(off, *last_change) < 3 * args.sdk_refresh + 2:
        for i, portal in enumerate(portals):
            now_optimized, now_breaker = portal.counters()
            now = time.monotonic()
            if tripped is None and now_breaker > before[i][1]:
                tripped = now
            if now_optimized != last_optimized[i]:
                last_optimized[i], last_change[i] = now_optimized, now
        if off is None and not admin.get_flag(KEY).enabled:
            off = time.monotonic()
        if time.monotonic() - injected > 120:
            raise TimeoutError("no rollback within 120 s of the fault")
        time.sleep(POLL_S)
    kill = next(e for e in admin.events(flag=KEY) if e.action == "kill")
    for portal in portals:
        portal.fault(token, 0)
    result = {
        "breaker_trip_s": None if tripped is None else round(tripped - injected, 2),
        "flag_off_s": round(off - injected, 2),
        "portal_off_s": round(max(off, *last_change) - injected, 2),
        "each_portal_off_s": [round(max(off, change) - injected, 2) for change in last_change],
        "reason": kill.reason,
        "actor": kill.actor,
        "load_avg_1m": round(load, 2),
    }
    print(f"fault: {result}", flush=True)
    # Let the breaker's cool-down end before the flag is on again for the next fault.
    time.sleep(6)
    admin.resume(KEY, reason="bench: next fault")
    return result


def _judged(admin: FlagsClient, store: ControlStore) -> bool:
    """Whether the flag is on and the controller has judged every guardrail on data since the stage began."""
    flag = admin.get_flag(KEY)
    if not (flag.enabled and flag.state == "rolling_out"):
        return False
    judged = {v.guardrail for v in store.verdicts(KEY, since=flag.updated_at) if v.verdict != "no_data"}
    return {g.name for g in default_guardrails()} <= judged


def _figures(
    args: argparse.Namespace, healthy: dict[str, Any], faults: list[dict[str, Any]]
) -> dict[str, Any]:
    def spread(key: str) -> dict[str, Any]:
        values = [f[key] for f in faults if f[key] is not None]
        if not values:
            return {"median": None, "max": None, "n": 0, "of": len(faults)}
        return {
            "median": round(statistics.median(values), 2),
            "min": min(values),
            "max": max(values),
            "n": len(values),
            "of": len(faults),
        }

    return {
        "metrics": args.metrics,
        "controller": "defaults: check every 1 s on the newest scrape, scrape every 1 s",
        "sdk_refresh_s": args.sdk_refresh,
        "users": args.users,
        "portal_instances": args.instances,
        "guardrails": [g.name for g in default_guardrails()],
        "fault_error_rate": args.fault_error_rate,
        "fault_to_breaker_trip_s": spread("breaker_trip_s"),
        "fault_to_flag_off_s": spread("flag_off_s"),
        "fault_to_portal_off_s": spread("portal_off_s"),
        "faults": faults,
        "healthy_runs": healthy,
        "false_rollbacks": sum(run["false_rollbacks"] for run in healthy.values()),
        "false_trips": sum(run["polls_with_breaker_bypass"] for run in healthy.values()),
    }


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f}s")
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())

"""The incident's story as `rollguard up` plays it, one step per function.

`play` runs the steps in order on a `Demo` (the supervisor, the story record,
the URLs, ports and tokens, the clock): start the services; steady traffic with
the optimization at 10%; wait for the controller's promotion to 50% and hold
there; a mass submission the default guardrails must let through; a fault in
the optimized path, watched until the portal's breaker trips and the
controller rolls the flag back; the headline from the portal's `/metrics`.
A step that ends the story early says why in the story and returns False.
"""

from __future__ import annotations

import shutil
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from control import default_guardrails, default_rollback, gate_counts
from dashboard.headline import headline, totals_from_text
from flags.client import FlagNotFound, FlagsClient
from rollguard.demo_prometheus import write_configs
from rollguard.processes import ROLLGUARD, Child, ChildFailed, Supervisor
from rollguard.story import Story

FLAG_KEY = "exam-attempts-optimization"
FN = "get_all_exam_attempts"
STEADY_USERS = 40
MASS_SUBMISSION_MAX_USERS = 2000
FAULT = {"error_rate": 0.3, "latency_ms": 300}


@dataclass(frozen=True)
class Options:
    """What the operator chose on the command line."""

    students: int
    stage_hold_s: int
    open_browser: bool
    with_prometheus: bool
    stop_when_done: bool


@dataclass
class Demo:
    """Everything the steps share."""

    supervisor: Supervisor
    story: Story
    urls: dict[str, str]
    ports: dict[str, int]
    tokens: dict[str, str]
    var_dir: Path
    options: Options
    t0: float
    deadline: float
    admin: FlagsClient | None = None

    def say(self, what: str, **details: Any) -> None:
        self.story.add(self.t0, what, **details)

    def since_start(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    def flags(self) -> FlagsClient:
        assert self.admin is not None, "the flag service is not started yet"
        return self.admin

    def wait_for(self, predicate: Callable[[], bool], *, timeout: float) -> bool:
        """Poll until `predicate` holds; False when the step or the demo runs out of time."""
        end = min(time.monotonic() + timeout, self.deadline)
        while time.monotonic() < end:
            self.supervisor.check_alive(("flags", "portal", "controller"))
            if predicate():
                return True
            time.sleep(0.5)
        return False

    def start_traffic(self, name: str, scenario: str, users: int, duration_s: int, *extra: str) -> Child:
        return self.supervisor.start(
            name,
            [
                *ROLLGUARD,
                "traffic",
                "run",
                "--scenario",
                scenario,
                "--users",
                str(users),
                "--duration",
                str(duration_s),
                "--target",
                self.urls["portal"],
                *extra,
            ],
        )


def demo_flag_fields(stage_hold_s: int) -> dict[str, Any]:
    """The portal's flag as the demo creates it, with the default guardrails and rollback policy."""
    return {
        "description": "Cache, single-flight and batching around get_all_exam_attempts",
        "enabled": True,
        "rollout": 10,
        "stages": [10, 50, 100],
        "stage_hold_s": stage_hold_s,
        "auto_promote": True,
        "state": "rolling_out",
        "guardrails": default_guardrails(),
        "rollback": default_rollback(),
        "payload": {
            "fn": FN,
            "ttl_s": 30,
            "stale_s": 5,
            "batch_window_ms": 5,
            "max_batch": 64,
        },
    }


def play(demo: Demo) -> None:
    """Play the story, step by step, until it is over or a step ends it."""
    start_services(demo)
    announce(demo)
    start_steady_traffic(demo)
    if not wait_for_promotion(demo):
        return
    hold_at_half(demo)
    if not mass_submission(demo):
        return
    if not fault_and_rollback(demo):
        return
    report_headline(demo)
    if not demo.options.stop_when_done:
        keep_running(demo)


def start_services(demo: Demo) -> None:
    """The flag service and the demo's flag, the seeded portal, the receiver, the dashboard, the controller."""
    supervisor, ports, urls = demo.supervisor, demo.ports, demo.urls
    demo.say("starting the flag service")
    flags = supervisor.start("flags", [*ROLLGUARD, "flags", "serve", "--port", str(ports["flags"])])
    flags.wait_ready(url=f"{urls['flags']}/readyz")
    demo.admin = FlagsClient(urls["flags"], demo.tokens["ROLLGUARD_ADMIN_TOKEN"], actor="demo")
    ensure_flag(demo.admin, demo.options.stage_hold_s)
    demo.say(
        f"flag {FLAG_KEY} at 10%, stages 10 -> 50 -> 100, "
        f"auto-promote after {demo.options.stage_hold_s}s healthy"
    )
    demo.say(f"seeding the portal with {demo.options.students} students")
    supervisor.run(
        "seed", [*ROLLGUARD, "portal", "seed", "--students", str(demo.options.students)], timeout=300
    )
    portal = supervisor.start(
        "portal",
        [*ROLLGUARD, "portal", "serve", "--port", str(ports["portal"]), "--flags-url", urls["flags"]],
    )
    receiver = supervisor.start("alerts", [*ROLLGUARD, "alerts", "serve", "--port", str(ports["alerts"])])
    dashboard = supervisor.start("dashboard", [*ROLLGUARD, "dashboard", "--port", str(ports["dashboard"])])
    portal.wait_ready(url=f"{urls['portal']}/healthz")
    receiver.wait_ready(url=f"{urls['alerts']}/healthz")
    metrics = "prometheus" if demo.options.with_prometheus and start_prometheus(demo) else "embedded"
    supervisor.start(
        "controller",
        [*ROLLGUARD, "control", "run", "--metrics", metrics],
        env={"ROLLGUARD_PROMETHEUS_URL": urls["prometheus"]},
    )
    demo.say(f"controller running on {metrics} metrics, judging every new scrape (every second)")
    dashboard.wait_ready(url=f"{urls['dashboard']}/_stcore/health", timeout=90)


def ensure_flag(admin: FlagsClient, stage_hold_s: int) -> None:
    """Create the demo's flag, or put an existing one back at its first stage."""
    fields = demo_flag_fields(stage_hold_s)
    try:
        flag = admin.get_flag(FLAG_KEY)
    except FlagNotFound:
        admin.create_flag(FLAG_KEY, reason="demo: start at the first stage", **fields)
        return
    admin.update_flag(FLAG_KEY, fields, version=flag.version, reason="demo: restart at the first stage")


def announce(demo: Demo) -> None:
    """Print where everything is, and open the dashboard unless told not to."""
    urls, password = demo.urls, demo.tokens["ROLLGUARD_DASHBOARD_PASSWORD"]
    lines = [
        "",
        f"  dashboard      {urls['dashboard']}  (password {password})",
        f"  flag service   {urls['flags']}  (tokens and password in {demo.var_dir / 'demo.env'}, mode 0600)",
        f"  portal         {urls['portal']}",
        f"  alert receiver {urls['alerts']}/alertmanager/webhook",
        f"  logs           {demo.var_dir / 'logs'}",
        "",
    ]
    click.echo("\n".join(lines))
    if demo.options.open_browser:
        webbrowser.open(urls["dashboard"])


def start_steady_traffic(demo: Demo) -> None:
    remaining = demo.deadline - time.monotonic()
    duration_s = int(remaining) + 5 if remaining != float("inf") else 24 * 3600
    demo.start_traffic("traffic-steady", "steady", STEADY_USERS, duration_s)
    demo.say(f"steady traffic: {STEADY_USERS} students browsing MyTestSeries and ExamHome")


def wait_for_promotion(demo: Demo) -> bool:
    admin = demo.flags()
    promoted = demo.wait_for(
        lambda: admin.get_flag(FLAG_KEY).rollout >= 50, timeout=demo.options.stage_hold_s + 120
    )
    if not promoted:
        demo.say("no promotion before the time ran out")
        return False
    demo.story.promoted_at_s = demo.since_start()
    demo.say("healthy: the controller promoted the flag to 50%")
    return True


def hold_at_half(demo: Demo) -> None:
    """Turn auto-promote off, so the fault lands at 50% as the story says.

    The mass submission can outlast a short stage hold: without this the controller
    would go on to 100% and the fault would hit everyone instead of half the students.
    """
    admin = demo.flags()
    flag = admin.get_flag(FLAG_KEY)
    admin.update_flag(
        FLAG_KEY,
        {"auto_promote": False},
        version=flag.version,
        reason="demo: hold at 50% through the mass submission and the fault",
    )
    demo.say("auto-promote off: the flag stays at 50% (the controller still rolls back)")


def mass_submission(demo: Demo) -> bool:
    """Replay the mass submission; False if the controller rolled the healthy flag back."""
    users = min(MASS_SUBMISSION_MAX_USERS, demo.options.students)
    demo.say(f"mass submission: {users} students submit at once, then reload their pages")
    # The steady traffic keeps the portal's counters moving: don't wait for them to settle.
    spike = demo.start_traffic("traffic-mass-submission", "mass-submission", users, 20, "--settle", "5")
    demo.wait_for(lambda: not spike.running, timeout=90)
    if spike.proc.returncode not in (0, None):
        raise ChildFailed(f"the mass-submission traffic failed:\n{spike.log_tail()}")
    if not demo.flags().get_flag(FLAG_KEY).enabled:
        demo.say("the controller rolled the flag back during the healthy mass submission")
        return False
    demo.say("the mass submission is over; the flag is still on at 50%")
    return True


def fault_and_rollback(demo: Demo) -> bool:
    """Inject the fault, watch for the breaker and the rollback, then clear it; False if no rollback came."""
    admin = demo.flags()
    breaker_before = breaker_activity(demo.urls["portal"])
    fault_url = f"{demo.urls['portal']}/api/admin/fault"
    portal_admin = {"Authorization": demo.tokens["ROLLGUARD_PORTAL_ADMIN_TOKEN"]}
    httpx.post(fault_url, json=FAULT, headers=portal_admin, timeout=5).raise_for_status()
    demo.story.fault_at_s = demo.since_start()
    fault = "fault injected into the optimized path: 30% errors, +300 ms"
    admin.annotate(fault, kind="fault-on", flag=FLAG_KEY)
    demo.say(fault)
    try:
        return watch_fault(demo, breaker_before)
    finally:
        # Left on, the fault would roll back an operator's Resume 20 s later with nothing saying why.
        httpx.delete(fault_url, headers=portal_admin, timeout=5).raise_for_status()
        admin.annotate("fault cleared from the optimized path", kind="fault-off", flag=FLAG_KEY)
        demo.say("fault cleared: a Resume now stays on")


def breaker_activity(portal_url: str) -> float:
    return gate_counts(httpx.get(f"{portal_url}/metrics", timeout=5).text, fn=FN).breaker_activity


def watch_fault(demo: Demo, breaker_before: float) -> bool:
    """Print the breaker's trip and the controller's rollback as each is seen; False if no rollback came."""
    story, admin = demo.story, demo.flags()
    end = min(time.monotonic() + 120, demo.deadline)
    while time.monotonic() < end and story.rolled_back_at_s is None:
        demo.supervisor.check_alive(("flags", "portal", "controller"))
        if story.breaker_tripped_at_s is None and breaker_activity(demo.urls["portal"]) > breaker_before:
            story.breaker_tripped_at_s = demo.since_start()
            after = story.breaker_tripped_at_s - (story.fault_at_s or 0.0)
            demo.say(f"the portal's circuit breaker tripped {after:.1f}s after the fault (its /metrics)")
        if not admin.get_flag(FLAG_KEY).enabled:
            record_rollback(demo)
        time.sleep(0.2)
    if story.rolled_back_at_s is None:
        demo.say("no rollback before the time ran out")
        return False
    if story.breaker_tripped_at_s is None:
        demo.say("the portal's breaker did not trip before the rollback")
    return True


def record_rollback(demo: Demo) -> None:
    story = demo.story
    story.rolled_back_at_s = demo.since_start()
    kills = [e for e in demo.flags().events(flag=FLAG_KEY, limit=20) if e.action == "kill"]
    story.rollback_reason = kills[0].reason if kills else None
    demo.say(
        f"the controller rolled the flag back {story.rolled_back_at_s - (story.fault_at_s or 0.0):.1f}s "
        "after the fault",
        reason=story.rollback_reason,
        actor=kills[0].actor if kills else None,
    )


def report_headline(demo: Demo) -> None:
    """The headline strip's figures, from the portal's /metrics, as the dashboard shows them."""
    text = httpx.get(f"{demo.urls['portal']}/metrics", timeout=5).text
    figures = headline(totals_from_text(text, fn=FN), demo.flags().get_flag(FLAG_KEY))
    demo.story.headline = figures.lines()
    demo.story.completed = True  # saved with the headline: a watcher sees the whole ending at once
    demo.say(
        "the headline, from the portal's /metrics:\n" + "\n".join(f"  {line}" for line in demo.story.headline)
    )


def keep_running(demo: Demo) -> None:
    demo.say(f"the story is over; everything keeps running for the dashboard at {demo.urls['dashboard']}")
    while time.monotonic() < demo.deadline:
        demo.supervisor.check_alive(("flags", "portal"))
        time.sleep(1)


def start_prometheus(demo: Demo) -> bool:
    """Start Prometheus and Alertmanager wired to the demo; False when they are not installed."""
    prometheus = shutil.which("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not prometheus or not alertmanager:
        demo.say("--with-prometheus: Prometheus or Alertmanager is not installed; using embedded metrics")
        return False
    urls, ports, home = demo.urls, demo.ports, demo.var_dir / "prometheus"
    config = write_configs(
        home, urls=urls, alerts_token=demo.tokens["ROLLGUARD_ALERTS_TOKEN"], scrape_interval_s=1
    )
    demo.supervisor.run(
        "alerts-rules",
        [*ROLLGUARD, "alerts", "rules", "--out", str(config.rules_dir / "rollguard.yml")],
        timeout=60,
    )
    am = demo.supervisor.start(
        "alertmanager",
        [
            alertmanager,
            f"--config.file={config.alertmanager_yml}",
            f"--storage.path={home / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
            "--cluster.listen-address=",
        ],
    )
    prom = demo.supervisor.start(
        "prometheus",
        [
            prometheus,
            f"--config.file={config.prometheus_yml}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        ],
    )
    am.wait_ready(url=f"{urls['alertmanager']}/-/ready")
    prom.wait_ready(url=f"{urls['prometheus']}/-/ready")
    demo.say(f"Prometheus at {urls['prometheus']}, Alertmanager at {urls['alertmanager']}")
    return True

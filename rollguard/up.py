"""`rollguard up`: the whole system on embedded defaults, playing the incident's story.

Starts the flag service, a seeded portal, the controller on the embedded metric
scraper, the Alertmanager receiver, the dashboard and the traffic generator,
then plays: steady traffic with the optimization at 10%; healthy, so the
controller promotes it to 50%; a mass submission of up to 2,000 students,
which the default guardrails (`control.defaults`) must let through; a fault
injected into the optimized path; the portal's local circuit breaker trips
(read from its /metrics) and the controller rolls the flag back, each printed
when seen. Everything lives under `./var/` (SQLite files, logs in
`./var/logs/`); Ctrl-C stops every process.

A JSON record of the story, `./var/story.json`, is rewritten (atomically) from
the start and after every step: the URLs, the pid of each child (also its
process group), the events so far, and `stopped` once every process is down,
so that an operator or a test can follow the demo while it runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import time
import webbrowser
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click
import httpx
from prometheus_client.parser import text_string_to_metric_families

from control import default_guardrails, default_rollback, gate_counts
from dashboard.headline import headline, totals_from_text
from flags.client import FlagNotFound, FlagsClient
from rollguard.demo_prometheus import write_configs
from rollguard.processes import ROLLGUARD, Child, ChildFailed, Supervisor, pick_port
from rollguard.secretfile import write_private

logger = logging.getLogger(__name__)

FLAG_KEY = "exam-attempts-optimization"
FN = "get_all_exam_attempts"


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


class StopDemo(Exception):
    """Ctrl-C or SIGTERM: stop the story and every process."""


@dataclass
class Story:
    """What happened, with times relative to the start; saved to `path` (var/story.json) as it happens."""

    path: Path
    started_at: str
    urls: dict[str, str]
    processes: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    promoted_at_s: float | None = None
    fault_at_s: float | None = None
    breaker_tripped_at_s: float | None = None
    rolled_back_at_s: float | None = None
    rollback_reason: str | None = None
    portal_metrics: dict[str, float] = field(default_factory=dict)
    headline: list[str] = field(default_factory=list)
    completed: bool = False
    stopped: bool = False

    def add(self, t0: float, what: str, **details: Any) -> None:
        """Record a step, print it, and save the story."""
        at = round(time.monotonic() - t0, 1)
        self.events.append({"t_s": at, "what": what, **details})
        click.echo(f"[{at:6.1f}s] {what}")
        self.save()

    def save(self) -> None:
        """Write the story as JSON through a temporary file, so a reader never sees half of it."""
        record = asdict(self)
        del record["path"]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(record, indent=2))
        os.replace(tmp, self.path)


def _wait_for(
    predicate: Callable[[], bool], *, timeout: float, deadline: float, supervisor: Supervisor
) -> bool:
    """Poll until `predicate` holds; False when the phase or the demo runs out of time."""
    end = min(time.monotonic() + timeout, deadline)
    while time.monotonic() < end:
        supervisor.check_alive(("flags", "portal", "controller"))
        if predicate():
            return True
        time.sleep(0.5)
    return False


def _portal_totals(portal_url: str) -> dict[str, float]:
    """Sum the portal's contract metrics by name and path label, for the story record."""
    text = httpx.get(f"{portal_url}/metrics", timeout=5).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(("optimizer_", "portal_")) or sample.name.endswith(
                ("_bucket", "_created")
            ):
                continue
            path = sample.labels.get("path")
            name = f"{sample.name}{{path={path}}}" if path else sample.name
            totals[name] = totals.get(name, 0.0) + sample.value
    return totals


def _ensure_flag(admin: FlagsClient, stage_hold_s: int) -> None:
    fields = demo_flag_fields(stage_hold_s)
    try:
        flag = admin.get_flag(FLAG_KEY)
    except FlagNotFound:
        admin.create_flag(FLAG_KEY, reason="demo: start at the first stage", **fields)
        return
    admin.update_flag(FLAG_KEY, fields, version=flag.version, reason="demo: restart at the first stage")


@click.command(name="up")
@click.option(
    "--duration", type=float, default=None, help="Stop after this many seconds (default: run until Ctrl-C)."
)
@click.option("--no-browser", is_flag=True, help="Do not open the dashboard in a browser.")
@click.option(
    "--with-prometheus", is_flag=True, help="Also run Prometheus and Alertmanager (configs in deploy/)."
)
@click.option("--var-dir", type=click.Path(path_type=Path), default=Path("var"), show_default=True)
@click.option(
    "--students", type=int, default=2000, show_default=True, help="Students to seed the portal with."
)
@click.option(
    "--stage-hold",
    "stage_hold_s",
    type=int,
    default=45,
    show_default=True,
    help="Seconds a stage must stay healthy before promotion.",
)
@click.option("--free-ports", is_flag=True, help="Use any free ports instead of the defaults.")
@click.option("--stop-when-done", is_flag=True, help="Stop as soon as the story is over.")
def command(
    duration: float | None,
    no_browser: bool,
    with_prometheus: bool,
    var_dir: Path,
    students: int,
    stage_hold_s: int,
    free_ports: bool,
    stop_when_done: bool,
) -> None:
    """Run the whole demo on embedded defaults."""
    var_dir = var_dir.resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    ports = {
        name: pick_port(None if free_ports else default)
        for name, default in (
            ("flags", 4242),
            ("portal", 8000),
            ("alerts", 9099),
            ("dashboard", 8501),
            ("prometheus", 9090),
            ("alertmanager", 9093),
        )
    }
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    tokens = {
        "ROLLGUARD_ADMIN_TOKEN": "admin-" + secrets.token_hex(16),
        "ROLLGUARD_CLIENT_TOKEN": "client-" + secrets.token_hex(16),
        "ROLLGUARD_PORTAL_ADMIN_TOKEN": "portal-" + secrets.token_hex(16),
        "ROLLGUARD_ALERTS_TOKEN": "alerts-" + secrets.token_hex(16),
        "ROLLGUARD_DASHBOARD_PASSWORD": secrets.token_urlsafe(12),
    }
    env = {
        **os.environ,
        **tokens,
        "ROLLGUARD_DATABASE_URL": f"sqlite:///{var_dir / 'flags.db'}",
        "ROLLGUARD_PORTAL_DATABASE_URL": f"sqlite:///{var_dir / 'portal.db'}",
        "ROLLGUARD_CONTROL_DATABASE_URL": f"sqlite:///{var_dir / 'control.db'}",
        "ROLLGUARD_ALERTS_DATABASE_URL": f"sqlite:///{var_dir / 'alerts.db'}",
        "ROLLGUARD_FLAGS_URL": urls["flags"],
        "ROLLGUARD_SCRAPE_TARGETS": urls["portal"],
        "ROLLGUARD_METRICS": "embedded",
        # The portal's SDK polls the flag every second, so a rollback reaches it within one.
        "ROLLGUARD_PORTAL_FLAGS_REFRESH_S": "1",
        "ROLLGUARD_VAR_DIR": str(var_dir),
    }
    write_private(
        var_dir / "demo.env",
        "".join(f"export {k}={env[k]}\n" for k in sorted(tokens) + ["ROLLGUARD_FLAGS_URL"]),
    )
    story = Story(path=var_dir / "story.json", started_at=datetime.now(UTC).isoformat(), urls=urls)
    story.save()

    def _started(child: Child) -> None:
        story.processes[child.name] = child.pid
        story.save()

    supervisor = Supervisor(log_dir=var_dir / "logs", env=env, cwd=Path.cwd(), on_start=_started)

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        supervisor.raise_or_hold(StopDemo())

    def _still_stopping(signum: int, frame: FrameType | None) -> None:
        # A second Ctrl-C must not abandon the children half-stopped.
        click.echo("still stopping every process (10 s grace, then SIGKILL)")

    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    deadline = t0 + duration if duration else float("inf")
    try:
        _play(
            supervisor,
            story,
            urls=urls,
            ports=ports,
            tokens=tokens,
            t0=t0,
            deadline=deadline,
            students=students,
            stage_hold_s=stage_hold_s,
            open_browser=not no_browser,
            with_prometheus=with_prometheus,
            var_dir=var_dir,
            stop_when_done=stop_when_done,
        )
    except StopDemo:
        story.add(t0, "stopping (interrupted)")
    except ChildFailed as exc:
        story.add(t0, "a process failed; stopping", error=str(exc))
        raise click.ClickException(str(exc)) from exc
    finally:
        for sig in previous:
            signal.signal(sig, _still_stopping)
        try:
            if supervisor.pids().get("portal"):
                with contextlib.suppress(httpx.HTTPError):
                    story.portal_metrics = _portal_totals(urls["portal"])
            supervisor.stop_all()
            story.processes = supervisor.pids()
            story.stopped = True
            story.save()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        click.echo(f"stopped every process; story in {story.path}, logs in {var_dir / 'logs'}")


def _play(
    supervisor: Supervisor,
    story: Story,
    *,
    urls: dict[str, str],
    ports: dict[str, int],
    tokens: dict[str, str],
    t0: float,
    deadline: float,
    students: int,
    stage_hold_s: int,
    open_browser: bool,
    with_prometheus: bool,
    var_dir: Path,
    stop_when_done: bool,
) -> None:
    story.add(t0, "starting the flag service")
    flags = supervisor.start("flags", [*ROLLGUARD, "flags", "serve", "--port", str(ports["flags"])])
    flags.wait_ready(url=f"{urls['flags']}/readyz")
    admin = FlagsClient(urls["flags"], tokens["ROLLGUARD_ADMIN_TOKEN"], actor="demo")
    _ensure_flag(admin, stage_hold_s)
    story.add(
        t0, f"flag {FLAG_KEY} at 10%, stages 10 -> 50 -> 100, auto-promote after {stage_hold_s}s healthy"
    )

    story.add(t0, f"seeding the portal with {students} students")
    supervisor.run("seed", [*ROLLGUARD, "portal", "seed", "--students", str(students)], timeout=300)
    portal = supervisor.start(
        "portal",
        [*ROLLGUARD, "portal", "serve", "--port", str(ports["portal"]), "--flags-url", urls["flags"]],
    )
    receiver = supervisor.start("alerts", [*ROLLGUARD, "alerts", "serve", "--port", str(ports["alerts"])])
    dashboard = supervisor.start("dashboard", [*ROLLGUARD, "dashboard", "--port", str(ports["dashboard"])])
    portal.wait_ready(url=f"{urls['portal']}/healthz")
    receiver.wait_ready(url=f"{urls['alerts']}/healthz")
    metrics = "embedded"
    if with_prometheus and _start_prometheus(
        supervisor, urls=urls, tokens=tokens, ports=ports, var_dir=var_dir, t0=t0, story=story
    ):
        metrics = "prometheus"
    supervisor.start(
        "controller",
        [*ROLLGUARD, "control", "run", "--metrics", metrics],
        env={"ROLLGUARD_PROMETHEUS_URL": urls["prometheus"]},
    )
    story.add(t0, f"controller running on {metrics} metrics, judging every new scrape (every second)")
    dashboard.wait_ready(url=f"{urls['dashboard']}/_stcore/health", timeout=90)
    click.echo(
        "\n".join(
            [
                "",
                f"  dashboard      {urls['dashboard']}  (password {tokens['ROLLGUARD_DASHBOARD_PASSWORD']})",
                f"  flag service   {urls['flags']}  (tokens and password in {var_dir / 'demo.env'}, mode 0600)",
                f"  portal         {urls['portal']}",
                f"  alert receiver {urls['alerts']}/alertmanager/webhook",
                f"  logs           {var_dir / 'logs'}",
                "",
            ]
        )
    )
    if open_browser:
        webbrowser.open(urls["dashboard"])

    remaining = deadline - time.monotonic()
    traffic_s = int(remaining) + 5 if remaining != float("inf") else 24 * 3600
    supervisor.start(
        "traffic-steady",
        [
            *ROLLGUARD,
            "traffic",
            "run",
            "--scenario",
            "steady",
            "--users",
            "40",
            "--duration",
            str(traffic_s),
            "--target",
            urls["portal"],
        ],
    )
    story.add(t0, "steady traffic: 40 students browsing MyTestSeries and ExamHome")

    promoted = _wait_for(
        lambda: admin.get_flag(FLAG_KEY).rollout >= 50,
        timeout=stage_hold_s + 120,
        deadline=deadline,
        supervisor=supervisor,
    )
    if not promoted:
        story.add(t0, "no promotion before the time ran out")
        return
    story.promoted_at_s = round(time.monotonic() - t0, 1)
    story.add(t0, "healthy: the controller promoted the flag to 50%")
    # The mass submission can outlast a short stage hold: without this the controller
    # would go on to 100% and the fault would hit everyone instead of half the students.
    flag = admin.get_flag(FLAG_KEY)
    admin.update_flag(
        FLAG_KEY,
        {"auto_promote": False},
        version=flag.version,
        reason="demo: hold at 50% through the mass submission and the fault",
    )
    story.add(t0, "auto-promote off: the flag stays at 50% (the controller still rolls back)")

    spike_users = min(2000, students)
    story.add(t0, f"mass submission: {spike_users} students submit at once, then reload their pages")
    spike = supervisor.start(
        "traffic-mass-submission",
        [
            *ROLLGUARD,
            "traffic",
            "run",
            "--scenario",
            "mass-submission",
            "--users",
            str(spike_users),
            "--duration",
            "20",
            "--target",
            urls["portal"],
            # The steady traffic keeps the portal's counters moving: don't wait for them to settle.
            "--settle",
            "5",
        ],
    )
    _wait_for(lambda: not spike.running, timeout=90, deadline=deadline, supervisor=supervisor)
    if spike.proc.returncode not in (0, None):
        raise ChildFailed(f"the mass-submission traffic failed:\n{spike.log_tail()}")

    if not admin.get_flag(FLAG_KEY).enabled:
        story.add(t0, "the controller rolled the flag back during the healthy mass submission")
        return
    story.add(t0, "the mass submission is over; the flag is still on at 50%")
    breaker_before = _breaker_activity(urls["portal"])
    fault_url = f"{urls['portal']}/api/admin/fault"
    portal_admin = {"Authorization": tokens["ROLLGUARD_PORTAL_ADMIN_TOKEN"]}
    httpx.post(
        fault_url, json={"error_rate": 0.3, "latency_ms": 300}, headers=portal_admin, timeout=5
    ).raise_for_status()
    story.fault_at_s = round(time.monotonic() - t0, 1)
    fault = "fault injected into the optimized path: 30% errors, +300 ms"
    admin.annotate(fault, kind="fault-on", flag=FLAG_KEY)
    story.add(t0, fault)
    try:
        ended = _watch_fault(
            supervisor,
            story,
            admin,
            portal_url=urls["portal"],
            t0=t0,
            deadline=deadline,
            breaker=breaker_before,
        )
    finally:
        # Left on, the fault would roll back an operator's Resume 20 s later with nothing saying why.
        httpx.delete(fault_url, headers=portal_admin, timeout=5).raise_for_status()
        admin.annotate("fault cleared from the optimized path", kind="fault-off", flag=FLAG_KEY)
        story.add(t0, "fault cleared: a Resume now stays on")
    if ended:
        return
    figures = headline(
        totals_from_text(httpx.get(f"{urls['portal']}/metrics", timeout=5).text, fn=FN),
        admin.get_flag(FLAG_KEY),
    )
    story.headline = figures.lines()
    story.completed = True  # saved with the headline: a watcher sees the whole ending at once
    story.add(
        t0, "the headline, from the portal's /metrics:\n" + "\n".join(f"  {line}" for line in story.headline)
    )
    if stop_when_done:
        return
    story.add(t0, f"the story is over; everything keeps running for the dashboard at {urls['dashboard']}")
    while time.monotonic() < deadline:
        supervisor.check_alive(("flags", "portal"))
        time.sleep(1)


def _breaker_activity(portal_url: str) -> float:
    return gate_counts(httpx.get(f"{portal_url}/metrics", timeout=5).text, fn=FN).breaker_activity


def _watch_fault(
    supervisor: Supervisor,
    story: Story,
    admin: FlagsClient,
    *,
    portal_url: str,
    t0: float,
    deadline: float,
    breaker: float,
) -> bool:
    """Print the breaker's trip and the controller's rollback as each is seen; True if the story ends here."""
    end = min(time.monotonic() + 120, deadline)
    while time.monotonic() < end and story.rolled_back_at_s is None:
        supervisor.check_alive(("flags", "portal", "controller"))
        if story.breaker_tripped_at_s is None and _breaker_activity(portal_url) > breaker:
            story.breaker_tripped_at_s = round(time.monotonic() - t0, 1)
            after = story.breaker_tripped_at_s - (story.fault_at_s or 0.0)
            story.add(t0, f"the portal's circuit breaker tripped {after:.1f}s after the fault (its /metrics)")
        if not admin.get_flag(FLAG_KEY).enabled:
            _rolled_back(story, admin, t0)
        time.sleep(0.2)
    if story.rolled_back_at_s is None:
        story.add(t0, "no rollback before the time ran out")
        return True
    if story.breaker_tripped_at_s is None:
        story.add(t0, "the portal's breaker did not trip before the rollback")
    return False


def _rolled_back(story: Story, admin: FlagsClient, t0: float) -> None:
    story.rolled_back_at_s = round(time.monotonic() - t0, 1)
    kills = [e for e in admin.events(flag=FLAG_KEY, limit=20) if e.action == "kill"]
    story.rollback_reason = kills[0].reason if kills else None
    story.add(
        t0,
        f"the controller rolled the flag back {story.rolled_back_at_s - (story.fault_at_s or 0.0):.1f}s "
        "after the fault",
        reason=story.rollback_reason,
        actor=kills[0].actor if kills else None,
    )


def _start_prometheus(
    supervisor: Supervisor,
    *,
    urls: dict[str, str],
    tokens: dict[str, str],
    ports: dict[str, int],
    var_dir: Path,
    t0: float,
    story: Story,
) -> bool:
    """Start Prometheus and Alertmanager wired to the demo; False when they are not installed."""
    prometheus = shutil.which("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not prometheus or not alertmanager:
        story.add(
            t0, "--with-prometheus: Prometheus or Alertmanager is not installed; using embedded metrics"
        )
        return False
    config = write_configs(
        var_dir / "prometheus", urls=urls, alerts_token=tokens["ROLLGUARD_ALERTS_TOKEN"], scrape_interval_s=1
    )
    supervisor.run(
        "alerts-rules",
        [*ROLLGUARD, "alerts", "rules", "--out", str(config.rules_dir / "rollguard.yml")],
        timeout=60,
    )
    am = supervisor.start(
        "alertmanager",
        [
            alertmanager,
            f"--config.file={config.alertmanager_yml}",
            f"--storage.path={var_dir / 'prometheus' / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
            "--cluster.listen-address=",
        ],
    )
    prom = supervisor.start(
        "prometheus",
        [
            prometheus,
            f"--config.file={config.prometheus_yml}",
            f"--storage.tsdb.path={var_dir / 'prometheus' / 'data'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        ],
    )
    am.wait_ready(url=f"{urls['alertmanager']}/-/ready")
    prom.wait_ready(url=f"{urls['prometheus']}/-/ready")
    story.add(t0, f"Prometheus at {urls['prometheus']}, Alertmanager at {urls['alertmanager']}")
    return True

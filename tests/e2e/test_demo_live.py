"""End to end, as an operator lives it: follow `rollguard up` while it runs, watch the
rollback on the dashboard in Chromium, then press Ctrl-C and find nothing left running.

One run of the whole story serves every check of it: what `rollguard up` printed and
recorded, the dashboard, the stop, and the flag service's audit log read back afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rollguard import ROLLGUARD, http_ok
from tests.conftest import start_flag_service
from tests.dashboard.test_browser import README_SCREENSHOT
from tests.support import start_process, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "exam-attempts-optimization"
# Startup (seeding 300 students, Streamlit), 20 s at 10%, the promotion, the
# 20 s mass submission and the rollback take about 90 s on a loaded 2-CPU machine.
STORY_TIMEOUT_S = 240
# The controller judges every scrape (each second) and rolls back after 2 failing
# checks of a 10 s window: a rollback later than this after the fault means the loop broke.
ROLLBACK_BOUND_S = 90
# `rollguard up` gives its children 10 s after SIGTERM and reads the portal's
# counters first (5 s timeout): anything slower means a child was not stopped.
STOP_BOUND_S = 30
# The children that serve HTTP, by their name in story.json's processes and urls.
SERVERS = ("flags", "portal", "alerts", "dashboard")
# In the page: `row(gd, title)` gives the traces and the axes of the metrics figure's row with that title.
ROW_JS = """const row = (gd, title) => {
    const titles = gd.layout.annotations.filter(a => a.xref === 'paper' && a.x === 0).map(a => a.text);
    const index = titles.indexOf(title) + 1;
    const suffix = index === 1 ? '' : String(index);
    return {
        traces: gd._fullData.filter(t => t.xaxis === 'x' + suffix),
        xa: gd._fullLayout['xaxis' + suffix],
        ya: gd._fullLayout['yaxis' + suffix],
    };
};
"""


def _read_story(path: Path) -> dict[str, Any] | None:
    # Written through a temporary file and a rename: it is either absent or whole.
    return json.loads(path.read_text()) if path.exists() else None


def _group_members(pgid: int) -> list[int]:
    """Live processes (zombies aside) whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited while we looked
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def test_operator_watches_the_rollback_then_ctrl_c_stops_everything(
    chromium: Browser,
    tmp_path: Path,
    artifacts_dir: Path,
) -> None:
    from playwright.sync_api import expect

    var_dir = tmp_path / "var"
    story_path = var_dir / "story.json"
    output_path = tmp_path / "up.out"
    # Its own session, like a command typed at a terminal: Ctrl-C reaches `rollguard up`
    # alone, and its children (in sessions of their own) only through it.
    up = start_process(
        [
            *ROLLGUARD,
            "up",
            "--no-browser",
            "--free-ports",
            "--var-dir",
            str(var_dir),
            "--students",
            # A mass submission of 300: on a machine shared with the other test worker, 600
            # students' cold start made the optimized cohort's p95 0.8 s worse than direct's
            # for two checks, and the controller rolled the healthy flag back (1 run in 4).
            "300",
            "--stage-hold",
            "20",
        ],
        log_path=output_path,
    )

    def printed() -> str:
        return output_path.read_text(errors="replace")

    def rolled_back() -> bool:
        if not up.running:
            pytest.fail(f"rollguard up exited with {up.proc.returncode} before the rollback:\n{printed()}")
        story = _read_story(story_path)
        # The story ends with the rollback, the fault cleared and the headline, saved together.
        return bool(story and story["completed"])

    stopped_cleanly = False
    try:
        wait_until(rolled_back, timeout=STORY_TIMEOUT_S, what="the story to reach the rollback")
        story = _read_story(story_path)
        assert story is not None
        urls = story["urls"]
        assert story["promoted_at_s"] < story["fault_at_s"] < story["rolled_back_at_s"]
        reason = story["rollback_reason"]
        assert reason and any(n in reason for n in ("error_rate", "p95", "breaker_bypass_rate")), story[
            "events"
        ]
        assert story["rolled_back_at_s"] is not None and not story["stopped"]
        assert 0 < story["rolled_back_at_s"] - story["fault_at_s"] <= ROLLBACK_BOUND_S
        assert [line.split(":")[0] for line in story["headline"]] == [
            "backend calls saved against direct",
            "call reduction (optimized path)",
            "cache hit rate",
            "eta, live efficiency (optimized path)",
            "cache memory",
            "error rate",
        ]
        # The command printed where everything is and a line per step of the story.
        out = printed()
        for name in SERVERS:
            assert urls[name] in out, out
        for step in ("seeding the portal", "promoted the flag to 50%", "mass submission", "fault injected"):
            assert step in out, out
        assert "rolled the flag back" in out, out
        assert "the headline, from the portal's /metrics" in out, out

        # The secrets are private, and the dashboard's password was printed once.
        secrets = _exports(var_dir / "demo.env")
        assert stat.S_IMODE((var_dir / "demo.env").stat().st_mode) == 0o600
        assert stat.S_IMODE(var_dir.stat().st_mode) == 0o700
        password = secrets["ROLLGUARD_DASHBOARD_PASSWORD"]
        assert out.count(password) == 1, out

        page = chromium.new_page(viewport={"width": 1600, "height": 2250})
        page.goto(f"{urls['dashboard']}/flag?flag={FLAG}")
        page.get_by_label("Password", exact=True).fill(password)
        page.get_by_role("button", name="Log in").click()
        # Logged in, the session starts on the flag list: open the flag from there.
        page.get_by_role("link", name=f"Open {FLAG}").click()
        expect(page.get_by_role("heading", name=FLAG)).to_be_visible(timeout=60_000)
        # Off for everyone, rolled back by the controller.
        # The page streams its panels in after the heading; on a busy machine that takes seconds.
        expect(page.get_by_text("killed: off for everyone")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("rolled_back", exact=True).first).to_be_visible(timeout=30_000)
        # Rolled back from the stage the fault hit: half of the students.
        rollout = page.get_by_test_id("stMetric").filter(has_text="Rollout")
        expect(rollout).to_contain_text("50%", timeout=30_000)

        # The whole story fits in the shortest range.
        page.get_by_test_id("stSelectbox").filter(has_text="Time range").click()
        page.get_by_role("option", name="15 minutes").click()
        updated = page.get_by_text("15 minutes at").last
        expect(updated).to_be_visible(timeout=60_000)
        charts = page.locator(".js-plotly-plot")
        # The metric panels, rows of one figure sharing its time axis, then the verdict timeline.
        expect(charts).to_have_count(2, timeout=60_000)
        expect(page.get_by_text("Error rate per cohort").first).to_be_visible()
        expect(charts.locator(".scatterlayer .trace").first).to_be_visible()
        # Every metric panel marks the promotion and the rollback (a legend per row), whose hover says why.
        # Plotly names a row's legend entries `legendtext`, `legend2text`, ...
        # Found by its element key: while a rerun replaces it, Streamlit may show the old copy beside it.
        metrics_chart = page.locator(".st-key-metrics .js-plotly-plot")
        legend_entries = metrics_chart.locator("text[class^='legend'][class$='text']")
        for kind in ("promotion", "rollback"):
            expect(legend_entries.filter(has_text=kind)).to_have_count(5)
        plotted = metrics_chart.evaluate(
            ROW_JS
            + """gd => row(gd, 'Error rate per cohort').traces.map(t => ({
                   name: t.name, points: Array.from(t.y || []).filter(v => v !== null && !Number.isNaN(v)).length,
                   text: (t.text || []).filter(v => v !== null)}))"""
        )
        by_name = {trace["name"]: trace for trace in plotted}
        assert by_name["optimized"]["points"] > 5 and by_name["direct"]["points"] > 5, by_name
        assert any(reason in text and "controller" in text for text in by_name["rollback"]["text"]), by_name

        # The operator hovers the rollback marker on the error-rate chart and reads why.
        # Right after a refresh of the charts, so the next one cannot wipe the hover label first.
        before = updated.inner_text()
        expect(updated).not_to_have_text(before, timeout=30_000)
        # The panels stand one under another at full width: bring the figure on screen to hover it.
        metrics_chart.evaluate("gd => gd.scrollIntoView({block: 'center'})")
        x, y = metrics_chart.evaluate(
            ROW_JS
            + """gd => {
                const {traces, xa, ya} = row(gd, 'Error rate per cohort');
                const marker = traces.find(t => t.name === 'rollback');
                const box = gd.getBoundingClientRect();
                // The marker's top end: a line trace hovers at its points.
                return [box.left + xa._offset + xa.d2p(marker.x[0]), box.top + ya._offset + 1];
            }"""
        )
        page.mouse.move(x - 40, y + 40)
        page.mouse.move(x, y, steps=5)
        expect(page.locator(".hoverlayer .hovertext")).to_contain_text(f"rollback by controller: {reason}")
        page.mouse.move(0, 0)

        # The story takes the last two minutes of the range: for the screenshot the operator
        # drags over it on every chart to zoom in. A refresh resets the zoom (the range's end
        # moves), so zoom right after one and try again if one came in between.
        since = metrics_chart.evaluate(
            "gd => Math.min(...Array.from(gd._fullData[0].x, x => new Date(x).getTime()))"
        )
        for _attempt in range(3):
            before = updated.inner_text()
            expect(updated).not_to_have_text(before, timeout=30_000)
            # One drag per figure: the metric rows share the time axis of the first.
            for index in range(2):
                charts.nth(index).evaluate("gd => gd.scrollIntoView({block: 'center'})")
                x0, x1, y = charts.nth(index).evaluate(
                    """(gd, since) => {
                        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
                        const box = gd.getBoundingClientRect();
                        const left = box.left + xa._offset;
                        return [Math.max(left + 1, left + xa.c2p(since - 20000)),
                                left + xa._length - 1, box.top + ya._offset + ya._length / 2];
                    }""",
                    since,
                )
                page.mouse.move(x0, y)
                page.mouse.down()
                page.mouse.move(x1, y, steps=8)
                page.mouse.up()
            page.mouse.move(0, 0)
            zoomed = charts.evaluate_all(
                "(gds, since) => gds.every(gd => new Date(gd._fullLayout.xaxis.range[0]).getTime() > since - 60000)",
                since,
            )
            if zoomed:
                break
        # Plotly's "double-click to zoom back out" tips, and the focus ring of the range picker.
        for tip in page.locator(".plotly-notifier .notifier-close").all():
            tip.click()
        expect(page.locator(".plotly-notifier .notifier-note")).to_have_count(0)
        page.evaluate("document.activeElement.blur()")
        # Back to the top of the page, which the scrolls to each figure moved.
        page.evaluate(
            "() => document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop = 0; })"
        )
        page.screenshot(path=str(artifacts_dir / "demo-rolled-back.png"), full_page=True)
        if os.environ.get("ROLLGUARD_UPDATE_SCREENSHOTS") == "1":
            # Only on request: every run rewriting a committed image would leave the tree dirty.
            README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(README_SCREENSHOT), full_page=True)
        page.close()

        # Ctrl-C, as at the terminal.
        up.signal(signal.SIGINT)
        started = time.monotonic()
        assert up.proc.wait(timeout=STOP_BOUND_S) == 0, printed()
        stopped_cleanly = True
        stop_s = time.monotonic() - started
        story = _read_story(story_path)
        assert story is not None
        assert story["stopped"], story["events"]
        assert story["events"][-1]["what"] == "stopping (interrupted)"
        assert "stopped every process" in printed()
        assert set(SERVERS) | {"seed", "controller", "traffic-steady"} <= set(story["processes"])
        left = {name: _group_members(pid) for name, pid in story["processes"].items()}
        assert not any(left.values()), f"still running after {stop_s:.1f}s: {left}"
        for name in SERVERS:
            assert not http_ok(urls[name]), f"{name} still answers at {urls[name]}"
        _assert_portal_counters(story["portal_metrics"])
        _assert_audit_log(tmp_path, var_dir)
    finally:
        if not stopped_cleanly:
            # Leave nothing behind for the next test: the command, then whatever it had started.
            up.kill()
            story = _read_story(story_path)
            for pid in (story or {}).get("processes", {}).values():
                if _group_members(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)


def _assert_portal_counters(metrics: dict[str, float]) -> None:
    """Both paths served; the fault was on the optimized path only.

    The direct path's only errors are the incident's own: a page that found no free
    database connection during the mass submission (counted apart).
    """
    assert metrics.get("optimizer_errors_total{path=direct}", 0.0) <= metrics["portal_db_pool_timeouts_total"]
    assert metrics["optimizer_requests_total{path=direct}"] > 0
    assert metrics["optimizer_requests_total{path=optimized}"] > 0


def _assert_audit_log(tmp_path: Path, var_dir: Path) -> None:
    """The flag service's audit log, read after a restart on the demo's database, holds the story."""
    service = start_flag_service(tmp_path, database_url=f"sqlite:///{var_dir / 'flags.db'}")
    try:
        with service.admin() as admin:
            events = admin.events(flag=FLAG, limit=200)
            flag = admin.get_flag(FLAG)
            notes = {a.kind for a in admin.annotations(flag=FLAG)}
    finally:
        service.process.terminate()
    assert not flag.enabled
    # The fault hit the 50% stage, where the demo holds the flag for the mass submission.
    assert flag.rollout == 50
    promotions = [e for e in events if e.actor == "controller" and e.after and e.after.get("rollout") == 50]
    kills = [e for e in events if e.action == "kill"]
    assert promotions and promotions[0].reason
    assert kills and kills[0].actor == "controller"
    assert any(name in (kills[0].reason or "") for name in ("error_rate", "p95", "breaker_bypass_rate"))
    # The story's marks for the dashboard; the fault is cleared once the story is told.
    assert {"mass-submission-start", "mass-submission-end", "fault-on", "fault-off"} <= notes


def _exports(path: Path) -> dict[str, str]:
    """The `export NAME=value` lines of a shell file."""
    lines = path.read_text().splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export "))

"""The dashboard served by `rollguard dashboard`, driven in a real Chromium through Playwright."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollguard import ROLLGUARD, free_port, http_ok
from tests.conftest import LiveFlagService
from tests.dashboard.conftest import FLAG_KEY, FN, create_flag, serve_dashboard
from tests.dashboard.controller import RunningController, busy
from tests.dashboard.metrics import MetricsTarget, scrape_history
from tests.support import REPO, missing, require_binary, start_process, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
README_SCREENSHOT = REPO / "docs" / "img" / "dashboard.png"


@pytest.fixture
def chromium() -> Iterator[object]:
    executable = require_binary("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def served_dashboard(
    shared_flag_service: LiveFlagService, control_database_url: str, tmp_path: Path
) -> Iterator[str]:
    yield from serve_dashboard(shared_flag_service, control_database_url, tmp_path, refresh_s=2)


def test_operator_sets_rollout_and_kills_in_the_browser(
    chromium,
    served_dashboard: str,
    shared_flag_service: LiveFlagService,
    control_database_url: str,
    artifacts_dir: Path,
) -> None:
    from playwright.sync_api import expect

    # The flag service serves this module alone, so the flag can have its real name (seen in the README).
    flag_key = FLAG_KEY
    admin = shared_flag_service.admin("setup")
    create_flag(admin, flag_key, enabled=True, rollout=10)
    target = MetricsTarget(FN)
    try:
        scrape_history(control_database_url, target, seconds=3600, wave=True)
    finally:
        target.stop()

    page = chromium.new_page(viewport={"width": 1440, "height": 2450})
    page.goto(served_dashboard)
    expect(page.get_by_role("heading", name="Rollguard flags")).to_be_visible(timeout=60_000)
    page.get_by_role("link", name=f"Open {flag_key}").click()
    # The page adds the range it opened on (`&range=...`) to the address.
    expect(page).to_have_url(
        re.compile(re.escape(f"{served_dashboard}/flag?flag={flag_key}") + r"(&range=\w+)?$")
    )
    # The metric panels (rows of one figure) and the verdict timeline.
    expect(page.locator(".js-plotly-plot")).to_have_count(2, timeout=60_000)
    expect(page.get_by_text("Error rate per cohort").first).to_be_visible()
    expect(page.locator(".js-plotly-plot .scatterlayer .trace").first).to_be_visible()
    expect(page.get_by_text("No controller is running").first).to_be_visible()
    # The dashboard judges nothing itself: with metrics but no controller, the flag is not judged.
    expect(page.get_by_text("not judged: no controller has run against this store").first).to_be_visible()

    page.get_by_role("button", name="50%", exact=True).click()
    wait_until(lambda: admin.get_flag(flag_key).rollout == 50, what="the flag service to say rollout 50")
    # A busy machine takes seconds to redraw the whole flag page after a click.
    expect(page.get_by_text("50%: done").first).to_be_visible(timeout=30_000)
    # Let the rerun after the click settle: controls drawn, the new rollout marked on the charts.
    expect(page.get_by_role("button", name="Kill…")).to_be_visible(timeout=30_000)
    expect(page.locator(".js-plotly-plot .legendtext", has_text="rollout").first).to_be_visible(
        timeout=30_000
    )
    page.screenshot(path=str(artifacts_dir / "dashboard-flag.png"), full_page=True)
    if os.environ.get("ROLLGUARD_UPDATE_SCREENSHOTS") == "1":
        # Only on request: every run rewriting a committed image would leave the tree dirty.
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(README_SCREENSHOT), full_page=True)

    page.get_by_role("button", name="Kill…").click()
    reason = page.get_by_label("Reason (required, goes into the audit log)")
    reason.fill("p95 over budget on ExamHome")
    # The data blocks refresh every 2 s; what the operator typed must survive that.
    updated = page.get_by_text("updated ").last
    before = updated.inner_text()
    expect(updated).not_to_have_text(before, timeout=15_000)
    expect(reason).to_have_value("p95 over budget on ExamHome")
    page.get_by_role("button", name="Turn off for everyone").click()

    wait_until(lambda: admin.get_flag(flag_key).enabled is False, what="the flag to be killed")
    event = admin.events(flag=flag_key, limit=1)[0]
    assert (event.action, event.reason, event.actor) == (
        "kill",
        "p95 over budget on ExamHome",
        "dashboard:browser",
    )
    expect(page.get_by_text("killed").first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(artifacts_dir / "dashboard-killed.png"), full_page=True)


def test_live_checks_follow_a_running_controller(
    chromium,
    served_dashboard: str,
    shared_flag_service: LiveFlagService,
    control_database_url: str,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    key = "live-checks"
    admin = shared_flag_service.admin("setup")
    create_flag(admin, key, enabled=True, auto_promote=True)
    env = {
        "ROLLGUARD_FLAGS_URL": shared_flag_service.url,
        "ROLLGUARD_ADMIN_TOKEN": shared_flag_service.admin_token,
        "ROLLGUARD_CONTROL_DATABASE_URL": control_database_url,
        "ROLLGUARD_METRICS": "embedded",
    }
    target = MetricsTarget(FN)
    controller = None
    try:
        with busy(target):
            # A dry run: it judges and records, and leaves the flag as it is.
            controller = RunningController(
                tmp_path / "controller.log",
                {**env, "ROLLGUARD_SCRAPE_TARGETS": target.url},
                "--interval",
                "1",
                "--scrape-interval",
                "1",
                "--dry-run",
            )
            page = chromium.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(f"{served_dashboard}/flag?flag={key}")
            panel = page.get_by_text(re.compile(r"^Health: .* · judged \d+ s ago by the controller"))
            expect(panel).to_be_visible(timeout=60_000)
            expect(panel).to_contain_text("error_rate[optimized]<=0.01: 0% (", timeout=30_000)
            expect(panel).to_contain_text("→ pass")
            expect(page.get_by_text(re.compile(r"Controller \S+ is leader")).first).to_be_visible()
            # Each refresh shows the controller's newest check: more samples in its window.
            shown = panel.inner_text()
            expect(panel).not_to_have_text(shown, timeout=30_000)

            assert controller.stop() == 0, controller.log()
            assert "Traceback" not in controller.log(), controller.log()
            # Its last verdicts stay for a few of its intervals (30 s at least), then nothing is judged.
            expect(page.get_by_text("No controller is running").first).to_be_visible(timeout=30_000)
            expect(panel).to_contain_text("the controller has stopped: nothing acts on these verdicts")
            expect(page.get_by_text("Health: ◌ not judged: no controller running").first).to_be_visible(
                timeout=90_000
            )
    finally:
        if controller is not None:
            controller.stop()
        target.stop()


def test_stopping_the_command_stops_streamlit(shared_flag_service: LiveFlagService, tmp_path: Path) -> None:
    """A supervisor that stops `rollguard dashboard` must not leave the Streamlit server behind."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Its own process group so the test can clean up whatever is left; the signal itself goes
    # to the command alone, as from a supervisor.
    process = start_process(
        [*ROLLGUARD, "dashboard", "--host", "127.0.0.1", "--port", str(port)],
        log_path=tmp_path / "dashboard.log",
        env={"ROLLGUARD_FLAGS_URL": shared_flag_service.url},
    )
    try:
        process.wait_ready(url=f"{url}/_stcore/health", timeout=60)
        process.proc.terminate()
        process.proc.wait(timeout=20)
        wait_until(lambda: not http_ok(f"{url}/_stcore/health"), timeout=20, what="Streamlit to stop")
    finally:
        # The group, though its leader is reaped: a Streamlit left behind still holds its id.
        process.signal(signal.SIGKILL)
        process.kill()

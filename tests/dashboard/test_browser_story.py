"""The flag page in Chromium after a story: markers, a gap after a rollback, the headline, no cut-off text.

Served by `rollguard dashboard` (fixtures of test_browser.py), fed by the
controller's real scraper from a real /metrics target, with changes and
annotations made through the flag service's admin API.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from control.scraper import Scraper
from control.store import ControlStore, VerdictRecord
from dashboard.headline import count, headline, megabytes, percent, totals_from_text
from tests.conftest import LiveFlagService
from tests.dashboard.conftest import FLAG_KEY, FN, GUARDRAILS, create_flag, serve_dashboard
from tests.dashboard.metrics import MetricsTarget
from tests.dashboard.test_browser import chromium  # noqa: F401  (fixture)
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAGES = (
    ("", "overview"),
    ("flag?flag=" + FLAG_KEY, "flag"),
    ("automation", "automation"),
    ("audit", "audit"),
)

# Every visible element wider inside than outside that clips (overflow or ellipsis) or holds text itself.
OVERFLOWING = """() => {
  const found = [];
  for (const el of document.querySelectorAll('[data-testid="stMain"] *, [data-testid="stSidebar"] *')) {
    if (el instanceof SVGElement || !el.getClientRects().length || el.clientWidth === 0) continue;
    const style = getComputedStyle(el);
    const clips = style.overflowX !== 'visible' || style.textOverflow === 'ellipsis';
    const ownText = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!(clips || ownText) || !(el.innerText || '').trim()) continue;
    if (el.scrollWidth > el.clientWidth + 1) {
      found.push(`${el.tagName}[${el.dataset.testid || ''}]: ${el.innerText.trim().slice(0, 60)} (${el.scrollWidth} > ${el.clientWidth})`);
    }
  }
  return found;
}"""

# The y values of one line of the metrics figure's row titled `title`, a break (NaN) as null.
TRACE_Y = """([title, name]) => {
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const titles = (plot.layout.annotations || []).filter(a => a.xref === 'paper' && a.x === 0).map(a => a.text);
    const row = titles.indexOf(title);
    if (row < 0) continue;
    const axis = row === 0 ? 'x' : `x${row + 1}`;
    const trace = plot._fullData.find(t => t.name === name && t.xaxis === axis);
    return trace ? Array.from(trace.y, v => (v === null || Number.isNaN(Number(v))) ? null : Number(v)) : [];
  }
  return [];
}"""


@pytest.fixture
def served_dashboard(
    shared_flag_service: LiveFlagService, control_database_url: str, tmp_path: Path
) -> Iterator[str]:
    """`rollguard dashboard` refreshing every 5 s: a busy machine draws the flag page in over 2 s."""
    yield from serve_dashboard(shared_flag_service, control_database_url, tmp_path, refresh_s=5)


def scrape(database_url: str, target: MetricsTarget, phases: list[tuple[int, tuple[str, ...]]]) -> None:
    """Scrape `target` every 5 s, stamped in the past: each phase is (seconds, cohorts with traffic)."""
    store = ControlStore(database_url)
    total = sum(seconds for seconds, _paths in phases)
    moment = [datetime.now(UTC) - timedelta(seconds=total)]
    scraper = Scraper(store, [target.url], interval_s=5, retention_s=86_400, clock=lambda: moment[0])
    try:
        for seconds, paths in phases:
            for _ in range(seconds // 5):
                target.traffic(calls=20, error_fraction=0.0, latency_s=0.03, paths=paths)
                assert scraper.scrape_once() > 0
                moment[0] += timedelta(seconds=5)
    finally:
        scraper.close()
        store.close()


def test_the_story_at_a_glance_and_no_cut_off_text(
    chromium,  # noqa: F811
    served_dashboard: str,
    shared_flag_service: LiveFlagService,
    control_database_url: str,
) -> None:
    from playwright.sync_api import expect

    admin = shared_flag_service.admin("demo")
    create_flag(admin, FLAG_KEY, enabled=True, rollout=10)
    admin.set_rollout(FLAG_KEY, 50, reason="healthy at 10%")
    admin.annotate("500 students submit at once", kind="mass-submission-start")
    admin.annotate("30% errors on the optimized path", kind="fault-on", flag=FLAG_KEY)
    target = MetricsTarget(FN)
    try:
        # Both cohorts, then the optimized one served nothing for 150 s (more than a 60 s window),
        # then both again: five minutes, the range the page opens on.
        scrape(
            control_database_url,
            target,
            [(90, ("optimized", "direct")), (150, ("direct",)), (60, ("optimized", "direct"))],
        )
        exposition = httpx.get(target.url, timeout=5).text
    finally:
        target.stop()
    # The controller judged until now, then the flag is killed: nothing is judged afterwards.
    store = ControlStore(control_database_url)
    now = datetime.now(UTC)
    store.record_verdicts(
        [
            VerdictRecord(now - timedelta(seconds=s), FLAG_KEY, g.name, "pass", 0.0, g.threshold, 100)
            for s in range(60, 0, -5)
            for g in GUARDRAILS
        ]
    )
    store.close()
    admin.kill(FLAG_KEY, reason="error_rate over its guardrail")
    expected = headline(totals_from_text(exposition, fn=FN), admin.get_flag(FLAG_KEY))

    page = chromium.new_page(viewport={"width": 1400, "height": 2600})
    page.goto(f"{served_dashboard}/flag?flag={FLAG_KEY}")
    # The metric panels (rows of one figure) and the verdict timeline.
    expect(page.locator(".js-plotly-plot")).to_have_count(2, timeout=60_000)

    # The default range fits the story: it began a minute ago.
    expect(page.get_by_text("5 minutes at 5s steps").first).to_be_visible()
    # Markers for the changes and the annotations, named in the legends.
    for name in ("rollout", "rollback", "annotation"):
        expect(page.locator(".js-plotly-plot .legendtext", has_text=name).first).to_be_visible(timeout=30_000)
    # The optimized cohort's error rate breaks where it served nothing, the direct one does not.
    optimized = page.evaluate(TRACE_Y, ["Error rate per cohort", "optimized"])
    direct = page.evaluate(TRACE_Y, ["Error rate per cohort", "direct"])
    assert None in optimized and None not in direct, (optimized, direct)
    # After the kill the timeline says the flag is not judged, and why.
    expect(page.locator(".js-plotly-plot .legendtext", has_text="not judged: killed").first).to_be_visible(
        timeout=90_000
    )
    # The headline equals what /metrics gives (1,344 backend calls saved, 80.0% ...).
    assert expected.backend_saved and expected.backend_saved > 0
    for label, value in (
        ("Backend calls saved", count(expected.backend_saved)),
        ("Call reduction", percent(expected.call_reduction)),
        ("Hit rate", percent(expected.hit_rate)),
        ("Cache", megabytes(expected.cache_bytes)),
        ("Errors optimized", percent(expected.error_rate["optimized"])),
        ("Errors direct", percent(expected.error_rate["direct"])),
    ):
        metric = page.locator('[data-testid="stMetric"]', has_text=label).first
        expect(metric.locator('[data-testid="stMetricValue"]')).to_have_text(value)

    for width in (1280, 1400):
        page.set_viewport_size({"width": width, "height": 2600})
        for path, name in PAGES:
            page.goto(f"{served_dashboard}/{path}")
            page.locator('[data-testid="stMain"]').wait_for()
            expect(page.get_by_text("Acting as").first).to_be_visible(timeout=60_000)
            if name == "flag":
                expect(page.locator(".js-plotly-plot")).to_have_count(2, timeout=60_000)
                # The live guardrails' table, and the editor opened as an operator would.
                expect(page.get_by_role("cell", name="error_rate[optimized]<=0.01")).to_be_visible()
                page.get_by_text("Edit guardrails").click()
                expect(page.get_by_text("Draft: a new guardrail")).to_be_visible(timeout=30_000)
            wait_until(
                lambda: not page.locator('[data-testid="stSkeleton"]').count(), what="the page to draw"
            )
            cut_off = page.evaluate(OVERFLOWING)
            assert cut_off == [], f"cut-off text on {name} at {width} px: {cut_off}"


def test_the_panels_follow_a_change_made_elsewhere(
    chromium,  # noqa: F811
    served_dashboard: str,
    shared_flag_service: LiveFlagService,
) -> None:
    from playwright.sync_api import expect

    admin = shared_flag_service.admin("cli")
    key = "panel-follows"
    create_flag(admin, key, enabled=True, rollout=50)
    page = chromium.new_page(viewport={"width": 1280, "height": 1600})
    page.goto(f"{served_dashboard}/flag?flag={key}")
    header = page.locator('[data-testid="stMetric"]', has_text="Rollout").locator(
        '[data-testid="stMetricValue"]'
    )
    expect(header).to_have_text("50%", timeout=60_000)

    admin.set_rollout(key, 100, reason="finished from the CLI")
    admin.kill(key, reason="checking the panel")

    def same_version_everywhere() -> bool:
        text = page.locator('[data-testid="stMain"]').inner_text()
        return (
            "Rollout · now 100%" in text
            and "killed: off for everyone" in text
            and header.inner_text() == "100%"
        )

    wait_until(same_version_everywhere, timeout=30, what="header and panels to show the CLI's change")
    # At every refresh the header and the panel show the same version.
    for _ in range(5):
        text = page.locator('[data-testid="stMain"]').inner_text()
        assert ("Rollout · now 100%" in text) == (header.inner_text() == "100%")

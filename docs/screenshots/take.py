"""Screenshot every dashboard page of a running `rollguard up` into a folder (what docs/screenshots/ holds).

Run the demo, wait until it prints the headline (after the rollback), then, in
another shell:

    .venv/bin/python docs/screenshots/take.py var/story.json docs/screenshots

Logs in with the dashboard password from `demo.env` beside `story.json` when
the dashboard asks for one. Uses Debian's Chromium (/usr/bin/chromium) through
Playwright, at 1400 px.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

FLAG = "exam-attempts-optimization"
# (link in the sidebar, file name); the flag page is opened from the overview's link.
PAGES = (
    ("Overview", "overview"),
    ("Flag", "flag"),
    ("Automation", "automation"),
    ("Audit log", "audit"),
)


def password(story_path: Path) -> str | None:
    """The dashboard password `rollguard up` wrote next to its story, if any."""
    env = story_path.parent / "demo.env"
    if not env.exists():
        return None
    for line in env.read_text().splitlines():
        if line.startswith("export ROLLGUARD_DASHBOARD_PASSWORD="):
            return line.split("=", 1)[1] or None
    return None


def open_page(page: Page, title: str) -> None:
    """Go to one page within the same session (a new address would start a new one)."""
    if title == "Flag":
        page.get_by_role("link", name="Overview").click()
        page.get_by_role("link", name=f"Open {FLAG}").click()
    else:
        page.get_by_role("link", name=title, exact=True).click()


def main(story_path: Path, out: Path) -> None:
    url = json.loads(story_path.read_text())["urls"]["dashboard"]
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(url)
        secret = password(story_path)
        if secret:
            page.get_by_label("Password", exact=True).fill(secret)
            page.get_by_role("button", name="Log in").click()
        expect(page.get_by_text("Acting as").first).to_be_visible(timeout=120_000)
        for title, name in PAGES:
            # Streamlit scrolls inside its own container: the viewport must hold the whole page.
            page.set_viewport_size({"width": 1400, "height": 3400 if name == "flag" else 1400})
            open_page(page, title)
            if name == "flag":
                # The metric panels (rows of one figure) and the verdict timeline.
                expect(page.locator(".js-plotly-plot")).to_have_count(2, timeout=120_000)
                expect(page.get_by_text("Results so far")).to_be_visible(timeout=60_000)
            # Plotly animates its first draw; a picture taken at once catches it halfway.
            page.wait_for_timeout(3000)
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

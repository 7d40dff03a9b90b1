"""The flag page in Chromium: how long it takes to draw, and where that time goes.

`dashboard_render.py` calls `time_page` once per repetition and dashboard tree:
a fresh `rollguard dashboard` served from the tree, a fresh Chromium, the
24-hour flag page opened until its charts are drawn, then left open until its
data refreshes by itself (the page's `ROLLGUARD_DASHBOARD_REFRESH_S`, set to
`REFRESH_S` here), then reloaded. The refresh is timed in the page: from the
request the page sends for it to the last change any chart makes for it (once
the charts have been still for a second). Besides the wall times it records, from probes in the page and the DevTools protocol,
when the page's websocket opened, when its first and last messages arrived,
when Plotly's code had loaded and when the charts were drawn (milliseconds
after navigation), and the CPU seconds the browser's processes and the
dashboard's server spent. On a shared machine CPU seconds vary less than wall
time does.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import servers
from rollguard import Child

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TITLES = (
    "Call reduction",
    "Cache hit rate",
    "Cache bytes and process memory",
    "Error rate per cohort",
    "p95 latency per cohort",
    "Guardrail verdicts",
)

# Every chart title drawn by Plotly (as a chart's title or a row's title), every chart drawn and
# the 24-hour caption shown: the same for a page of six figures and one of two. Checked every
# 50 ms in the page: Playwright's expectations, polled as fast as the page paints and building
# an accessibility snapshot of the page when they fail, took about a second of the page thread's
# CPU in a profiled first load (load average 8), time the dashboard itself did not spend.
_DRAWN = """(titles) => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const drawn = new Set(plots.flatMap(p => [...p.querySelectorAll('.gtitle, .annotation-text')]
    .map(t => t.textContent)));
  return plots.length > 0 && titles.every(t => drawn.has(t))
    && plots.every(p => p.querySelector('.main-svg') && p.getBoundingClientRect().height > 0)
    && document.body.textContent.includes('24 hours at ');
}"""

# Installed before the page's own scripts: when the first chart element was drawn by Plotly.
_PROBE = """(() => {
  const seen = window.__rollguard = {};
  const poll = () => {
    if (!seen.first_chart_ms && document.querySelector('.js-plotly-plot .main-svg')) {
      seen.first_chart_ms = performance.now();
    }
    if (!seen.first_chart_ms) requestAnimationFrame(poll);
  };
  requestAnimationFrame(poll);
})();"""

# Installed once the first load is drawn: when the page next asks the server for a rerun (an
# auto-refresh sends one over the websocket) and when a chart last changed after that.
_WATCH_REFRESH = """() => {
  const watch = window.__refresh = {sent: null, changed: null};
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (watch.sent === null) watch.sent = performance.now();
    return send.call(this, data);
  };
  const inChart = (node) => {
    const element = node.nodeType === 1 ? node : node.parentElement;
    return element !== null && element.closest('.js-plotly-plot') !== null;
  };
  new MutationObserver((records) => {
    if (watch.sent !== null && records.some((r) => inChart(r.target))) watch.changed = performance.now();
  }).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
}"""

# The refresh is over once a chart changed after the request and none has for a second.
_REFRESHED = """() => {
  const watch = window.__refresh;
  return watch.changed !== null && performance.now() - watch.changed > 1000;
}"""

#: The page's auto-refresh in seconds while it is timed: long enough that none starts during a load.
REFRESH_S = 30

_RESOURCES = """() => performance.getEntriesByType('resource')
  .filter(r => r.name.includes('/PlotlyChart.'))
  .map(r => r.responseEnd)"""


def start_dashboard(
    tree: Path, *, flags_url: str, token: str, control_url: str, log: Path
) -> tuple[Child, str]:
    """`rollguard dashboard` from `tree` (with its own .venv) on a free port; return it and its URL."""
    env = {
        "ROLLGUARD_FLAGS_URL": flags_url,
        "ROLLGUARD_ADMIN_TOKEN": token,
        "ROLLGUARD_CONTROL_DATABASE_URL": control_url,
        "ROLLGUARD_DASHBOARD_REFRESH_S": str(REFRESH_S),
    }
    python = tree / ".venv" / "bin" / "python"
    return servers.serve(
        lambda port: (
            [str(python if python.exists() else sys.executable), "-m", "rollguard", "dashboard"]
            + ["--host", "127.0.0.1", "--port", str(port)]
        ),
        ready_path="/_stcore/health",
        log_path=log,
        env=env,
        timeout_s=90,
        cwd=tree,
    )


def time_page(
    tree: Path, *, flags_url: str, token: str, control_url: str, workdir: Path, key: str
) -> dict[str, Any]:
    """The 24-hour flag page served from `tree`: opened on a fresh server and browser, refreshed, reloaded."""
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Chromium is not installed")
    process, url = start_dashboard(
        tree, flags_url=flags_url, token=token, control_url=control_url, log=workdir / "dashboard.log"
    )
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            context = browser.new_context(viewport={"width": 1400, "height": 2400})
            context.add_init_script(_PROBE)
            page = context.new_page()
            timeline = _Timeline(context.new_cdp_session(page))
            first = _load(
                page, timeline, lambda: page.goto(f"{url}/flag?flag={key}&range=24h"), server=process
            )
            refresh = _refresh(page, timeline, server=process)
            reload = _load(page, timeline, page.reload, server=process)
            browser.close()
    finally:
        process.stop()
    return {"first": first, "refresh": refresh, "reload": reload}


class _Timeline:
    """The websocket messages of the page's last navigation, timed by the browser's network thread."""

    def __init__(self, cdp: Any) -> None:
        self.navigated: float | None = None
        self.messages: list[float] = []
        cdp.send("Network.enable")
        cdp.on("Network.requestWillBeSent", self._request)
        cdp.on("Network.webSocketFrameReceived", lambda event: self.messages.append(event["timestamp"]))

    def _request(self, event: dict[str, Any]) -> None:
        if event.get("type") == "Document":
            self.navigated = event["timestamp"]
            self.messages.clear()

    def after_navigation_ms(self, moment: float) -> float:
        assert self.navigated is not None
        return round((moment - self.navigated) * 1000)


def _load(page: Any, timeline: _Timeline, navigate: Any, *, server: Child) -> dict[str, float]:
    browser_cpu, server_cpu = chromium_cpu_s(), group_cpu_s(server.pid)
    started = time.perf_counter()
    navigate()
    page.wait_for_function(_DRAWN, arg=list(TITLES), polling=50, timeout=300_000)
    wall_s = time.perf_counter() - started
    probe = page.evaluate("() => window.__rollguard")
    plotly_loaded = page.evaluate(_RESOURCES)
    drawn_ms = page.evaluate("() => performance.now()")
    return {
        "wall_s": round(wall_s, 3),
        "first_message_ms": timeline.after_navigation_ms(timeline.messages[0]),
        "last_message_ms": timeline.after_navigation_ms(timeline.messages[-1]),
        "messages": len(timeline.messages),
        "plotly_code_loaded_ms": round(plotly_loaded[0]) if plotly_loaded else None,
        "first_chart_drawn_ms": round(probe["first_chart_ms"]) if probe.get("first_chart_ms") else None,
        "all_drawn_ms": round(drawn_ms),
        "browser_cpu_s": round(chromium_cpu_s() - browser_cpu, 2),
        "server_cpu_s": round(group_cpu_s(server.pid) - server_cpu, 2),
    }


def _refresh(page: Any, timeline: _Timeline, *, server: Child) -> dict[str, float]:
    """Wait for the page's next auto-refresh; time it from its request to the charts' last change."""
    page.evaluate(_WATCH_REFRESH)
    received = len(timeline.messages)
    browser_cpu, server_cpu = chromium_cpu_s(), group_cpu_s(server.pid)
    page.wait_for_function(_REFRESHED, polling=50, timeout=(REFRESH_S + 120) * 1000)
    watch = page.evaluate("() => window.__refresh")
    return {
        "charts_changed_ms": round(watch["changed"] - watch["sent"]),
        "messages": len(timeline.messages) - received,
        "browser_cpu_s": round(chromium_cpu_s() - browser_cpu, 2),
        "server_cpu_s": round(group_cpu_s(server.pid) - server_cpu, 2),
    }


def _processes() -> dict[int, tuple[int, int, str, float]]:
    """Every process: pid -> (parent, group, name, CPU seconds)."""
    found = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            head, tail = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        found[int(entry)] = (
            int(fields[1]),
            int(fields[2]),
            head.split("(", 1)[1],
            (int(fields[11]) + int(fields[12])) / tick,
        )
    return found


def group_cpu_s(group: int) -> float:
    """CPU seconds of the live processes of one process group (a server started in its own session)."""
    return sum(cpu for _parent, pgid, _name, cpu in _processes().values() if pgid == group)


def chromium_cpu_s() -> float:
    """CPU seconds of the live Chromium processes this benchmark started (its descendants)."""
    processes = _processes()
    mine = {os.getpid()}
    grew = True
    while grew:
        found = {pid for pid, (parent, *_rest) in processes.items() if parent in mine} - mine
        mine |= found
        grew = bool(found)
    return sum(
        cpu for pid, (_p, _g, name, cpu) in processes.items() if pid in mine and "chrom" in name.lower()
    )

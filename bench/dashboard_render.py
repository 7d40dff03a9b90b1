"""How long the dashboard's flag page takes to render with 24 hours of 5-second metrics.

Fills a fresh controller store with 24 h of scrapes every 5 s (the metric
contract's counters, histogram and gauges for one function and both cohorts)
and a verdict per guardrail per 5 s, through the store's public write API, as
the embedded scraper and the controller loop write them. Starts a real flag
service, then renders the flag page in Streamlit's AppTest over "1 hour" and
"24 hours" (automatic step and the full 5 s resolution): cold, with every data
cache emptied, and as an auto-refresh, which reads again only what may have
changed; then in Chromium served by `rollguard dashboard` (the 24-hour page
opened cold on a fresh server, then reloaded, each until the charts are
drawn). Also times the parts of a 24-hour render outside Streamlit.

    .venv/bin/python bench/dashboard_render.py [--hours 24] [--repeat 3]

Writes bench/results/dashboard_render.json.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import servers
from bench.machine import write_result
from control.store import ControlStore, Sample, VerdictRecord
from flags.client import FlagsClient, Guardrail
from rollguard import ROLLGUARD, Child

REPO = Path(__file__).resolve().parent.parent
KEY = "exam-attempts-optimization"
FN = "get_all_exam_attempts"
STEP_S = 5
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GUARDRAILS = (
    Guardrail("error_rate", "<=", 0.01, window_s=60, min_samples=20, path="optimized"),
    Guardrail("p95_latency_s", "<=", 0.2, window_s=60, min_samples=20, path="optimized"),
    Guardrail("cache_hit_rate", ">=", 0.75, window_s=60, min_samples=20),
)


def start_flag_service(workdir: Path) -> tuple[Child, str, str]:
    """Run `rollguard flags serve` on a free port; return the process, its URL and admin token."""
    token = "admin-" + secrets.token_hex(12)
    env = {"ROLLGUARD_ADMIN_TOKEN": token, "ROLLGUARD_DATABASE_URL": f"sqlite:///{workdir / 'flags.db'}"}
    process, url = servers.serve_flags(workdir / "flags.log", env)
    return process, url, token


def fill_store(database_url: str, *, hours: float, end: datetime) -> dict[str, int]:
    """Write `hours` of 5 s scrapes and verdicts ending at `end`; return the row counts."""
    store = ControlStore(database_url)
    steps = int(hours * 3600 / STEP_S)
    target = "http://portal-1:8000/metrics"
    totals: dict[tuple[str, str], float] = {}
    buckets: dict[tuple[str, float | str], float] = {}
    samples_written = verdicts_written = 0
    batch: list[Sample] = []
    verdicts: list[VerdictRecord] = []

    def counter(name: str, labels: dict[str, str], increment: float, moment: datetime) -> None:
        key = (name, repr(sorted(labels.items())))
        totals[key] = totals.get(key, 0.0) + increment
        batch.append(Sample(moment, target, name, labels, totals[key]))

    for step in range(steps):
        moment = end - timedelta(seconds=(steps - step) * STEP_S)
        daily = math.sin(step / steps * 2 * math.pi)
        calls = 40 + int(20 * daily)
        for path, share, latency in (("optimized", 0.15, 0.03 + 0.01 * daily), ("direct", 1.0, 0.09)):
            labels = {"fn": FN, "path": path}
            counter("optimizer_requests_total", labels, calls, moment)
            counter("optimizer_backend_calls_total", labels, calls * share, moment)
            counter("optimizer_errors_total", labels, 1 if step % 97 == 0 else 0, moment)
            for le in (*BUCKETS, "+Inf"):
                bound = math.inf if le == "+Inf" else float(le)
                key = (path, le)
                buckets[key] = buckets.get(key, 0.0) + (calls if latency <= bound else 0)
                batch.append(
                    Sample(
                        moment,
                        target,
                        "optimizer_call_seconds_bucket",
                        {**labels, "le": str(le)},
                        buckets[key],
                    )
                )
            counter("optimizer_call_seconds_count", labels, calls, moment)
        counter("optimizer_cache_hits_total", {"fn": FN}, calls * 0.82, moment)
        counter("optimizer_cache_misses_total", {"fn": FN}, calls * 0.18, moment)
        batch.append(Sample(moment, target, "optimizer_cache_bytes", {"fn": FN}, 3e6 + 1e6 * daily))
        batch.append(Sample(moment, target, "process_resident_memory_bytes", {}, 9e7 + 5e6 * daily))
        for guardrail in GUARDRAILS:
            verdict = "fail" if guardrail.metric == "error_rate" and step % 97 in (0, 1) else "pass"
            verdicts.append(
                VerdictRecord(
                    time=moment,
                    flag=KEY,
                    guardrail=guardrail.name,
                    verdict=verdict,
                    value=None,
                    threshold=guardrail.threshold,
                    samples=calls * 12,
                    metric=guardrail.metric,
                    path=guardrail.path,
                )
            )
        if len(batch) > 50_000:
            samples_written += store.add_samples(batch)
            batch.clear()
            store.record_verdicts(verdicts)
            verdicts_written += len(verdicts)
            verdicts.clear()
    samples_written += store.add_samples(batch)
    store.record_verdicts(verdicts)
    verdicts_written += len(verdicts)
    store.close()
    return {"scrapes": steps, "samples": samples_written, "verdicts": verdicts_written}


def render_seconds(app: object, *, time_range: str, resolution: str, refresh: bool = False) -> float:
    """Render the flag page with the given range and resolution.

    Cold (default): every cache emptied first. `refresh`: only what the next
    auto-refresh reads again is dropped (settled metric chunks stay cached).
    """
    import streamlit as st

    from dashboard import data

    if refresh:
        data.forget_recent()
    else:
        st.cache_data.clear()
    at = app  # an AppTest already on the flag page
    at.selectbox(key="time_range").set_value(time_range)  # type: ignore[attr-defined]
    at.selectbox(key="resolution").set_value(resolution)  # type: ignore[attr-defined]
    started = time.perf_counter()
    at.run(timeout=600)  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - started
    if at.exception:  # type: ignore[attr-defined]
        raise SystemExit(f"the flag page raised: {at.exception}")  # type: ignore[attr-defined]
    charts = at.get("plotly_chart")  # type: ignore[attr-defined]
    if len(charts) != 6:
        raise SystemExit(f"expected 6 charts, got {len(charts)}: {[str(w.value) for w in at.warning]}")  # type: ignore[attr-defined]
    return elapsed


def breakdown(database_url: str, *, hours: float) -> dict[str, float]:
    """Time the parts of a 24 h render outside Streamlit: metric queries, verdicts, figures."""
    from control.metrics import open_source
    from control.settings import ControlSettings
    from dashboard import charts, verdicts
    from dashboard.plots import PANELS, step_for

    settings = ControlSettings.from_env({"ROLLGUARD_CONTROL_DATABASE_URL": database_url})
    store = ControlStore(database_url)
    source = open_source(settings, store=store)
    end = datetime.now(UTC)
    start = end - timedelta(hours=hours)
    step_s = step_for(int(hours * 3600), None)
    started = time.perf_counter()
    lines = {
        (panel.title, name): source.series(metric, fn=FN, path=path, start=start, end=end, step_s=step_s)
        for panel in PANELS
        for name, metric, path in panel.lines
    }
    queried = time.perf_counter()
    records = store.verdicts(KEY, since=start, until=end)
    verdicts_read = time.perf_counter()
    for panel in PANELS:
        charts.metric_figure(
            panel.title,
            {name: lines[(panel.title, name)] for name, _m, _p in panel.lines},
            guardrails=GUARDRAILS,
            start=start,
            end=end,
        )
    verdicts.timeline(verdicts.verdict_runs(records), start=start, end=end)
    built = time.perf_counter()
    store.close()
    return {
        "metric_series_queries": round(queried - started, 3),
        "verdicts_read": round(verdicts_read - queried, 3),
        "figures_built": round(built - verdicts_read, 3),
        "series": len(lines),
        "step_s": step_s,
    }


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def browser_seconds(flags_url: str, token: str, control_url: str, workdir: Path) -> dict[str, float]:
    """Time the 24-hour flag page in Chromium served by a fresh `rollguard dashboard`.

    `first_24h`: from navigating to `/flag?flag=KEY&range=24h` on a server that has
    read nothing yet until the six charts and the 24-hour caption are drawn (a
    dashboard that ignores the range parameter is switched to 24 hours, which
    counts). `refresh_24h`: a browser reload of the same page right after.
    """
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        return {}
    env = {
        "ROLLGUARD_FLAGS_URL": flags_url,
        "ROLLGUARD_ADMIN_TOKEN": token,
        "ROLLGUARD_CONTROL_DATABASE_URL": control_url,
        "ROLLGUARD_DASHBOARD_REFRESH_S": "600",
    }
    process, url = servers.serve(
        lambda port: [*ROLLGUARD, "dashboard", "--host", "127.0.0.1", "--port", str(port)],
        ready_path="/_stcore/health",
        log_path=workdir / "dashboard.log",
        env=env,
    )
    with process:
        figures: dict[str, float] = {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            started = time.perf_counter()
            page.goto(f"{url}/flag?flag={KEY}&range=24h")
            _wait_drawn(page)
            figures["first_24h"] = round(time.perf_counter() - started, 3)
            started = time.perf_counter()
            page.reload()
            _wait_drawn(page)
            figures["refresh_24h"] = round(time.perf_counter() - started, 3)
            browser.close()
        return figures


# Six charts drawn (each has Plotly's SVG and a height) and the 24-hour caption shown. Checked
# every 50 ms in the page: Playwright's expectations, polled as fast as the page paints and building
# an accessibility snapshot of the page when they fail, took about a second of the page thread's CPU
# in a profiled first load (load average 8), time the dashboard itself did not spend.
_DRAWN = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  return plots.length === 6
    && plots.every(p => p.querySelector('.main-svg') && p.getBoundingClientRect().height > 0)
    && document.body.textContent.includes('24 hours at ');
}"""


def _wait_drawn(page: Any) -> None:
    """Wait until the flag page shows its six charts over 24 hours (switching to 24 hours if need be)."""
    page.locator(".js-plotly-plot").first.wait_for(timeout=300_000)
    picker = page.get_by_role("combobox", name="Time range")
    if picker.input_value() != "24 hours":
        picker.click()
        page.get_by_role("option", name="24 hours").click()
    page.wait_for_function(_DRAWN, polling=50, timeout=300_000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from streamlit.testing.v1 import AppTest

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("streamlit").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="rollguard-bench-") as tmp:
        workdir = Path(tmp)
        control_url = f"sqlite:///{workdir / 'control.db'}"
        started = time.perf_counter()
        counts = fill_store(control_url, hours=args.hours, end=datetime.now(UTC))
        fill_s = time.perf_counter() - started
        print(f"filled the store: {counts} in {fill_s:.1f}s", flush=True)
        process, url, token = start_flag_service(workdir)
        try:
            admin = FlagsClient(url, token, actor="bench")
            admin.create_flag(
                KEY,
                enabled=True,
                rollout=10,
                stages=[10, 50, 100],
                guardrails=list(GUARDRAILS),
                payload={"fn": FN},
                state="rolling_out",
                reason="bench",
            )
            admin.set_rollout(KEY, 50, reason="bench promotion")
            at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=600)
            at.secrets.update(
                {
                    "flags_url": url,
                    "admin_token": token,
                    "operator": "bench",
                    "control_database_url": control_url,
                    "refresh_s": 3600,
                }
            )
            at.query_params["flag"] = KEY
            at.run()
            at.switch_page("views/flag.py").run()
            cases = (("1 hour", "auto"), ("24 hours", "auto"), ("24 hours", "5 s (full)"))
            figures: dict[str, object] = {**counts, "fill_store_s": round(fill_s, 1)}
            # Each case cold first, then as refreshes: a refresh finds the settled chunks cached.
            for (time_range, resolution), refresh in itertools.product(cases, (False, True)):
                times = [
                    render_seconds(at, time_range=time_range, resolution=resolution, refresh=refresh)
                    for _ in range(args.repeat)
                ]
                name = f"{time_range} / {resolution} / {'refresh' if refresh else 'cold'}"
                figures[f"render_s[{name}]"] = {
                    "median": round(statistics.median(times), 3),
                    "min": round(min(times), 3),
                    "max": round(max(times), 3),
                    "runs": len(times),
                }
                print(
                    f"{name:36} median {statistics.median(times):6.2f}s  (min {min(times):.2f}, max {max(times):.2f})",
                    flush=True,
                )
            figures["load_average_1m_after"] = round(os.getloadavg()[0], 2)
            figures["browser_s"] = browser_seconds(url, token, control_url, workdir)
            print(f"in Chromium: {figures['browser_s']}", flush=True)
            figures["breakdown_24h_auto_s"] = breakdown(control_url, hours=args.hours)
            print(f"where 24 hours / auto goes: {figures['breakdown_24h_auto_s']}", flush=True)
        finally:
            process.stop()
    path = write_result(
        "dashboard_render", figures, command="python bench/dashboard_render.py " + " ".join(sys.argv[1:])
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

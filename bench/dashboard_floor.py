"""How fast a Streamlit page can be on this machine: the floor under the flag page's render time.

Serves `dashboard_floor_app.py` three ways from a store of 24 hours of 5-second
scrapes (as `dashboard_render.py` fills it): a page with a title and a caption
only, the same page with the flag page's five metric panels as its one Plotly
figure, and with the same lines as five Vega-Lite charts (Streamlit's built-in
`st.altair_chart`). Each run starts the page's server and a fresh Chromium,
opens the page until it is drawn (the server's first run reads the series,
so a first load with charts includes that read), then reloads it twice; the ways take
turns run by run. Records wall time and the CPU seconds of Chromium. The
page without charts reads nothing: its first load is Streamlit's own.

    .venv/bin/python bench/dashboard_floor.py [--repeat 3]

Writes bench/results/dashboard_floor.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import servers
from bench.dashboard_browser import CHROMIUM_ARGS, chromium_cpu_s
from bench.dashboard_render import fill_store
from bench.machine import write_result

APP = Path(__file__).resolve().parent / "dashboard_floor_app.py"
CAPTION = "() => document.body.textContent.includes('24 hours at the automatic step')"
DRAWN = {
    "none": CAPTION,
    "plotly": "() => [...document.querySelectorAll('.js-plotly-plot .annotation-text')].length >= 5"
    f" && ({CAPTION})()",
    "vega": "() => document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length >= 5"
    f" && ({CAPTION})()",
}


def time_page(charts: str, control_url: str, workdir: Path) -> dict[str, Any]:
    """One run: a fresh server and Chromium, the page opened, then reloaded twice."""
    from playwright.sync_api import sync_playwright

    process, url = servers.serve(
        lambda port: (
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless=true"]
            + [
                "--browser.gatherUsageStats=false",
                "--server.fileWatcherType=none",
                "--global.developmentMode=false",
            ]
            + ["--server.address=127.0.0.1", f"--server.port={port}"]
        ),
        ready_path="/_stcore/health",
        log_path=workdir / "floor.log",
        env={"ROLLGUARD_FLOOR_CHARTS": charts, "ROLLGUARD_CONTROL_DATABASE_URL": control_url},
        timeout_s=90,
        cwd=APP.parent.parent,
    )
    try:
        loads = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            for number in range(3):
                cpu = chromium_cpu_s()
                started = time.perf_counter()
                if number == 0:
                    page.goto(url)
                else:
                    page.reload()
                page.wait_for_function(DRAWN[charts], polling=50, timeout=300_000)
                loads.append((round(time.perf_counter() - started, 3), round(chromium_cpu_s() - cpu, 2)))
            browser.close()
    finally:
        process.stop()
    return {
        "first_s": loads[0][0],
        "first_cpu_s": loads[0][1],
        "reload_s": [wall for wall, _cpu in loads[1:]],
        "reload_cpu_s": [cpu for _wall, cpu in loads[1:]],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {charts: [] for charts in DRAWN}
    with tempfile.TemporaryDirectory(prefix="rollguard-floor-") as tmp:
        workdir = Path(tmp)
        control_url = f"sqlite:///{workdir / 'control.db'}"
        fill_store(control_url, hours=24, end=datetime.now(UTC))
        for number in range(args.repeat):
            for charts in DRAWN:
                run = time_page(charts, control_url, workdir)
                runs[charts].append(run)
                print(f"{charts:6} run {number + 1}: {run}", flush=True)
    figures = {
        charts: {
            "first_s": spread([r["first_s"] for r in found]),
            "reload_s": spread([s for r in found for s in r["reload_s"]]),
            "first_cpu_s": spread([r["first_cpu_s"] for r in found]),
            "reload_cpu_s": spread([s for r in found for s in r["reload_cpu_s"]]),
            "runs": found,
        }
        for charts, found in runs.items()
    }
    path = write_result(
        "dashboard_floor", figures, command="python bench/dashboard_floor.py " + " ".join(sys.argv[1:])
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

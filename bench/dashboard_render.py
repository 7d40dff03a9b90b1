"""How long the dashboard's flag page takes to render with 24 hours of 5-second metrics.

Fills a fresh controller store with 24 h of scrapes every 5 s (the metric
contract's counters, histogram and gauges for one function and both cohorts)
and a verdict per guardrail per 5 s, through the store's public write API, as
the embedded scraper and the controller loop write them. Starts a real flag
service, then renders the flag page in Streamlit's AppTest over "1 hour" and
"24 hours" (automatic step and the full 5 s resolution): cold, with every data
cache emptied, and as an auto-refresh, which reads again only what may have
changed; then in Chromium served by `rollguard dashboard` (the 24-hour page
opened cold on a fresh server until the charts are drawn, then its own
auto-refresh, then a reload; `dashboard_browser.py` says how each is timed and
what else it records). Also times the parts
of a 24-hour render outside Streamlit.

`--baseline-tree PATH` also times the browser page served from another
checkout (with its own `make install`), interleaved with this one run by run
(A, B, A, B, ...) against the same store and flag service: a comparison on a
shared machine whose load changes from minute to minute.

    .venv/bin/python bench/dashboard_render.py [--hours 24] [--repeat 3] [--baseline-tree ../main] [--result NAME]

Writes bench/results/dashboard_render.json (`--result NAME` to name it otherwise).
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

from bench import dashboard_browser, servers
from bench.machine import write_result
from control.store import ControlStore, Sample, VerdictRecord
from flags.client import FlagsClient, Guardrail
from rollguard import Child

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
    if len(charts) != 2:
        raise SystemExit(
            f"expected the metrics figure and the verdict timeline, got {len(charts)} charts: "
            f"{[str(w.value) for w in at.warning]}"  # type: ignore[attr-defined]
        )
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
    charts.metric_figure(
        [
            charts.Row(panel.title, {name: lines[(panel.title, name)] for name, _m, _p in panel.lines})
            for panel in PANELS
        ],
        start=start,
        end=end,
        step_s=step_s,
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


def browser_figures(
    trees: dict[str, Path], *, repeat: int, flags_url: str, token: str, control_url: str, workdir: Path
) -> dict[str, Any]:
    """Each tree's flag page in Chromium `repeat` times, the trees interleaved; every run and a summary."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for number in range(repeat):
        for name, tree in trees.items():
            measured = dashboard_browser.time_page(
                tree, flags_url=flags_url, token=token, control_url=control_url, workdir=workdir, key=KEY
            )
            measured["load_average_1m"] = round(os.getloadavg()[0], 2)
            runs[name].append(measured)
            print(
                f"in Chromium, {name} run {number + 1}: first {measured['first']['wall_s']:.2f}s, "
                f"refresh {measured['refresh']['charts_changed_ms']} ms, "
                f"reload {measured['reload']['wall_s']:.2f}s (load {measured['load_average_1m']})",
                flush=True,
            )
    return {name: {"summary": summarize(found), "runs": found} for name, found in runs.items()}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Min, median and max of every figure of the first loads, the auto-refreshes and the reloads."""
    summary: dict[str, Any] = {}
    for load in ("first", "refresh", "reload"):
        for figure in runs[0][load]:
            found = [run[load][figure] for run in runs if run[load][figure] is not None]
            if found:
                summary[f"{load}.{figure}"] = {
                    "min": min(found),
                    "median": statistics.median(found),
                    "max": max(found),
                }
    loads = [run["load_average_1m"] for run in runs]
    summary["load_average_1m"] = {"min": min(loads), "max": max(loads)}
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-tree", type=Path, help="another checkout to time in Chromium too")
    parser.add_argument("--result", default="dashboard_render", help="name of the bench/results/<name>.json")
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
            trees = {"this tree": REPO}
            if args.baseline_tree:
                trees["baseline"] = args.baseline_tree.resolve()
            figures["browser"] = browser_figures(
                trees,
                repeat=args.repeat,
                flags_url=url,
                token=token,
                control_url=control_url,
                workdir=workdir,
            )
            figures["breakdown_24h_auto_s"] = breakdown(control_url, hours=args.hours)
            print(f"where 24 hours / auto goes: {figures['breakdown_24h_auto_s']}", flush=True)
        finally:
            process.stop()
    path = write_result(
        args.result, figures, command="python bench/dashboard_render.py " + " ".join(sys.argv[1:])
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

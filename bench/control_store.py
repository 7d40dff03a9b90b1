"""The embedded store under load: scrape inserts, window queries and chart series at hours of samples.

Fills a fresh SQLite store with `--hours` of portal-like scrapes every 5 s
(two cohorts: counters, a 15-bucket latency histogram, gauges, and 30 other
series), then times what the controller and the dashboard ask of it: one
guardrail window per check, and chart series over 1 h and 6 h. Writes
bench/results/control_store.json.

    .venv/bin/python bench/control_store.py [--hours 6]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import write_result  # noqa: E402
from control.embedded import EmbeddedSource  # noqa: E402
from control.store import ControlStore, Sample  # noqa: E402

FN = "get_all_exam_attempts"
BUCKETS = [
    "0.005",
    "0.01",
    "0.025",
    "0.05",
    "0.075",
    "0.1",
    "0.25",
    "0.5",
    "0.75",
    "1.0",
    "2.5",
    "5.0",
    "7.5",
    "10.0",
    "+Inf",
]


def scrape(t: datetime, i: int) -> list[Sample]:
    """One scrape of a portal with 9 optimized and 80 direct calls per second."""
    batch = []
    for path, per_s in (("optimized", 9), ("direct", 80)):
        calls = per_s * 5 * i
        labels = {"fn": FN, "path": path}
        batch += [
            Sample(t, "portal", "optimizer_requests_total", labels, calls),
            Sample(t, "portal", "optimizer_backend_calls_total", labels, calls * 0.2),
            Sample(t, "portal", "optimizer_errors_total", labels, calls * 0.001),
            Sample(t, "portal", "optimizer_call_seconds_count", labels, calls),
        ]
        for j, le in enumerate(BUCKETS):
            batch.append(
                Sample(
                    t,
                    "portal",
                    "optimizer_call_seconds_bucket",
                    {**labels, "le": le},
                    calls * min(1, (j + 1) / 10),
                )
            )
    batch += [
        Sample(t, "portal", "optimizer_cache_bytes", {"fn": FN}, 1e6),
        Sample(t, "portal", "process_resident_memory_bytes", {}, 8e7),
    ]
    batch += [Sample(t, "portal", "portal_page_loads_total", {"page": f"p{k}"}, i) for k in range(30)]
    return batch


def timed(call):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=6.0)
    args = parser.parse_args()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    scrapes = int(args.hours * 3600 / 5)
    end = t0 + timedelta(seconds=5 * (scrapes - 1))
    with tempfile.TemporaryDirectory(prefix="rollguard-store-") as tmp:
        store = ControlStore(f"sqlite:///{Path(tmp) / 'control.db'}")
        rows = 0
        started = time.perf_counter()
        for i in range(scrapes):
            rows += store.add_samples(scrape(t0 + timedelta(seconds=5 * i), i))
        insert_s = time.perf_counter() - started
        source = EmbeddedSource(store)
        figures: dict[str, object] = {
            "hours": args.hours,
            "scrapes": scrapes,
            "rows": rows,
            "insert_ms_per_scrape": round(insert_s / scrapes * 1000, 2),
        }
        for metric, path in (
            ("error_rate", "optimized"),
            ("p95_latency_s", "optimized"),
            ("cache_bytes", None),
        ):
            runs = [
                timed(lambda m=metric, p=path: source.window(m, fn=FN, path=p, end=end))[1] for _ in range(20)
            ]
            figures[f"window_ms_{metric}"] = round(sorted(runs)[len(runs) // 2] * 1000, 2)
        for span_h, step in ((1, 5), (1, 30), (args.hours, 60), (args.hours, 300)):
            for metric in ("request_rate", "p95_latency_s"):
                points, seconds = timed(
                    lambda m=metric, h=span_h, s=step: source.series(
                        m, fn=FN, path="optimized", start=end - timedelta(hours=h), end=end, step_s=s
                    )
                )
                figures[f"series_s_{metric}_{span_h:g}h_step{step}"] = {
                    "points": len(points),
                    "seconds": round(seconds, 3),
                }
        store.close()
    command = "python bench/control_store.py " + " ".join(sys.argv[1:])
    path = write_result("control_store", figures, command=command.strip())
    for name, value in figures.items():
        print(f"{name:<45} {value}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

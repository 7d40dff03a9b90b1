"""How fast the local circuit breaker trips on a fault, and how often it trips with no fault at all.

In process, with the breaker's default thresholds. The portal's two pages are
replayed by simulated students against an `Optimizer` whose backend stands in
for the database: every query holds one of `--pool` connections for
`--query-ms` (so a queue forms under load, on both paths alike). Students with
an even id are in the optimized cohort, odd ones direct (a 50% rollout); a
MyTestSeries page is one `get_many` of 12 keys, an ExamHome step 2-3 calls.

- fault to trip: steady traffic (`--steady-users` students, think 0.3-2 s, as
  the demo's steady scenario), then the demo's fault (30% errors, +300 ms on the
  optimized path) or a total one (100% errors); the time from setting the fault
  to the breaker opening. `--runs` runs each, interleaved; after each trip the
  fault is cleared and the time until the breaker closed again is recorded too.
- false trips: a mass submission of `--mass-users` students on `--threads`
  portal threads (each student submits once, invalidating its keys, then
  reloads pages with 0-50 ms think; each page also spends `--render-ms` of CPU
  holding the GIL, and queries take `--mass-query-ms`): the process saturated,
  both paths slow;
  `--mass-runs` runs of `--mass-seconds`, counting trips; plus optionally a
  `--healthy-minutes` steady run.

Prints a summary and writes bench/results/optimizer_breaker.json.

    .venv/bin/python bench/optimizer_breaker.py [--runs 5] [--mass-runs 10] [--healthy-minutes 0]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from prometheus_client import CollectorRegistry  # noqa: E402

from bench.machine import write_result  # noqa: E402
from optimizer import Decision, Fault, Optimizer, OptimizerConfig, OptimizerError  # noqa: E402
from optimizer.metrics import LATENCY_BUCKETS  # noqa: E402

SERIES = 12
EXAM_HOME_WIDGETS = (3, 3, 2, 3, 3)
DEMO_FAULT = Fault(error_rate=0.3, latency_s=0.3)
TOTAL_FAULT = Fault(error_rate=1.0)


class HalfRollout:
    """Even student ids optimized, odd ones direct."""

    def decide(self, user_id: str | None) -> Decision:
        return Decision(int(user_id or 0) % 2 == 0)


class Database:
    """A backend with a bounded connection pool: each query holds a connection for `query_s`."""

    def __init__(self, *, pool: int, query_s: float) -> None:
        self._pool = threading.BoundedSemaphore(pool)
        self._query_s = query_s

    def query(self, key: str) -> tuple[str, ...]:
        with self._pool:
            time.sleep(self._query_s)
        return (key,)

    def query_many(self, keys: list[str]) -> dict[str, tuple[str, ...]]:
        with self._pool:
            time.sleep(self._query_s)
        return {key: (key,) for key in keys}


def _key(student: int, series: int) -> str:
    return f"{student}/{series}"


def _my_test_series(opt: Optimizer, student: int) -> None:
    opt.get_many([_key(student, s) for s in range(SERIES)], user_id=str(student))


def _exam_home(opt: Optimizer, student: int, rng: random.Random) -> None:
    key = _key(student, rng.randrange(SERIES))
    for _ in range(rng.choice(EXAM_HOME_WIDGETS)):
        opt(key, user_id=str(student))


def _page(opt: Optimizer, student: int, rng: random.Random, render_s: float) -> None:
    try:
        if rng.random() < 0.3:
            _my_test_series(opt, student)
        else:
            _exam_home(opt, student, rng)
    except OptimizerError:
        pass  # the injected fault and the cap's refusals: the page fails, the student goes on
    _render(render_s)


def _render(seconds: float) -> None:
    """Hold the GIL for `seconds` of pure Python, as rendering and encoding a page does."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _students(
    opt: Optimizer,
    *,
    count: int,
    think: tuple[float, float],
    stop: threading.Event,
    threads: int | None = None,
    render_s: float = 0.0,
) -> list[threading.Thread]:
    """Start `threads` threads (one per student by default) replaying pages until `stop` is set."""
    threads = threads or count

    def run(index: int) -> None:
        rng = random.Random(index)
        mine = list(range(index, count, threads))
        submitted: set[int] = set()
        while not stop.is_set():
            student = rng.choice(mine)
            if student not in submitted:  # the mass submission: each student's first action is a write
                submitted.add(student)
                opt.invalidate_tag(f"student:{student}")
            _page(opt, student, rng, render_s)
            stop.wait(rng.uniform(*think))

    started = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for thread in started:
        thread.start()
    return started


def _build(database: Database) -> Optimizer:
    return Optimizer(
        database.query,
        batch_fn=database.query_many,
        name="bench_breaker",
        config=OptimizerConfig(ttl_s=30, stale_s=5, batch_window_ms=5, max_batch=64),
        gate=HalfRollout(),
        tags=lambda key: [f"student:{key.split('/')[0]}"],
        registry=CollectorRegistry(),
    )


def _wait(condition: Callable[[], bool], timeout: float) -> float | None:
    """Poll every millisecond; return the seconds it took, None on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.001)
    return None


def trip_times(args: argparse.Namespace) -> dict[str, Any]:
    """Interleave the two faults on steady traffic; time each trip and each recovery."""
    database = Database(pool=args.pool, query_s=args.query_ms / 1000)
    opt = _build(database)
    stop = threading.Event()
    threads = _students(opt, count=args.steady_users, think=(0.3, 2.0), stop=stop)
    out: dict[str, Any] = {"demo": [], "total": [], "recovery_s": [], "load_average_1m": []}
    try:
        time.sleep(args.warmup_s)  # warm the cache: a bench, not a test
        for _ in range(args.runs):
            for name, fault in (("demo", DEMO_FAULT), ("total", TOTAL_FAULT)):
                trips = opt.stats()["breaker_trips"]
                opt.fault = fault
                tripped = _wait(lambda before=trips: opt.stats()["breaker_trips"] > before, timeout=30)
                opt.fault = None
                out[name].append(None if tripped is None else round(tripped, 3))
                closed = _wait(lambda: opt.stats()["breaker"] == "closed", timeout=60)
                out["recovery_s"].append(None if closed is None else round(closed, 3))
                out["load_average_1m"].append(round(os.getloadavg()[0], 2))
                time.sleep(args.healthy_gap_s)
        out["requests"] = _rates(opt)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        opt.close()
    return out


def _rates(opt: Optimizer) -> dict[str, int]:
    stats = opt.stats()
    return {"requests": stats["requests"], "backend_calls": stats["backend_calls"]}


def false_trips(args: argparse.Namespace, *, seconds: float, mass: bool) -> dict[str, Any]:
    """One healthy run: count the breaker's trips and the latency of each path."""
    query_ms = args.mass_query_ms if mass else args.query_ms
    database = Database(pool=args.pool, query_s=query_ms / 1000)
    opt = _build(database)
    stop = threading.Event()
    if mass:
        threads = _students(
            opt,
            count=args.mass_users,
            think=(0.0, 0.05),
            stop=stop,
            threads=args.threads,
            render_s=args.render_ms / 1000,
        )
    else:
        threads = _students(opt, count=args.steady_users, think=(0.3, 2.0), stop=stop)
    load = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            load.append(os.getloadavg()[0])
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    stats = opt.stats()
    latency = _latency_ms(opt)
    opt.close()
    return {
        "trips": stats["breaker_trips"],
        "requests": stats["requests"],
        "errors": stats["errors"],
        "call_ms": latency,
        "load_average_1m": round(max(load), 2) if load else None,
    }


def _latency_ms(opt: Optimizer) -> dict[str, dict[str, float] | None]:
    """Each path's p50 and p95 call latency, read off the histogram the breaker judges (25% buckets)."""
    outcomes = opt._metrics.outcomes()  # the bench reads the breaker's own inputs
    out: dict[str, dict[str, float] | None] = {}
    for index, path in enumerate(("optimized", "direct")):
        buckets = outcomes.buckets[index]
        total = sum(buckets)
        out[path] = (
            {f"p{round(q * 100)}": round(_bound_at(buckets, q * total) * 1000, 2) for q in (0.5, 0.95)}
            if total
            else None
        )
    return out


def _bound_at(buckets: tuple[int, ...], rank: float) -> float:
    running = 0
    for i, count in enumerate(buckets):
        running += count
        if running >= rank:
            return LATENCY_BUCKETS[min(i, len(LATENCY_BUCKETS) - 1)]
    return LATENCY_BUCKETS[-1]


def _spread(values: list[float | None]) -> dict[str, float | None]:
    seen = [v for v in values if v is not None]
    if not seen:
        return {"min": None, "median": None, "max": None, "missed": len(values)}
    return {
        "min": min(seen),
        "median": round(statistics.median(seen), 3),
        "max": max(seen),
        "missed": len(values) - len(seen),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steady-users", type=int, default=40)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--healthy-gap-s", type=float, default=3.0)
    parser.add_argument("--mass-runs", type=int, default=10)
    parser.add_argument("--mass-users", type=int, default=2000)
    parser.add_argument("--mass-seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=64, help="Portal threads serving the mass submission.")
    parser.add_argument("--healthy-minutes", type=float, default=0.0)
    parser.add_argument("--pool", type=int, default=20, help="Database connections.")
    parser.add_argument("--query-ms", type=float, default=3.0)
    parser.add_argument(
        "--render-ms", type=float, default=2.0, help="CPU per page of the mass submission (holds the GIL)."
    )
    parser.add_argument(
        "--mass-query-ms", type=float, default=20.0, help="Query time under the mass submission's load."
    )
    args = parser.parse_args()

    trips = trip_times(args)
    mass = [false_trips(args, seconds=args.mass_seconds, mass=True) for _ in range(args.mass_runs)]
    healthy = (
        false_trips(args, seconds=args.healthy_minutes * 60, mass=False) if args.healthy_minutes > 0 else None
    )
    figures = {
        "fault_to_trip_s": {
            "demo_fault_30pct_errors_300ms": {"runs": trips["demo"], **_spread(trips["demo"])},
            "total_fault_100pct_errors": {"runs": trips["total"], **_spread(trips["total"])},
        },
        "fault_cleared_to_closed_s": _spread(trips["recovery_s"]),
        "steady_run_counts": trips["requests"],
        "load_average_1m_during_trips": trips["load_average_1m"],
        "mass_submission": {
            "runs": len(mass),
            "runs_with_a_trip": sum(1 for run in mass if run["trips"]),
            "trips": sum(run["trips"] for run in mass),
            "seconds_each": args.mass_seconds,
            "per_run": mass,
        },
        "healthy_steady": healthy,
        "parameters": {
            key: getattr(args, key)
            for key in (
                "steady_users",
                "mass_users",
                "threads",
                "pool",
                "query_ms",
                "mass_query_ms",
                "render_ms",
                "healthy_minutes",
            )
        },
    }
    demo, total = figures["fault_to_trip_s"].values()
    print(f"demo fault  -> trip: median {demo['median']} s, max {demo['max']} s  {demo['runs']}")
    print(f"total fault -> trip: median {total['median']} s, max {total['max']} s  {total['runs']}")
    print(f"fault cleared -> closed: {figures['fault_cleared_to_closed_s']}")
    runs = figures["mass_submission"]
    print(f"mass submission: {runs['trips']} trips in {runs['runs']} runs of {args.mass_seconds} s")
    for run in mass:
        print(f"  {run}")
    if healthy is not None:
        print(f"healthy steady {args.healthy_minutes} min: {healthy}")
    path = write_result(
        "optimizer_breaker", figures, command="python bench/optimizer_breaker.py " + " ".join(sys.argv[1:])
    )
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

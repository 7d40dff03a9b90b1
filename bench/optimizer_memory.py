"""Memory of the optimizer's in-process cache holding N students' working set, by three measures.

The working set is every key of the students' MyTestSeries pages (12 series
each, keys `"<student>:<series>"` tagged `student:<id>`), loaded page by page
through `Optimizer.get_many` with a batch backend, the values shaped as the
portal caches them (`portal.fragments`, 2 attempts per series as `rollguard
portal seed` makes them). For each student count and budget it reports entries,
evictions, the bytes the optimizer reports (`optimizer_cache_bytes`), the live
bytes tracemalloc attributes to the load (real allocations), their ratio, and
the RSS growth of a separate run without tracemalloc.

Budgets: `default` is the portal's configuration (OptimizerConfig's byte budget,
the portal's entry bound); `unbounded` lifts both so the whole set is held.
Writes bench/results/optimizer_memory.json.

    .venv/bin/python bench/optimizer_memory.py [--students 2000,10000]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from bench.machine import write_result  # noqa: E402
from optimizer import InProcessCache, Optimizer, OptimizerConfig, StaticGate  # noqa: E402
from portal import fragments  # noqa: E402
from portal.data import attempts_key, parse_key, student_tag  # noqa: E402
from portal.runtime import PORTAL_MAX_ENTRIES  # noqa: E402

SERIES = 12
EXAMS_PER_SERIES = 5
ATTEMPTS_PER_SERIES = 2
START_MS = 1_767_225_600_000


def rows(student: int, series: int) -> tuple[tuple[int, int, int, int], ...]:
    """Attempts as `rollguard portal seed` makes them: ids in seeding order, exams of the series."""
    first_id = ((student - 1) * SERIES + (series - 1)) * ATTEMPTS_PER_SERIES + 1
    return tuple(
        (
            first_id + n,
            (series - 1) * EXAMS_PER_SERIES + (student + n) % EXAMS_PER_SERIES + 1,
            20 + (student * 7 + series * 3 + n) % 81,
            START_MS + ((student * 131 + series * 17 + n) % 432_000) * 60_000,
        )
        for n in range(ATTEMPTS_PER_SERIES)
    )


def fetch_many(keys: Sequence[str]) -> dict[str, bytes]:
    return {key: fragments.encode(rows(*parse_key(key))) for key in keys}


def build(config: OptimizerConfig) -> Optimizer:
    return Optimizer(
        lambda key: fetch_many([key])[key],
        name="get_all_exam_attempts",
        batch_fn=fetch_many,
        config=config,
        cache=InProcessCache(config),
        gate=StaticGate(True),
        tags=lambda key: [student_tag(parse_key(key)[0])],
        registry=CollectorRegistry(),
    )


def load(opt: Optimizer, students: int) -> None:
    for student in range(1, students + 1):
        opt.get_many([attempts_key(student, s) for s in range(1, SERIES + 1)], user_id=f"s{student}")


def measure(config: OptimizerConfig, students: int) -> dict[str, Any]:
    """Load the working set twice: once for RSS, once under tracemalloc."""
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    opt = build(config)
    load(opt, students)
    gc.collect()
    rss_growth = process.memory_info().rss - rss_before
    opt.close()
    del opt
    gc.collect()

    opt = build(config)
    gc.collect()
    tracemalloc.start()
    load(opt, students)
    gc.collect()
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stats = opt.stats()
    reported = opt.cache_bytes
    opt.close()
    entries = stats["cache_entries"]
    return {
        "students": students,
        "keys": students * SERIES,
        "entries": entries,
        "evictions": stats["evictions"],
        "max_bytes": config.max_bytes,
        "max_entries": config.max_entries,
        "reported_bytes": reported,
        "tracemalloc_bytes": traced,
        "reported_over_tracemalloc": round(reported / traced, 3) if traced else None,
        "rss_growth_bytes": rss_growth,
        "tracemalloc_bytes_per_entry": round(traced / entries, 1) if entries else None,
        "reported_bytes_per_entry": round(reported / entries, 1) if entries else None,
    }


BUDGETS: dict[str, Callable[[OptimizerConfig], OptimizerConfig]] = {
    "default": lambda c: c,
    "unbounded": lambda c: dataclasses.replace(c, max_bytes=2**40, max_entries=10**9),
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--students", default="2000,10000", help="comma-separated student counts")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    portal_config = OptimizerConfig(max_entries=PORTAL_MAX_ENTRIES)
    results = []
    for students in (int(s) for s in args.students.split(",")):
        for budget, shape in BUDGETS.items():
            row = {"budget": budget} | measure(shape(portal_config), students)
            results.append(row)
            print(
                f"{budget:9} {students:>6} students: {row['entries']:>7} entries, {row['evictions']:>6} evictions, "
                f"reported {row['reported_bytes'] / 1e6:6.1f} MB, tracemalloc {row['tracemalloc_bytes'] / 1e6:6.1f} MB "
                f"(ratio {row['reported_over_tracemalloc']}), RSS +{row['rss_growth_bytes'] / 1e6:6.1f} MB, "
                f"{row['tracemalloc_bytes_per_entry']} B/entry"
            )
    figures = {
        "value_shape": "portal.fragments of 2 attempts per series, 12 series per student",
        "load_average_1m": round(load_before, 2),
        "runs": results,
    }
    path = write_result(
        "optimizer_memory", figures, command=f"python bench/optimizer_memory.py --students {args.students}"
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

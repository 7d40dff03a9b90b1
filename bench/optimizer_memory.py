"""Memory of the optimizer's in-process cache holding N students' working set, by three measures.

The working set is every key of the students' MyTestSeries pages (12 series
each, keys `"<student>:<series>"` without tags, as the portal's), loaded page by page
through `Optimizer.get_many` with a batch backend, the values shaped as the
portal caches them (`portal.fragments`, 2 attempts per series as `rollguard
portal seed` makes them). For each student count and budget it reports entries,
evictions, the bytes the optimizer reports (`optimizer_cache_bytes`), the live
bytes tracemalloc attributes to the load (real allocations), their ratio, and
the RSS growth of the same load in a fresh process without tracemalloc.

Budgets: `default` is the portal's configuration (OptimizerConfig's byte budget,
the portal's entry bound); `unbounded` lifts both so the whole set is held.
Layouts, measured one after the other for each student count and budget:
`objects` (`InProcessCache()`, entries as Python objects, the fastest hit),
`packed` (`InProcessCache(packing=...)` with the portal's preset dictionary,
values compressed in arenas) and `tiered` (`InProcessCache(packing=...,
hot_share=..., pack_above=...)` at the portal's defaults: the values stored
lately as objects, up to that share of the budget less what is packed, the
older ones packed; the portal's default). For the
unbounded runs it also lists where the traced bytes were allocated (file:line,
bytes an entry), which says what each byte is. The clock stands still during the
load and then moves past the freshness window: `tracemalloc_bytes` is what is
held once the live eta's windows (`optimizer/ideal.py`, one per key called in
the last ttl + stale seconds) closed, `..._with_ideal_windows_open` before. Writes
bench/results/optimizer_memory.json.

    .venv/bin/python bench/optimizer_memory.py [--students 2000,10000] [--layouts objects,packed,tiered]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import multiprocessing
import os
import sys
import tracemalloc
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from bench.machine import write_result  # noqa: E402
from optimizer import Optimizer, OptimizerConfig, StaticGate  # noqa: E402
from portal import fragments  # noqa: E402
from portal.data import attempts_key, parse_key  # noqa: E402
from portal.runtime import PORTAL_MAX_ENTRIES, in_process_cache  # noqa: E402
from portal.settings import PortalSettings  # noqa: E402

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


LAYOUTS = ("objects", "packed", "tiered")


class Clock:
    """A clock that stands still while the working set loads: every window of the ideal stays open."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def build(config: OptimizerConfig, layout: str, clock: Clock) -> Optimizer:
    return Optimizer(
        lambda key: fetch_many([key])[key],
        name="get_all_exam_attempts",
        batch_fn=fetch_many,
        config=config,
        cache=in_process_cache(config, PortalSettings(cache_layout=layout)),
        gate=StaticGate(True),
        registry=CollectorRegistry(),
        clock=clock,
    )


def load(opt: Optimizer, students: int) -> None:
    for student in range(1, students + 1):
        opt.get_many([attempts_key(student, s) for s in range(1, SERIES + 1)], user_id=f"s{student}")


def close_windows(opt: Optimizer, clock: Clock) -> None:
    """Move past the ideal's windows (tau = ttl + stale) and make one call, which prunes them."""
    clock.now += opt.config.ttl_s + opt.config.stale_s + 1
    opt.get_many([attempts_key(1, 1)], user_id="s1")
    gc.collect()


def rss_growth(config: OptimizerConfig, students: int, layout: str) -> tuple[int, int]:
    """RSS growth of a fresh interpreter loading the working set: windows of the ideal open, then closed."""
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    clock = Clock()
    opt = build(config, layout, clock)
    load(opt, students)
    gc.collect()
    loaded = process.memory_info().rss - before
    close_windows(opt, clock)
    closed = process.memory_info().rss - before
    opt.close()
    return loaded, closed


def measure(config: OptimizerConfig, students: int, layout: str, *, sites: bool) -> dict[str, Any]:
    """Load the working set in a fresh process for RSS, then here under tracemalloc.

    Traced bytes are read twice: right after the load, with every key's window of the
    ideal (optimizer/ideal.py) still open, and once those windows closed: what the cache holds.
    """
    # A fresh interpreter: here, memory freed by earlier runs would be reused and hide the growth.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        rss_loaded, rss_closed = pool.submit(rss_growth, config, students, layout).result()

    clock = Clock()
    opt = build(config, layout, clock)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot() if sites else None
    load(opt, students)
    gc.collect()
    with_windows, _peak = tracemalloc.get_traced_memory()
    close_windows(opt, clock)
    traced, _peak = tracemalloc.get_traced_memory()
    stats = opt.stats()
    by_site = _sites(before, tracemalloc.take_snapshot(), stats["cache_entries"]) if before else None
    tracemalloc.stop()
    reported = opt.cache_bytes
    opt.close()
    entries = stats["cache_entries"]
    row = {
        "students": students,
        "keys": students * SERIES,
        "entries": entries,
        "evictions": stats["evictions"],
        "max_bytes": config.max_bytes,
        "max_entries": config.max_entries,
        "reported_bytes": reported,
        "tracemalloc_bytes": traced,
        "tracemalloc_bytes_with_ideal_windows_open": with_windows,
        "reported_over_tracemalloc": round(reported / traced, 3) if traced else None,
        "rss_growth_bytes": rss_loaded,
        "rss_growth_bytes_after_ideal_windows_closed": rss_closed,
        "tracemalloc_bytes_per_entry": round(traced / entries, 1) if entries else None,
        "reported_bytes_per_entry": round(reported / entries, 1) if entries else None,
    }
    if by_site is not None:
        row["bytes_per_entry_by_site"] = by_site
    return row


def _sites(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, entries: int) -> dict[str, float]:
    """Bytes an entry by the line that allocated them: the ten largest, then the rest."""
    grown = [stat for stat in after.compare_to(before, "lineno") if stat.size_diff > 0]
    out = {_where(stat.traceback[0]): round(stat.size_diff / entries, 1) for stat in grown[:10]}
    out["rest"] = round(sum(stat.size_diff for stat in grown[10:]) / entries, 1)
    return out


def _where(frame: tracemalloc.Frame) -> str:
    path = Path(frame.filename)
    name = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    return f"{name}:{frame.lineno}"


BUDGETS: dict[str, Callable[[OptimizerConfig], OptimizerConfig]] = {
    "default": lambda c: c,
    "unbounded": lambda c: dataclasses.replace(c, max_bytes=2**40, max_entries=10**9),
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--students", default="2000,10000", help="comma-separated student counts")
    parser.add_argument(
        "--layouts", default="objects,packed,tiered", help=f"comma-separated: {','.join(LAYOUTS)}"
    )
    args = parser.parse_args()
    if unknown := set(args.layouts.split(",")) - set(LAYOUTS):
        parser.error(f"unknown layouts {sorted(unknown)}; known: {', '.join(LAYOUTS)}")
    load_before = os.getloadavg()[0]
    portal_config = OptimizerConfig(max_entries=PORTAL_MAX_ENTRIES)
    results = []
    for students in (int(s) for s in args.students.split(",")):
        for budget, shape in BUDGETS.items():
            for layout in args.layouts.split(","):
                config = shape(portal_config)
                row = {"layout": layout, "budget": budget} | measure(
                    config, students, layout, sites=budget == "unbounded"
                )
                results.append(row)
                _print(row)
    figures = {
        "value_shape": "portal.fragments of 2 attempts per series, 12 series per student",
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "runs": results,
    }
    command = f"python bench/optimizer_memory.py --students {args.students} --layouts {args.layouts}"
    print(f"wrote {write_result('optimizer_memory', figures, command=command)}")
    return 0


def _print(row: dict[str, Any]) -> None:
    print(
        f"{row['layout']:7} {row['budget']:9} {row['students']:>6} students: {row['entries']:>7} entries, "
        f"{row['evictions']:>6} evictions, reported {row['reported_bytes'] / 1e6:6.1f} MB, "
        f"tracemalloc {row['tracemalloc_bytes'] / 1e6:6.1f} MB (ratio {row['reported_over_tracemalloc']}), "
        f"RSS +{row['rss_growth_bytes'] / 1e6:6.1f} MB "
        f"(+{row['rss_growth_bytes_after_ideal_windows_closed'] / 1e6:.1f} MB once closed), "
        f"{row['tracemalloc_bytes_per_entry']} B/entry; "
        f"with the ideal's windows open {row['tracemalloc_bytes_with_ideal_windows_open'] / 1e6:.1f} MB"
    )
    for site, per_entry in row.get("bytes_per_entry_by_site", {}).items():
        print(f"    {per_entry:7.1f} B/entry  {site}")


if __name__ == "__main__":
    sys.exit(main())

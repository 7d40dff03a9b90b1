"""`make bench`: run every benchmark of the project; each writes bench/results/<name>.json.

Each benchmark is a script in bench/ that starts the real components it needs,
measures, prints a table and writes its JSON result with the machine and date.
This runner runs them one after the other (they would disturb each other's
figures if run at once) and prints where the results are.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
BENCHMARKS = [
    "flags_features.py",
    "flags_propagation.py",
    "optimizer_gate.py",
    "optimizer_cache.py",
    "optimizer_memory.py",
    "optimizer_packing.py",
    "portal_mass_submission.py",
    "portal_page_cost.py",
    "portal_capacity.py",
    "portal_burst_budget.py",
    "control_store.py",
    "control_false_alarm.py",
    "control_rollback.py",
    "dashboard_render.py",
    "dashboard_floor.py",
    "faults.py",
]


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        script = BENCH / name
        if not script.exists():
            print(f"== {name}: missing", flush=True)
            failed.append(name)
            continue
        print(f"== {name}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script)], cwd=BENCH.parent)
        print(f"== {name}: exit {code} after {time.monotonic() - started:.0f}s", flush=True)
        if code != 0:
            failed.append(name)
    print(f"results in {BENCH / 'results'}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""How close `rollguard up`'s healthy mass submission comes to a false rollback, this checkout vs another.

The demo holds the flag at 50% through a mass submission the default guardrails
must let through. The comparative p95 guardrail fails a check when the
optimized cohort's calls are significantly slower than the direct cohort's by
more than 100 ms (`control.latency`); two failing checks in a row roll the
healthy flag back. This runs the whole story (`rollguard up --stop-when-done`)
for this checkout and for `--baseline-tree` (another checkout, imported through
PYTHONPATH), interleaved `--runs` times, with `--busy` processes spinning on the
CPU beside it as the other test worker does in CI. For each run it reads the
controller's verdicts during the mass submission (`var/control.db`) and reports
whether the flag was rolled back then, how many checks of the p95 guardrail
failed, and the largest value it measured (seconds of optimized p95 over
direct's). Writes bench/results/demo_guardrail.json.

    .venv/bin/python bench/demo_guardrail.py --baseline-tree ../baseline [--runs 3] [--students 300] [--busy 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import commit_of, write_result  # noqa: E402

START = "mass submission:"
ROLLED_BACK = "rolled the flag back during the healthy mass submission"
OVER = "the mass submission is over"
STORY_TIMEOUT_S = 600


def spin() -> None:
    while True:
        pass


def run_story(tree: Path, students: int, work: Path) -> dict[str, Any]:
    """One whole story in `tree`'s code; the mass submission's verdicts of the p95 guardrail."""
    var_dir = work / "var"
    argv = [sys.executable, "-m", "rollguard", "up", "--no-browser", "--free-ports", "--stop-when-done"]
    argv += ["--var-dir", str(var_dir), "--students", str(students), "--stage-hold", "20"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        argv, cwd=work, env=env, capture_output=True, text=True, timeout=STORY_TIMEOUT_S, check=False
    )
    story = json.loads((var_dir / "story.json").read_text())
    start = next(e for e in story["events"] if e["what"].startswith(START))
    end = next((e for e in story["events"] if OVER in e["what"] or ROLLED_BACK in e["what"]), None)
    if end is None:
        raise RuntimeError(f"the story in {tree} never finished its mass submission:\n{done.stdout[-3000:]}")
    t0 = datetime.fromisoformat(story["started_at"]).timestamp()
    verdicts = _p95_verdicts(var_dir / "control.db", t0 + start["t_s"], t0 + end["t_s"])
    values = [value for _, value in verdicts if value is not None]
    return {
        "false_rollback": ROLLED_BACK in end["what"],
        "checks": len(verdicts),
        "failing_checks": sum(verdict == "fail" for verdict, _ in verdicts),
        "max_p95_over_direct_s": round(max(values), 3) if values else None,
        "story_exit_code": done.returncode,
    }


def _p95_verdicts(database: Path, since: float, until: float) -> list[tuple[str, float | None]]:
    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text(
                    "SELECT verdict, value FROM control_verdicts WHERE metric = 'p95_latency_s'"
                    " AND ts >= :since AND ts <= :until ORDER BY ts"
                ),
                {"since": since, "until": until},
            ).all()
    finally:
        engine.dispose()
    return [(str(verdict), value) for verdict, value in rows]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline-tree", type=Path, required=True, help="another checkout to compare with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--students", type=int, default=300, help="as tests/e2e/test_demo_live.py")
    parser.add_argument("--busy", type=int, default=1, help="processes spinning on the CPU beside the story")
    parser.add_argument("--result", default="demo_guardrail")
    args = parser.parse_args()
    trees = {"this": REPO, "baseline": args.baseline_tree.resolve()}
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
    loads: list[float] = []
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy)]
    for spinner in spinners:
        spinner.start()
    try:
        for repetition in range(args.runs):
            for label, tree in trees.items():
                loads.append(os.getloadavg()[0])
                with tempfile.TemporaryDirectory(prefix="rollguard-demo-") as work:
                    figures = run_story(tree, args.students, Path(work))
                print(f"run {repetition + 1} {label:8} {figures}", flush=True)
                runs[label].append(figures)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.join()
    summary = {label: _summary(found) for label, found in runs.items()}
    for label, figures in summary.items():
        print(f"{label:8} {figures}")
    result = {
        "students": args.students,
        "busy_processes": args.busy,
        "load_average_1m": {"min": min(loads), "max": max(loads)},
        "summary": summary,
        "runs": runs,
        "commit": commit_of(REPO),
        "baseline_tree": str(args.baseline_tree),
        "baseline_commit": commit_of(args.baseline_tree),
    }
    command = (
        f"python bench/demo_guardrail.py --baseline-tree {args.baseline_tree} --runs {args.runs}"
        f" --students {args.students} --busy {args.busy} --result {args.result}"
    )
    print(f"wrote {write_result(args.result, result, command=command)}")
    return 0


def _summary(found: list[dict[str, Any]]) -> dict[str, Any]:
    values = [r["max_p95_over_direct_s"] for r in found if r["max_p95_over_direct_s"] is not None]
    return {
        "false_rollbacks": sum(r["false_rollback"] for r in found),
        "runs": len(found),
        "failing_checks": sum(r["failing_checks"] for r in found),
        "max_p95_over_direct_s": (
            {"min": min(values), "median": statistics.median(values), "max": max(values)} if values else None
        ),
    }


if __name__ == "__main__":
    sys.exit(main())

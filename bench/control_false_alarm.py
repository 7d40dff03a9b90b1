"""False alarms of the comparative guardrail, simulated: per check and per hour at the default interval.

Simulates the calls of the two cohorts in 5 s slots (Poisson arrivals, each
call failing with its cohort's error probability), judges the comparative
error-rate guardrail every 5 s over the last 60 s exactly as the controller
does (`control.decisions.evaluate_comparative`, alpha 0.001, margin 0.01) and
counts rollbacks under the default policy (2 consecutive failing checks).
Two cases: equal error rates (a healthy rollout) and the worst case the test
allows, optimized worse by exactly the margin. Pure computation, no servers.
Writes bench/results/control_false_alarm.json.

    .venv/bin/python bench/control_false_alarm.py [--hours 1000] [--calls-per-s 86] [--rollouts 10,50]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import write_result  # noqa: E402
from control.decisions import DEFAULT_ALPHA, Outcome, evaluate_comparative  # noqa: E402
from control.metrics import WindowValue  # noqa: E402
from flags.client import Guardrail  # noqa: E402

INTERVAL_S, WINDOW_S, CONSECUTIVE = 5, 60, 2


def simulate(
    *,
    hours: float,
    calls_per_s: float,
    rollout: int,
    p_direct: float,
    p_optimized: float,
    margin: float,
    seed: int,
) -> dict[str, Any]:
    """Return checks, failing checks, rollbacks and their rates for one case."""
    guardrail = Guardrail("error_rate", "<=", margin, window_s=WINDOW_S, min_samples=50, kind="comparative")
    rng = np.random.default_rng(seed)
    slots = int(hours * 3600 / INTERVAL_S)
    per_window = WINDOW_S // INTERVAL_S
    lam_o = calls_per_s * rollout / 100 * INTERVAL_S
    lam_d = calls_per_s * (100 - rollout) / 100 * INTERVAL_S
    n_o, n_d = rng.poisson(lam_o, slots), rng.poisson(lam_d, slots)
    e_o, e_d = rng.binomial(n_o, p_optimized), rng.binomial(n_d, p_direct)
    kernel = np.ones(per_window, dtype=np.int64)
    sums = [np.convolve(a, kernel, mode="valid") for a in (n_o, e_o, n_d, e_d)]
    checks = fails = rollbacks = streak = 0
    for no, eo, nd, ed in zip(*sums, strict=True):
        if no == 0 or nd == 0:
            streak = 0
            continue
        checks += 1
        verdict = evaluate_comparative(
            guardrail, WindowValue(eo / no, int(no)), WindowValue(ed / nd, int(nd))
        )
        if verdict.outcome is Outcome.FAIL:
            fails += 1
            streak += 1
            if streak == CONSECUTIVE:
                rollbacks += 1
        else:
            streak = 0
    simulated_h = checks * INTERVAL_S / 3600
    return {
        "p_direct": p_direct,
        "p_optimized": p_optimized,
        "checks": checks,
        "failing_checks": fails,
        "false_alarm_per_check": fails / checks if checks else None,
        "rollbacks": rollbacks,
        "rollbacks_per_hour": rollbacks / simulated_h if simulated_h else None,
        "mean_calls_per_window": {"optimized": lam_o * per_window, "direct": lam_d * per_window},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1000.0, help="simulated hours per case")
    parser.add_argument("--calls-per-s", type=float, default=86.0, help="logical calls/s, both cohorts")
    parser.add_argument("--rollouts", default="10,50", help="percents of calls on the optimized path")
    parser.add_argument("--p-direct", type=float, default=0.005, help="error probability of direct calls")
    parser.add_argument("--margin", type=float, default=0.01)
    args = parser.parse_args()
    cases = {}
    for rollout in (int(r) for r in args.rollouts.split(",")):
        common = {
            "hours": args.hours,
            "calls_per_s": args.calls_per_s,
            "rollout": rollout,
            "margin": args.margin,
        }
        cases[f"rollout {rollout}%, equal error rates"] = simulate(
            **common, p_direct=args.p_direct, p_optimized=args.p_direct, seed=rollout
        )
        cases[f"rollout {rollout}%, optimized worse by the margin"] = simulate(
            **common, p_direct=args.p_direct, p_optimized=args.p_direct + args.margin, seed=rollout + 1
        )
    figures = {
        "alpha": DEFAULT_ALPHA,
        "margin": args.margin,
        "interval_s": INTERVAL_S,
        "window_s": WINDOW_S,
        "consecutive_failures": CONSECUTIVE,
        "hours_per_case": args.hours,
        "calls_per_s": args.calls_per_s,
        "p_direct": args.p_direct,
        "cases": cases,
    }
    command = "python bench/control_false_alarm.py " + " ".join(sys.argv[1:])
    path = write_result("control_false_alarm", figures, command=command.strip())
    for name, case in cases.items():
        print(
            f"{name:<44} checks {case['checks']:>7}  failing {case['failing_checks']:>5} "
            f"({case['false_alarm_per_check']:.2e}/check)  rollbacks {case['rollbacks']:>4} "
            f"({case['rollbacks_per_hour']:.4f}/h)"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""False alarms and power of the comparative guardrails, simulated at the controller's default cadence.

False alarms: simulates the calls of the two cohorts in 1 s slots (Poisson
arrivals, each call failing with its cohort's error probability), judges the
comparative error-rate guardrail every second over the last 10 s exactly as
the controller does (`control.decisions.evaluate_comparative`, alpha 0.001,
margin 0.01) and counts rollbacks under the default policy (2 consecutive
failing checks). Two cases: equal error rates (a healthy rollout) and the
worst case the test allows, optimized worse by exactly the margin.

Power: the share of single checks that fail, for a window holding n optimized
calls, of the error test (optimized error rate p against 800 direct calls at
0.5%) and of the latency test (a share s of optimized calls slower than the
limit L, `control.latency`). Pure computation, no servers. Writes
bench/results/control_false_alarm.json.

    .venv/bin/python bench/control_false_alarm.py [--hours 200] [--calls-per-s 86] [--rollouts 10,50]
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
from control.defaults import WINDOW_S, default_rollback  # noqa: E402
from control.latency import TAIL, binomial_upper_tail  # noqa: E402
from control.metrics import WindowValue  # noqa: E402
from flags.client import Guardrail  # noqa: E402

INTERVAL_S, CONSECUTIVE = 1, default_rollback().consecutive_failures
POWER_CALLS = (20, 43, 86, 200, 430)
POWER_CHECKS = 4000


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


def power(seed: int = 14) -> dict[str, dict[str, dict[str, float]]]:
    """Per-check detection rates of both comparative tests by effect size and optimized calls per window."""
    rng = np.random.default_rng(seed)
    guardrail = Guardrail("error_rate", "<=", 0.01, window_s=WINDOW_S, min_samples=20, kind="comparative")
    errors: dict[str, dict[str, float]] = {}
    for p_opt in (0.05, 0.1, 0.3, 0.5):
        row = {}
        for n in POWER_CALLS:
            xo, xd = rng.binomial(n, p_opt, POWER_CHECKS), rng.binomial(800, 0.005, POWER_CHECKS)
            fails = sum(
                evaluate_comparative(guardrail, WindowValue(a / n, n), WindowValue(b / 800, 800)).outcome
                is Outcome.FAIL
                for a, b in zip(xo, xd, strict=True)
            )
            row[str(n)] = round(fails / POWER_CHECKS, 3)
        errors[f"optimized error rate {p_opt}"] = row
    latency: dict[str, dict[str, float]] = {}
    for share in (TAIL, 0.15, 0.3, 0.5, 1.0):
        latency[f"share over L {share:g}"] = {
            str(n): round(
                float(
                    np.mean(
                        [
                            binomial_upper_tail(int(k), n, TAIL) < DEFAULT_ALPHA
                            for k in rng.binomial(n, share, POWER_CHECKS)
                        ]
                    )
                ),
                3,
            )
            for n in POWER_CALLS
        }
    return {"error_rate": errors, "p95_latency_s": latency}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=200.0, help="simulated hours per case")
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
        "power_per_check": power(),
    }
    command = "python bench/control_false_alarm.py " + " ".join(sys.argv[1:])
    path = write_result("control_false_alarm", figures, command=command.strip())
    for name, case in cases.items():
        print(
            f"{name:<44} checks {case['checks']:>7}  failing {case['failing_checks']:>5} "
            f"({case['false_alarm_per_check']:.2e}/check)  rollbacks {case['rollbacks']:>4} "
            f"({case['rollbacks_per_hour']:.4f}/h)"
        )
    for test, table in figures["power_per_check"].items():
        for effect, row in table.items():
            print(f"power {test:<14} {effect:<28} " + "  ".join(f"n={n}: {v:.2f}" for n, v in row.items()))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

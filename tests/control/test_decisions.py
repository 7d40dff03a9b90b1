"""The rollout policy: verdicts of guardrails and the action decided from their history."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from control.decisions import (
    DEFAULT_ALPHA,
    ActionKind,
    Outcome,
    decide,
    evaluate,
    evaluate_comparative,
)
from control.metrics import WindowValue
from flags.client import Flag, Guardrail, RollbackPolicy

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ERRORS = Guardrail("error_rate", "<=", 0.02, window_s=60, min_samples=20, path="optimized")
LATENCY = Guardrail("p95_latency_s", "<=", 0.2, window_s=60, min_samples=20, path="optimized")
COMPARATIVE = Guardrail("error_rate", "<=", 0.01, min_samples=50, kind="comparative")


def make_flag(**changes) -> Flag:
    base = Flag(
        key="exam-attempts-optimization",
        enabled=True,
        rollout=10,
        stages=(10, 50, 100),
        stage_hold_s=60,
        auto_promote=True,
        guardrails=(ERRORS, LATENCY),
        rollback=RollbackPolicy(2, "hold"),
        state="rolling_out",
        payload={"fn": "get_all_exam_attempts"},
        version=3,
    )
    return replace(base, **changes)


@dataclass(frozen=True)
class Past:
    time: datetime
    guardrail: str
    verdict: str
    value: float | None = 0.01
    threshold: float = 0.02
    samples: int = 100


def history(*rounds: str, every_s: float = 5.0, names=(ERRORS.name, LATENCY.name)) -> list[Past]:
    """One round per string of per-guardrail outcomes: p(ass), f(ail), n(o data); the last round is at T0."""
    out = []
    outcome = {"p": "pass", "f": "fail", "n": "no_data"}
    for i, codes in enumerate(rounds):
        time = T0 - timedelta(seconds=every_s * (len(rounds) - 1 - i))
        for name, code in zip(names, codes, strict=True):
            value = 0.05 if code == "f" else 0.01
            out.append(Past(time, name, outcome[code], value=value, samples=0 if code == "n" else 100))
    return out


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        pytest.param(WindowValue(0.01, 100), Outcome.PASS, id="below-threshold-passes"),
        pytest.param(WindowValue(0.02, 100), Outcome.PASS, id="at-threshold-passes-for-le"),
        pytest.param(WindowValue(0.021, 100), Outcome.FAIL, id="above-threshold-fails"),
        pytest.param(WindowValue(0.5, 19), Outcome.NO_DATA, id="too-few-samples-is-no-data"),
        pytest.param(WindowValue(None, 0), Outcome.NO_DATA, id="no-value-is-no-data"),
    ],
)
def test_threshold_verdicts(window, expected):
    verdict = evaluate(ERRORS, window)
    assert verdict.outcome is expected
    assert verdict.threshold == 0.02 and verdict.samples == window.samples


def test_greater_than_guardrail_fails_below_its_floor():
    floor = Guardrail("call_reduction", ">=", 0.5, path="optimized")
    assert evaluate(floor, WindowValue(0.8, 500)).outcome is Outcome.PASS
    assert evaluate(floor, WindowValue(0.3, 500)).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    ("optimized", "direct", "expected"),
    [
        pytest.param(WindowValue(0.20, 400), WindowValue(0.01, 3600), Outcome.FAIL, id="fault-on-optimized"),
        pytest.param(
            WindowValue(0.03, 100), WindowValue(0.01, 900), Outcome.PASS, id="beyond-margin-not-significant"
        ),
        pytest.param(
            WindowValue(0.015, 20000), WindowValue(0.01, 180000), Outcome.PASS, id="significant-within-margin"
        ),
        pytest.param(WindowValue(0.0, 400), WindowValue(0.0, 3600), Outcome.PASS, id="no-errors-anywhere"),
        pytest.param(WindowValue(0.01, 400), WindowValue(0.30, 3600), Outcome.PASS, id="direct-worse"),
        pytest.param(WindowValue(0.5, 30), WindowValue(0.0, 3600), Outcome.NO_DATA, id="too-few-optimized"),
        pytest.param(
            WindowValue(None, 0), WindowValue(0.0, 3600), Outcome.NO_DATA, id="no-optimized-traffic"
        ),
    ],
)
def test_comparative_verdicts(optimized, direct, expected):
    verdict = evaluate_comparative(COMPARATIVE, optimized, direct)
    assert verdict.outcome is expected
    if optimized.value is not None and expected is not Outcome.NO_DATA:
        assert verdict.value == pytest.approx(optimized.value - direct.value)


def test_comparative_false_alarm_rate_per_check_stays_at_alpha_on_the_margin():
    # Worst case for false alarms: optimized really is worse by exactly the margin.
    rng = np.random.default_rng(20260101)
    n_opt, n_dir, p_dir, checks = 500, 4500, 0.01, 20000
    x_opt = rng.binomial(n_opt, p_dir + COMPARATIVE.threshold, checks)
    x_dir = rng.binomial(n_dir, p_dir, checks)
    alarms = sum(
        evaluate_comparative(
            COMPARATIVE, WindowValue(a / n_opt, n_opt), WindowValue(b / n_dir, n_dir)
        ).outcome
        is Outcome.FAIL
        for a, b in zip(x_opt, x_dir, strict=True)
    )
    assert alarms / checks <= 2 * DEFAULT_ALPHA
    # And it still sees a regression of 8 points (7 beyond the margin) in nearly every check.
    x_bad = rng.binomial(n_opt, p_dir + 0.08, 2000)
    detected = sum(
        evaluate_comparative(COMPARATIVE, WindowValue(a / n_opt, n_opt), WindowValue(0.01, n_dir)).outcome
        is Outcome.FAIL
        for a in x_bad
    )
    assert detected / 2000 > 0.95


def test_comparative_refuses_metrics_it_cannot_test():
    reduction = Guardrail("call_reduction", ">=", 0.05, kind="comparative")
    verdict = evaluate_comparative(reduction, WindowValue(0.1, 500), WindowValue(0.0, 500))
    assert verdict.outcome is Outcome.NO_DATA and "support" in verdict.detail


STAGE_START = T0 - timedelta(seconds=120)


@pytest.mark.parametrize(
    ("flag", "rounds", "kind", "rollout"),
    [
        pytest.param(
            make_flag(), ["pp", "pf", "fp"], ActionKind.HOLD, None, id="failures-of-different-guardrails-hold"
        ),
        pytest.param(
            make_flag(),
            ["pp", "fp", "fp"],
            ActionKind.ROLLBACK,
            None,
            id="two-consecutive-failures-roll-back",
        ),
        pytest.param(make_flag(), ["fp", "pp", "fp"], ActionKind.HOLD, None, id="interrupted-failures-hold"),
        pytest.param(
            make_flag(rollback=RollbackPolicy(3, "hold")),
            ["pp", "fp", "fp"],
            ActionKind.HOLD,
            None,
            id="three-needed-two-seen-holds",
        ),
        pytest.param(
            make_flag(rollback=RollbackPolicy(1, "hold")),
            ["pp", "pf"],
            ActionKind.ROLLBACK,
            None,
            id="one-failure-enough-when-policy-says-so",
        ),
        pytest.param(
            make_flag(), ["fp", "np", "fp"], ActionKind.HOLD, None, id="no-data-breaks-the-streak-on-hold"
        ),
        pytest.param(make_flag(), ["nn", "nn", "nn"], ActionKind.HOLD, None, id="no-data-holds-by-default"),
        pytest.param(
            make_flag(rollback=RollbackPolicy(2, "rollback")),
            ["pp", "np", "np"],
            ActionKind.ROLLBACK,
            None,
            id="no-data-rolls-back-when-policy-says-so",
        ),
        pytest.param(
            make_flag(rollback=RollbackPolicy(2, "rollback")),
            ["pp", "fp", "np"],
            ActionKind.ROLLBACK,
            None,
            id="fail-then-no-data-count-together-on-rollback-policy",
        ),
        pytest.param(make_flag(), ["pp"] * 13, ActionKind.PROMOTE, 50, id="healthy-for-the-hold-promotes"),
        pytest.param(make_flag(), ["pp"] * 12, ActionKind.HOLD, None, id="healthy-but-hold-not-over"),
        pytest.param(
            make_flag(), ["fp"] + ["pp"] * 12, ActionKind.HOLD, None, id="hold-restarts-after-a-failure"
        ),
        pytest.param(
            make_flag(auto_promote=False), ["pp"] * 13, ActionKind.HOLD, None, id="no-auto-promote-holds"
        ),
        pytest.param(make_flag(rollout=50), ["pp"] * 13, ActionKind.PROMOTE, 100, id="last-promotion-to-100"),
        pytest.param(
            make_flag(rollout=100, stages=(10, 50, 100)),
            ["pp"] * 13,
            ActionKind.PROMOTE,
            100,
            id="healthy-at-100-completes",
        ),
        pytest.param(
            make_flag(state="paused"), ["fp"] * 5, ActionKind.NOOP, None, id="paused-is-manual-override"
        ),
        pytest.param(make_flag(enabled=False), ["fp"] * 5, ActionKind.NOOP, None, id="killed-flag-untouched"),
        pytest.param(
            make_flag(state="complete", rollout=100),
            ["fp"] * 5,
            ActionKind.ROLLBACK,
            None,
            id="complete-still-rolled-back-on-breach",
        ),
        pytest.param(
            make_flag(state="complete", rollout=100),
            ["pp"] * 13,
            ActionKind.HOLD,
            None,
            id="complete-healthy-never-promoted",
        ),
        pytest.param(
            make_flag(state="rolled_back"), ["fp"] * 5, ActionKind.NOOP, None, id="rolled-back-untouched"
        ),
        pytest.param(make_flag(state="draft"), ["pp"] * 13, ActionKind.NOOP, None, id="draft-untouched"),
        pytest.param(make_flag(guardrails=()), [], ActionKind.HOLD, None, id="no-guardrails-holds"),
    ],
)
def test_decide(flag, rounds, kind, rollout):
    action = decide(flag, history(*rounds), now=T0, stage_started_at=STAGE_START)
    assert action.kind is kind, action.reason
    assert action.rollout == rollout


def test_rollback_reason_names_guardrail_value_and_threshold():
    action = decide(make_flag(), history("pp", "fp", "fp"), now=T0)
    assert action.kind is ActionKind.ROLLBACK
    assert action.guardrail == ERRORS.name
    assert (
        ERRORS.name in action.reason and "value 0.05" in action.reason and "threshold 0.02" in action.reason
    )


def test_promotion_to_100_completes_the_rollout():
    action = decide(make_flag(rollout=50), history(*["pp"] * 13), now=T0)
    assert action.kind is ActionKind.PROMOTE and action.rollout == 100 and action.complete
    assert not decide(make_flag(), history(*["pp"] * 13), now=T0).complete


def test_verdicts_before_the_stage_started_do_not_count():
    rounds = history("fp", "fp", "pp")
    assert (
        decide(make_flag(), rounds, now=T0, stage_started_at=T0 - timedelta(seconds=1)).kind
        is ActionKind.HOLD
    )
    # The hold is measured from the stage start, not from older healthy checks.
    healthy = history(*["pp"] * 40)
    late_start = T0 - timedelta(seconds=30)
    assert decide(make_flag(), healthy, now=T0, stage_started_at=late_start).kind is ActionKind.HOLD


def test_a_gap_in_checks_breaks_the_streaks():
    # The controller was down: two failures 10 minutes apart are not consecutive.
    rounds = history("fp", "fp", every_s=600)
    assert decide(make_flag(), rounds, now=T0, max_gap_s=30).kind is ActionKind.HOLD
    healthy = history(*["pp"] * 3, every_s=60)
    assert decide(make_flag(stage_hold_s=60), healthy, now=T0, max_gap_s=30).kind is ActionKind.HOLD


def test_stale_history_holds():
    rounds = history(*["pp"] * 13)
    assert decide(make_flag(), rounds, now=T0 + timedelta(minutes=5)).kind is ActionKind.HOLD


def test_failures_of_a_removed_guardrail_are_ignored():
    flag = make_flag(guardrails=(ERRORS,))
    only_latency_failing = history("pf", "pf")
    assert decide(make_flag(), only_latency_failing, now=T0).kind is ActionKind.ROLLBACK
    assert decide(flag, only_latency_failing, now=T0).kind is ActionKind.HOLD


def test_hold_reason_counts_the_failures_seen_so_far():
    flag = make_flag(rollback=RollbackPolicy(3, "hold"))
    action = decide(flag, history("pp", "fp", "fp"), now=T0)
    assert action.kind is ActionKind.HOLD and "2 of 3" in action.reason

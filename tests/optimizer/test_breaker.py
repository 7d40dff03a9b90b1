"""The local circuit breaker: trips when the optimized path does worse than the direct path (or than the
absolute bounds without a direct baseline), never on a slowdown both paths share, probes and closes again."""

from __future__ import annotations

import logging
import time

import pytest

from optimizer import BreakerConfig, Decision, Fault, FaultInjected, OptimizerConfig, StaticGate
from optimizer.breaker import REASON_ERROR_RATE, REASON_LATENCY, Outcomes, explain, judge
from optimizer.metrics import LATENCY_BUCKETS
from tests.optimizer.conftest import CountingBackend

FN = "get_all_exam_attempts"
TICK = 0.1  # window_s / 10 with the default 1 s window


class EvenUsersGate:
    """Half the users in each cohort: even user ids optimized, odd ones direct (as a 50% rollout)."""

    def __init__(self, payload: dict[str, object] | None = None) -> None:
        self._on = Decision(True, payload)

    def decide(self, user_id: str | None) -> Decision:
        return self._on if int(user_id or 0) % 2 == 0 else Decision(False)


class SlowBackend(CountingBackend):
    """Every call takes `delay_s`, like a query on a saturated machine."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def __call__(self, key: str) -> dict[str, object]:
        time.sleep(self.delay_s)
        return super().__call__(key)


def bypassed(registry, reason: str) -> float:
    return registry.get_sample_value("optimizer_gate_bypass_total", {"fn": FN, "reason": reason}) or 0.0


def transitions(registry, state: str) -> float:
    return registry.get_sample_value("optimizer_breaker_transitions_total", {"fn": FN, "state": state})


def call(opt, user: int):
    """One call that may raise the injected fault; returns whether it raised."""
    try:
        opt("k", user_id=str(user))
    except FaultInjected:
        return True
    return False


def test_a_total_fault_trips_at_the_next_tick_and_sends_calls_direct(make_optimizer, registry, clock):
    opt = make_optimizer(CountingBackend())
    call(opt, 0)  # the first tick: the window starts here
    opt.fault = Fault(error_rate=1.0)
    assert all(call(opt, 0) for _ in range(5))
    clock.advance(TICK)

    assert opt("k", user_id="0") == {"key": "k", "version": 0}  # direct: the fault is on the optimized path
    assert opt.stats()["breaker"] == "open"
    assert bypassed(registry, REASON_ERROR_RATE) == 1
    assert transitions(registry, "open") == 1
    assert registry.get_sample_value("optimizer_breaker_open", {"fn": FN}) == 1


def test_errors_shared_by_both_paths_do_not_trip_it(make_optimizer, clock):
    backend = CountingBackend()
    backend.error = RuntimeError("database down")
    opt = make_optimizer(backend, gate=EvenUsersGate(), config=OptimizerConfig(ttl_s=0))
    for user in range(40):
        with pytest.raises(RuntimeError):
            opt("k", user_id=str(user))
        clock.advance(TICK / 4)
    assert opt.stats()["breaker"] == "closed"
    assert opt.stats()["errors"] == {"optimized": 20, "direct": 20}


def test_latency_alone_trips_it_once_it_lasted_the_hold_time(make_optimizer, clock):
    # Optimized calls 100 ms slower than direct ones, without errors: a cold cache just after a
    # mass invalidation looks like that for a while, so it must last `latency_hold_s`.
    breaker = BreakerConfig(latency_floor_s=0.02, latency_hold_s=1.0)
    opt = make_optimizer(
        SlowBackend(0.001), gate=EvenUsersGate(), config=OptimizerConfig(breaker=breaker, ttl_s=60)
    )
    call(opt, 0)
    opt.fault = Fault(latency_s=0.1)
    for user in range(10):
        call(opt, user)
    for _ in range(5):
        clock.advance(TICK)
        call(opt, 1)  # the tick judges the window
        call(opt, 0)
    assert opt.stats()["breaker"] == "closed"
    for _ in range(7):
        clock.advance(TICK)
        call(opt, 1)
        if opt.stats()["breaker"] == "open":
            break
        call(opt, 0)
    assert opt.stats()["breaker"] == "open"
    call(opt, 0)
    assert opt.stats()["bypass"] == {REASON_LATENCY: 1}


def test_a_slowdown_of_both_paths_does_not_trip_it(make_optimizer, clock):
    # Every call, optimized or direct, waits 100 ms: over both absolute bounds set here, but no
    # worse than direct. Judged at the start of each pair, so the direct baseline is always there.
    breaker = BreakerConfig(latency_floor_s=0.005, latency_s=0.05)
    opt = make_optimizer(
        SlowBackend(0.1), gate=EvenUsersGate(), config=OptimizerConfig(breaker=breaker, ttl_s=0)
    )
    for pair in range(10):
        call(opt, 2 * pair)
        call(opt, 2 * pair + 1)
        clock.advance(TICK)
    call(opt, 1)
    assert opt.stats()["breaker"] == "closed"
    assert opt.stats()["requests"] == {"optimized": 10, "direct": 11}


def test_without_direct_calls_the_absolute_latency_bound_applies(make_optimizer, clock):
    # The flag at 100%: nobody is direct, so the same slowdown is judged against latency_s.
    breaker = BreakerConfig(latency_floor_s=0.005, latency_s=0.005, latency_hold_s=1.0)
    opt = make_optimizer(SlowBackend(0.03), config=OptimizerConfig(breaker=breaker, ttl_s=0))
    for _ in range(6):
        call(opt, 0)
    for _ in range(12):
        clock.advance(TICK)
        call(opt, 0)
    assert opt.stats()["breaker"] == "open"


def test_a_direct_cohort_silent_for_a_moment_is_not_replaced_by_the_absolute_bound(make_optimizer, clock):
    # On a saturated machine completions come in bursts: a window may hold slow optimized calls and
    # almost no direct ones. With direct calls seen lately, that window is not judged on latency.
    breaker = BreakerConfig(latency_s=0.005)
    opt = make_optimizer(
        SlowBackend(0.03), gate=EvenUsersGate(), config=OptimizerConfig(breaker=breaker, ttl_s=0)
    )
    for pair in range(5):
        call(opt, 2 * pair)
        call(opt, 2 * pair + 1)
    clock.advance(TICK)
    call(opt, 1)  # a tick sees the direct cohort
    clock.advance(1.5)
    for _ in range(6):
        call(opt, 0)
    clock.advance(TICK)
    call(opt, 0)
    assert opt.stats()["breaker"] == "closed"


def test_too_few_calls_are_not_judged(make_optimizer, clock):
    opt = make_optimizer(CountingBackend(), config=OptimizerConfig(breaker=BreakerConfig(min_calls=10)))
    opt.fault = Fault(error_rate=1.0)
    for _ in range(9):
        call(opt, 0)
    clock.advance(TICK)
    call(opt, 0)
    assert opt.stats()["breaker"] == "closed"


def test_errors_older_than_the_window_are_forgotten(make_optimizer, clock):
    opt = make_optimizer(CountingBackend())
    opt.fault = Fault(error_rate=1.0)
    for _ in range(4):  # one short of min_calls
        call(opt, 0)
    clock.advance(1.1)  # a lull: the next tick's window holds none of these errors
    opt.fault = None
    for _ in range(10):
        call(opt, 0)
        clock.advance(TICK)
    opt.fault = Fault(error_rate=1.0)
    call(opt, 0)
    clock.advance(TICK)
    call(opt, 0)
    assert opt.stats()["breaker"] == "closed"


def test_after_the_cooldown_a_share_of_calls_probes_and_the_breaker_closes(
    make_optimizer, registry, clock, caplog
):
    breaker = BreakerConfig(cooldown_s=5, probe_share=0.25)
    opt = make_optimizer(CountingBackend(), config=OptimizerConfig(breaker=breaker))
    call(opt, 0)
    opt.fault = Fault(error_rate=1.0)
    for _ in range(5):
        call(opt, 0)
    with caplog.at_level(logging.WARNING, logger="optimizer.core"):
        clock.advance(TICK)
        call(opt, 0)
        assert opt.stats()["breaker"] == "open"
        opt.fault = None  # the fault is gone
        clock.advance(5)
        call(opt, 0)
        assert opt.stats()["breaker"] == "half_open"
        before = opt.stats()["requests"]["optimized"]
        for _ in range(200):
            call(opt, 0)
        probes = opt.stats()["requests"]["optimized"] - before
        assert 5 <= probes < 150  # a share of the calls, not all of them
        clock.advance(TICK)
        call(opt, 0)
    assert opt.stats()["breaker"] == "closed"
    assert [transitions(registry, s) for s in ("open", "half_open", "closed")] == [1, 1, 1]
    assert registry.get_sample_value("optimizer_breaker_open", {"fn": FN}) == 0
    logged = [r.getMessage() for r in caplog.records if "circuit breaker" in r.getMessage()]
    assert len(logged) == 3 and "open" in logged[0] and "closed" in logged[2]


def test_failing_probes_open_it_again(make_optimizer, registry, clock):
    breaker = BreakerConfig(cooldown_s=5, probe_share=1.0)
    opt = make_optimizer(CountingBackend(), config=OptimizerConfig(breaker=breaker))
    call(opt, 0)
    opt.fault = Fault(error_rate=1.0)
    for _ in range(5):
        call(opt, 0)
    clock.advance(TICK)
    call(opt, 0)
    clock.advance(5)
    call(opt, 0)
    assert opt.stats()["breaker"] == "half_open"
    assert all(call(opt, 0) for _ in range(5))  # probes, still failing
    clock.advance(TICK)
    call(opt, 0)
    assert opt.stats()["breaker"] == "open"
    assert transitions(registry, "open") == 2 and opt.stats()["breaker_trips"] == 2


def test_thresholds_come_from_the_flag_payload(make_optimizer, clock):
    payload = {"breaker_min_calls": 2, "breaker_error_rate": 1.0, "breaker_cooldown_s": 5}
    opt = make_optimizer(CountingBackend(), gate=StaticGate(True, payload))
    opt.fault = Fault(error_rate=1.0)
    for _ in range(2):
        call(opt, 0)
    clock.advance(TICK)
    assert opt("k") == {"key": "k", "version": 0}
    assert opt.stats()["bypass"] == {REASON_ERROR_RATE: 1}


def _outcomes(optimized: list[float], direct: list[float], errors: tuple[int, int] = (0, 0)) -> Outcomes:
    import bisect

    def buckets(latencies: list[float]) -> tuple[int, ...]:
        counts = [0] * (len(LATENCY_BUCKETS) + 1)
        for latency in latencies:
            counts[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
        return tuple(counts)

    return Outcomes(
        calls=(len(optimized), len(direct)), errors=errors, buckets=(buckets(optimized), buckets(direct))
    )


@pytest.mark.parametrize(
    ("optimized", "direct", "errors", "expected"),
    [
        pytest.param([0.001] * 20, [0.01] * 20, (0, 0), None, id="healthy"),
        pytest.param([0.31] * 10 + [0.001] * 10, [0.01] * 20, (0, 0), REASON_LATENCY, id="demo-latency"),
        pytest.param([0.001] * 20, [0.01] * 20, (6, 0), REASON_ERROR_RATE, id="30pct-errors"),
        pytest.param([0.001] * 20, [0.01] * 20, (6, 4), None, id="errors-on-both-paths"),
        pytest.param([2.0] * 20, [2.0] * 20, (0, 0), None, id="saturated-both-slow"),
        pytest.param([0.5] * 20, [2.0] * 20, (0, 0), None, id="saturated-optimized-faster"),
        pytest.param([2.0] * 20, [], (0, 0), REASON_LATENCY, id="no-direct-over-absolute-bound"),
        pytest.param([0.5] * 20, [], (0, 0), None, id="no-direct-under-absolute-bound"),
        pytest.param([0.31] * 4, [0.01] * 20, (0, 0), None, id="too-few-calls"),
    ],
)
def test_the_rule(optimized, direct, errors, expected):
    assert judge(_outcomes(optimized, direct, errors), BreakerConfig(), LATENCY_BUCKETS) == expected


@pytest.mark.parametrize(
    ("errors", "corroborated"),
    [
        pytest.param((0, 0), False, id="latency-alone"),
        pytest.param((3, 0), True, id="with-15pct-errors"),
        pytest.param((3, 3), False, id="errors-the-direct-path-has-too"),
    ],
)
def test_latency_is_corroborated_by_errors_above_half_the_error_threshold(errors, corroborated):
    window = _outcomes([0.31] * 10 + [0.001] * 10, [0.01] * 20, errors)
    verdict = explain(window, BreakerConfig(), LATENCY_BUCKETS)
    assert verdict is not None and verdict.reason == REASON_LATENCY
    assert verdict.corroborated is corroborated

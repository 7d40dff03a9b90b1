"""The local circuit breaker trips on the optimized path's error rate or p95 latency, and recovers."""

from __future__ import annotations

import pytest

from optimizer import BreakerConfig, Fault, FaultInjected, OptimizerConfig, StaticGate
from tests.optimizer.conftest import CountingBackend, FakeClock


def test_trips_on_error_rate_sends_calls_direct_and_recovers_after_the_cooldown(
    make_optimizer, registry, clock: FakeClock
):
    backend = CountingBackend()
    breaker = BreakerConfig(error_rate=0.5, min_calls=4, window_s=60, cooldown_s=30)
    opt = make_optimizer(backend, config=OptimizerConfig(breaker=breaker))
    opt.fault = Fault(error_rate=1.0)
    for _ in range(4):
        with pytest.raises(FaultInjected):
            opt("k")

    assert opt("k") == {"key": "k", "version": 0}  # direct: the fault is on the optimized path only
    assert opt.stats()["breaker"] == "open"
    assert (
        registry.get_sample_value(
            "optimizer_gate_bypass_total", {"fn": "get_all_exam_attempts", "reason": "breaker_error_rate"}
        )
        == 1
    )
    assert opt.stats()["requests"]["direct"] == 1

    clock.advance(30)
    opt.fault = None
    opt("k")
    stats = opt.stats()
    assert stats["breaker"] == "closed"
    assert stats["requests"] == {"optimized": 5, "direct": 1}


def test_does_not_trip_below_min_calls(make_optimizer):
    opt = make_optimizer(CountingBackend(), config=OptimizerConfig(breaker=BreakerConfig(min_calls=10)))
    opt.fault = Fault(error_rate=1.0)
    for _ in range(9):
        with pytest.raises(FaultInjected):
            opt("k")
    assert opt.stats()["breaker"] == "closed"


def test_old_errors_leave_the_window(make_optimizer, clock: FakeClock):
    config = OptimizerConfig(breaker=BreakerConfig(error_rate=0.5, min_calls=4, window_s=10))
    opt = make_optimizer(CountingBackend(), config=config)
    opt.fault = Fault(error_rate=1.0)
    for _ in range(3):
        with pytest.raises(FaultInjected):
            opt("k")
    clock.advance(11)
    opt.fault = None
    for _ in range(4):
        opt("k")
    assert opt.stats()["breaker"] == "closed"


def test_trips_on_p95_latency(make_optimizer, registry):
    config = OptimizerConfig(breaker=BreakerConfig(p95_latency_s=0.005, min_calls=3, error_rate=1.0))
    opt = make_optimizer(CountingBackend(), config=config)
    opt.fault = Fault(latency_s=0.02)  # every optimized call takes at least 20 ms
    for _ in range(3):
        opt("k")
    opt("k")
    assert (
        registry.get_sample_value(
            "optimizer_gate_bypass_total", {"fn": "get_all_exam_attempts", "reason": "breaker_latency"}
        )
        == 1
    )


def test_thresholds_come_from_the_flag_payload(make_optimizer):
    payload = {"breaker_min_calls": 2, "breaker_error_rate": 1.0, "breaker_cooldown_s": 5}
    opt = make_optimizer(CountingBackend(), gate=StaticGate(True, payload))
    opt.fault = Fault(error_rate=1.0)
    for _ in range(2):
        with pytest.raises(FaultInjected):
            opt("k")
    assert opt("k") == {"key": "k", "version": 0}
    assert opt.stats()["bypass"] == {"breaker_error_rate": 1}

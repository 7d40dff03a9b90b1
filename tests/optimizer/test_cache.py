"""The in-process cache's memory bounds: entries and measured bytes, under generated workloads."""

from __future__ import annotations

import json
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from optimizer import InProcessCache, Optimizer, OptimizerConfig, StaticGate, sizing
from tests.optimizer.conftest import FakeClock

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=200),
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=10), children, max_size=8)
    ),
    max_leaves=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workload=st.lists(st.tuples(st.integers(0, 40), json_values), min_size=1, max_size=80),
    max_bytes=st.integers(2_000, 40_000),
    max_entries=st.integers(1, 30),
)
def test_the_byte_and_entry_bounds_hold_under_any_workload(workload, max_bytes, max_entries):
    values = dict(workload)
    config = OptimizerConfig(max_bytes=max_bytes, max_entries=max_entries, jitter=0)
    opt = Optimizer(
        lambda key: values[int(key)],
        name="bounded",
        config=config,
        registry=CollectorRegistry(),
        clock=FakeClock(),
        gate=StaticGate(True),
    )
    try:
        for number, _ in workload:
            assert opt(str(number)) == values[number]
            held = [str(n) for n in values if opt.cache.contains(f"v1:{n}")]
            assert opt.cache_bytes <= max_bytes
            assert opt.cache.entries == len(held) <= max_entries
            # The bytes reported are the measured sizes of exactly the entries held.
            assert opt.cache_bytes == sum(sizing.measure(f"v1:{n}", values[int(n)]) for n in held)
    finally:
        opt.close()


def test_the_least_recently_used_entry_is_evicted_first(clock):
    opt = Optimizer(
        lambda k: k,
        name="lru",
        config=OptimizerConfig(max_entries=2),
        registry=CollectorRegistry(),
        clock=clock,
    )
    opt("a")
    opt("b")
    opt("a")
    opt("c")
    assert opt.cache.contains("v1:a") and opt.cache.contains("v1:c") and not opt.cache.contains("v1:b")
    assert opt.stats()["evictions"] == 1
    opt.close()


def test_a_value_larger_than_the_whole_budget_is_returned_but_not_cached(clock):
    calls = []

    def big(key: str) -> str:
        calls.append(key)
        return "x" * 10_000

    opt = Optimizer(
        big, name="big", config=OptimizerConfig(max_bytes=5_000), registry=CollectorRegistry(), clock=clock
    )
    assert len(opt("k")) == 10_000
    assert len(opt("k")) == 10_000
    assert calls == ["k", "k"] and opt.cache_bytes == 0
    opt.close()


def test_the_size_measure_counts_nested_objects_unlike_sys_getsizeof():
    attempts = [{"attempt": i, "answers": [{"q": q, "a": "B"} for q in range(10)]} for i in range(12)]
    measured = sizing.measure("k", attempts)
    assert measured > 3 * sys.getsizeof(attempts)
    assert measured > len(json.dumps(attempts))


def test_an_in_process_cache_without_bounds_takes_the_optimizer_config(clock):
    cache = InProcessCache()
    opt = Optimizer(
        lambda k: "x" * 500,
        name="c",
        cache=cache,
        config=OptimizerConfig(max_bytes=1_500),
        registry=CollectorRegistry(),
        clock=clock,
    )
    for i in range(10):
        opt(str(i))
    assert 0 < cache.bytes <= 1_500
    opt.close()


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_the_size_of_json_values_is_what_pympler_asizeof_counts(value):
    from pympler import asizeof

    assert sizing.deep_size(value) == asizeof.asizeof(value)

"""The live count of the ideal's fetches equals `portal.ideal.minimum_calls` on the same call log."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from optimizer import Decision, Optimizer, OptimizerConfig
from portal.ideal import Call, Invalidation, minimum_calls
from tests.optimizer.conftest import CountingBackend, FakeClock

TTL, STALE = 10.0, 2.0
STUDENTS, SERIES = 4, 3


class EvenStudentsGate:
    """Even students optimized, odd ones direct: the ideal counts both paths' calls."""

    def decide(self, user_id: str | None) -> Decision:
        return Decision(int(user_id or 0) % 2 == 0)


events = st.lists(
    st.tuples(
        st.integers(0, 600),  # time in tenths of a second
        st.sampled_from(["call", "many", "write"]),
        st.integers(0, STUDENTS - 1),
        st.integers(0, SERIES - 1),
    ),
    max_size=150,
)


@settings(max_examples=120, deadline=None)
@given(log=events)
def test_the_live_count_is_the_exact_minimum_on_any_log(log):
    clock = FakeClock(start=0.0)
    registry = CollectorRegistry()
    opt = Optimizer(
        CountingBackend(),
        name="fn",
        config=OptimizerConfig(ttl_s=TTL, stale_s=STALE, jitter=0),
        gate=EvenStudentsGate(),
        tags=lambda key: [f"student:{key.split(':')[0]}"],
        registry=registry,
        clock=clock,
    )
    calls: list[Call] = []
    writes: list[Invalidation] = []
    try:
        # At one instant calls come before writes, as the ideal's tie rule has it.
        for tenths, kind, student, series in sorted(log, key=lambda e: (e[0], e[1] == "write")):
            clock.now = tenths / 10
            if kind == "call":
                key = f"{student}:{series}"
                opt(key, user_id=str(student))
                calls.append(Call(clock.now, key))
            elif kind == "many":
                keys = [f"{student}:{s}" for s in range(SERIES)]
                opt.get_many(keys, user_id=str(student))
                calls.extend(Call(clock.now, key) for key in keys)
            else:
                opt.invalidate_tag(f"student:{student}")
                writes.extend(Invalidation(clock.now, f"{student}:{s}") for s in range(SERIES))
        counted = sum(
            registry.get_sample_value("optimizer_ideal_fetches_total", {"fn": "fn", "path": path}) or 0.0
            for path in ("optimized", "direct")
        )
        assert counted == minimum_calls(calls, writes, TTL + STALE)
    finally:
        opt.close()


def test_a_key_invalidation_cuts_its_window(clock):
    opt = Optimizer(CountingBackend(), name="fn", registry=CollectorRegistry(), clock=clock)
    try:
        opt("a")
        opt("a")
        opt.invalidate("a")
        opt("a")
        assert opt.stats()["ideal_fetches"] == {"optimized": 2, "direct": 0}
    finally:
        opt.close()

"""The flight table against a plain model: which flights are current, and which were invalidated."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.singleflight import Flight, FlightTable

KEYS = [f"{student}:{series}" for student in range(3) for series in range(3)]


def _tags(key: str) -> frozenset[str]:
    student, series = key.split(":")
    return frozenset({f"student:{student}", f"series:{series}"})


operations = st.lists(
    st.one_of(
        st.tuples(st.just("join"), st.sampled_from(KEYS)),
        st.tuples(st.just("join many"), st.lists(st.sampled_from(KEYS), max_size=4)),
        st.tuples(st.just("refresh"), st.sampled_from(KEYS)),
        st.tuples(st.just("finish"), st.sampled_from(KEYS)),
        st.tuples(st.just("finish many"), st.lists(st.sampled_from(KEYS), max_size=4)),
        st.tuples(st.just("key"), st.sampled_from(KEYS)),
        st.tuples(st.just("tag"), st.sampled_from(sorted({t for k in KEYS for t in _tags(k)}))),
        st.tuples(st.just("all"), st.just("")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_the_table_matches_a_model_of_current_flights(ops: list[tuple[str, str | list[str]]]) -> None:
    table = FlightTable()
    current: dict[str, Flight] = {}  # the model: key -> its current flight
    started: list[Flight] = []
    for op, arg in ops:
        if op == "join many":
            # As many joins in a row, made under one acquisition of the lock.
            assert isinstance(arg, list)
            joined = table.join_or_start_many([(key, _tags(key)) for key in arg])
            for key, (flight, leads) in zip(arg, joined, strict=True):
                assert leads == (key not in current)
                current.setdefault(key, flight)
                assert flight is current[key]
                started += [flight] if leads else []
        elif op == "finish many":
            assert isinstance(arg, list)
            finishing = [f for f in started if f.key in arg]
            table.finish_many(finishing)
            for flight in finishing:
                if current.get(flight.key) is flight:
                    del current[flight.key]
        elif not isinstance(arg, str):
            raise AssertionError(f"{op} takes one key")
        elif op == "join":
            flight, leads = table.join_or_start(arg, _tags(arg))
            assert leads == (arg not in current)
            current.setdefault(arg, flight)
            assert flight is current[arg]
            started += [flight] if leads else []
        elif op == "refresh":
            maybe = table.start_if_idle(arg, _tags(arg))
            assert (maybe is None) == (arg in current)
            if maybe is not None:
                current[arg] = maybe
                started.append(maybe)
        elif op == "finish":
            for flight in [f for f in started if f.key == arg]:
                table.finish(flight)
                if current.get(arg) is flight:
                    del current[arg]
        elif op == "key":
            table.invalidate_key(arg)
            current.pop(arg, None)
        elif op == "tag":
            table.invalidate_tag(arg)
            current = {k: f for k, f in current.items() if arg not in f.tags}
        else:
            table.invalidate_all()
            current.clear()
        assert table.in_flight() == len(current)
        for key in KEYS:  # a new caller joins exactly the model's current flight
            if key in current:
                assert table.join_or_start(key, _tags(key)) == (current[key], False)
    # A flight still current was never marked invalidated.
    assert not any(f.invalidated for f in current.values())

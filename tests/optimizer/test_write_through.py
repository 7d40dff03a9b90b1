"""`Optimizer.write_through`: the values a write reads back are stored with it, never older than another write."""

from __future__ import annotations

import threading

import pytest

from optimizer import OptimizerConfig, StaticGate
from tests.optimizer.conftest import CountingBackend, FakeClock
from tests.support import wait_until


def _value(key: str, version: int) -> dict[str, object]:
    return {"key": key, "version": version}


def test_commit_stores_what_the_write_read_back_and_the_next_calls_hit(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend, batch_fn=backend.batch)
    write = opt.write_through(["a"], also=["b", "c"], user_id="s1")
    assert write.keys == ("a", "b", "c")

    write.commit({key: _value(key, 1) for key in write.keys})

    assert opt.get_many(["a", "b", "c"], user_id="s1") == {key: _value(key, 1) for key in "abc"}
    assert opt("a", user_id="s1") == _value("a", 1)
    assert backend.calls == [] and backend.batches == []


def test_the_changed_key_loses_its_old_value_and_fresh_keys_are_not_read_back(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend, batch_fn=backend.batch)
    assert opt.get_many(["a", "b"], user_id="s1") == {"a": _value("a", 0), "b": _value("b", 0)}

    write = opt.write_through(["a"], also=["a", "b", "c"], user_id="s1")

    assert write.keys == ("a", "c")  # b is fresh in the cache; a changed, so it is read back anyway
    write.commit({"a": _value("a", 1), "c": _value("c", 1)})
    assert opt("a", user_id="s1") == _value("a", 1)
    assert opt("b", user_id="s1") == _value("b", 0)
    assert len(backend.batches) == 1  # only the first get_many


def test_an_expired_key_is_read_back(make_optimizer, clock: FakeClock):
    backend = CountingBackend()
    opt = make_optimizer(backend, config=OptimizerConfig(ttl_s=10, stale_s=0, jitter=0))
    opt("b", user_id="s1")
    clock.advance(11)

    assert opt.write_through(["a"], also=["b"], user_id="s1").keys == ("a", "b")


def test_an_invalidation_while_the_write_runs_keeps_its_value_out(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend)
    write = opt.write_through(["a"], also=["b"], user_id="s1")

    opt.invalidate("b")  # another write changed b after this one read it
    write.commit({"a": _value("a", 1), "b": _value("b", 0)})

    backend.version = 2
    assert opt("a", user_id="s1") == _value("a", 1)
    assert opt("b", user_id="s1") == _value("b", 2)  # a miss: the read-back value was not stored
    assert backend.calls == ["b"]


def test_of_two_overlapping_writes_of_one_key_the_second_to_commit_leaves_no_value(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend)
    first = opt.write_through(["a"], user_id="s1")
    second = opt.write_through(["a"], user_id="s1")

    # Each read back its own write only: neither value holds the other's.
    first.commit({"a": _value("a", 1)})
    assert opt("a", user_id="s1") == _value("a", 1)
    second.commit({"a": _value("a", 2)})

    backend.version = 3
    assert opt("a", user_id="s1") == _value("a", 3)  # read anew, not either write's partial view
    assert backend.calls == ["a"]


def test_a_load_that_started_before_the_write_does_not_store_its_older_value(make_optimizer):
    backend = CountingBackend(hold=True)
    opt = make_optimizer(backend)
    early: list[dict[str, object]] = []
    reader = threading.Thread(target=lambda: early.append(opt("a", user_id="s1")))
    reader.start()
    wait_until(lambda: backend.in_flight == 1, what="the early load reached the backend")

    opt.write_through(["a"], user_id="s1").commit({"a": _value("a", 1)})
    backend.release.set()
    reader.join(10)

    assert early == [_value("a", 0)]
    assert opt("a", user_id="s1") == _value("a", 1)
    assert backend.calls == ["a"]


def test_a_direct_user_reads_nothing_back_and_commit_only_invalidates(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend, gate=StaticGate(False))
    write = opt.write_through(["a"], also=["b"], user_id="s1")
    assert write.keys == ()
    write.commit({})
    assert opt.stats()["invalidations"] == 1


def test_abort_drops_the_changed_key_and_stores_nothing(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend)
    opt("a", user_id="s1")
    write = opt.write_through(["a"], also=["b"], user_id="s1")

    write.abort()

    backend.version = 1
    assert opt("a", user_id="s1") == _value("a", 1)
    assert opt("b", user_id="s1") == _value("b", 1)
    assert backend.calls == ["a", "a", "b"]


def test_the_read_back_counts_as_one_batched_call_of_its_keys(make_optimizer):
    opt = make_optimizer(CountingBackend())
    write = opt.write_through(["a"], also=["b", "c"], user_id="s1")
    write.commit({key: _value(key, 1) for key in write.keys})

    stats = opt.stats()
    assert stats["backend_calls"]["optimized"] == 1
    assert (stats["batch_calls"], stats["batch_keys"], stats["invalidations"]) == (1, 3, 1)


def test_a_write_through_ends_once(make_optimizer):
    opt = make_optimizer(CountingBackend())
    write = opt.write_through(["a"], user_id="s1")
    write.commit({"a": _value("a", 1)})
    with pytest.raises(RuntimeError, match="once"):
        write.abort()

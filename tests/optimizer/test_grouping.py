"""Group loading: the misses of concurrent get_many calls share batch calls while the backend is busy."""

from __future__ import annotations

import threading

import pytest

from optimizer import OptimizerConfig
from tests.optimizer.conftest import CountingBackend
from tests.support import wait_until


def _keys(student: int) -> list[str]:
    return [f"{student}:{series}" for series in range(1, 4)]


def _start(target: object, *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_misses_queued_behind_a_busy_call_share_the_next_one(make_optimizer):
    backend = CountingBackend(hold=True)
    config = OptimizerConfig(max_batches_in_flight=1, max_batch=100)
    opt = make_optimizer(backend, batch_fn=backend.batch, config=config)
    results: dict[int, dict[str, object]] = {}

    def page(student: int) -> None:
        results[student] = opt.get_many(_keys(student))

    first = _start(page, 0)
    wait_until(lambda: backend.in_flight == 1, what="the first call in flight")
    queued = [_start(page, student) for student in range(1, 11)]
    wait_until(lambda: opt.grouper.waiting() == 10, what="ten pages queued")
    backend.release.set()
    for thread in [first, *queued]:
        thread.join(timeout=30)

    assert backend.batches[0] == _keys(0)
    assert len(backend.batches) == 2
    assert sorted(backend.batches[1]) == sorted(k for s in range(1, 11) for k in _keys(s))
    for student in range(11):
        assert {k: v["key"] for k, v in results[student].items()} == {k: k for k in _keys(student)}


def test_a_group_never_exceeds_max_batch_keys(make_optimizer):
    backend = CountingBackend(hold=True)
    config = OptimizerConfig(max_batches_in_flight=1, max_batch=7)
    opt = make_optimizer(backend, batch_fn=backend.batch, config=config)
    first = _start(opt.get_many, _keys(0))
    wait_until(lambda: backend.in_flight == 1, what="the first call in flight")
    queued = [_start(opt.get_many, _keys(student)) for student in range(1, 7)]
    wait_until(lambda: opt.grouper.waiting() == 6, what="six pages queued")
    backend.release.set()
    for thread in [first, *queued]:
        thread.join(timeout=30)

    assert [len(batch) for batch in backend.batches] == [3, 6, 6, 6]
    assert sorted(k for batch in backend.batches for k in batch) == sorted(
        k for s in range(7) for k in _keys(s)
    )


def test_a_lone_miss_runs_at_once_while_a_call_slot_is_free(make_optimizer):
    backend = CountingBackend(hold=True)
    opt = make_optimizer(backend, batch_fn=backend.batch, config=OptimizerConfig(max_batches_in_flight=2))
    first = _start(opt.get_many, _keys(0))
    second = _start(opt.get_many, _keys(1))
    wait_until(lambda: backend.in_flight == 2, what="both calls in flight together")
    assert opt.grouper.waiting() == 0
    backend.release.set()
    for thread in (first, second):
        thread.join(timeout=30)
    assert sorted(map(sorted, backend.batches)) == [sorted(_keys(0)), sorted(_keys(1))]


def test_a_failing_grouped_call_raises_to_every_page_in_it(make_optimizer):
    backend = CountingBackend(hold=True)
    opt = make_optimizer(backend, batch_fn=backend.batch, config=OptimizerConfig(max_batches_in_flight=1))
    errors: list[BaseException] = []

    def page(student: int) -> None:
        try:
            opt.get_many(_keys(student))
        except RuntimeError as exc:
            errors.append(exc)

    first = _start(page, 0)
    wait_until(lambda: backend.in_flight == 1, what="the first call in flight")
    queued = [_start(page, student) for student in range(1, 4)]
    wait_until(lambda: opt.grouper.waiting() == 3, what="three pages queued")
    backend.error = RuntimeError("database down")
    backend.release.set()
    for thread in [first, *queued]:
        thread.join(timeout=30)
    assert len(backend.batches) == 2
    assert [str(e) for e in errors] == ["database down"] * 4
    with pytest.raises(RuntimeError):
        opt.get_many(_keys(9))


@pytest.mark.parametrize("max_in_flight", [1, 3])
def test_many_threads_each_get_their_keys_and_calls_stay_within_the_slots(max_in_flight):
    from optimizer.grouping import Grouper

    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    def run_batch(keys: list[str]) -> dict[str, str]:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        try:
            if "fail" in keys:
                raise RuntimeError("a failed call")
            return {key: key.upper() for key in keys}
        finally:
            with lock:
                running[0] -= 1

    grouper = Grouper(run_batch)
    outcomes: dict[int, object] = {}

    def load(n: int) -> None:
        keys = [f"k{n}-{i}" for i in range(n % 4 + 1)] + (["fail"] if n % 17 == 0 else [])
        try:
            outcomes[n] = dict(grouper.load_many(keys, max_batch=10, max_in_flight=max_in_flight))
        except RuntimeError as exc:
            outcomes[n] = exc

    threads = [_start(load, n) for n in range(1, 201)]
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert running[1] <= max_in_flight
    for n in range(1, 201):
        result = outcomes[n]
        if n % 17 == 0:
            assert isinstance(result, RuntimeError)
        elif isinstance(result, dict):
            assert {k: result[k] for k in (f"k{n}-{i}" for i in range(n % 4 + 1))} == {
                f"k{n}-{i}": f"K{n}-{i}" for i in range(n % 4 + 1)
            }
        else:  # grouped into a call with a failing load: every load in it gets the error
            assert isinstance(result, RuntimeError)
    assert grouper.waiting() == 0

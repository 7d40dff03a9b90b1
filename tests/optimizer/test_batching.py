"""Batching: concurrent single-key loads become `batch_fn` calls of at most `max_batch` keys."""

from __future__ import annotations

import math

import pytest

from optimizer import MissingFromBatch, OptimizerConfig
from tests.optimizer.conftest import CountingBackend, run_threads
from tests.support import wait_until


@pytest.mark.parametrize(
    ("loads", "max_batch"),
    [
        pytest.param(48, 8, id="full-batches"),
        pytest.param(50, 8, id="with-a-remainder"),
        pytest.param(7, 10, id="one"),
    ],
)
def test_m_concurrent_loads_with_max_batch_b_make_ceil_m_over_b_batch_calls(make_optimizer, loads, max_batch):
    backend = CountingBackend()
    # A window far longer than the test: only a full batch or the explicit flush below dispatches.
    config = OptimizerConfig(batch_window_ms=600_000, max_batch=max_batch)
    opt = make_optimizer(backend, batch_fn=backend.batch, config=config)
    assert opt.batcher is not None

    def flush_the_remainder() -> None:
        wait_until(
            lambda: len(backend.batches) == loads // max_batch and opt.batcher.pending() == loads % max_batch,
            what="full batches dispatched and the remainder waiting",
        )
        opt.batcher.flush()

    results = run_threads(loads, lambda i: opt(f"k{i}"), while_running=flush_the_remainder)

    assert len(backend.batches) == math.ceil(loads / max_batch)
    assert all(len(batch) <= max_batch for batch in backend.batches)
    assert sorted(k for batch in backend.batches for k in batch) == sorted(f"k{i}" for i in range(loads))
    assert [r["key"] for r in results] == [f"k{i}" for i in range(loads)]
    assert backend.calls == []
    stats = opt.stats()
    assert stats["batch_calls"] == math.ceil(loads / max_batch)
    assert stats["batch_keys"] == loads


def test_a_lone_load_is_dispatched_when_its_window_ends(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend, batch_fn=backend.batch, config=OptimizerConfig(batch_window_ms=0))
    assert opt("a") == {"key": "a", "version": 0}
    assert backend.batches == [["a"]]


def test_a_failing_batch_raises_to_every_key_in_it(make_optimizer):
    backend = CountingBackend()
    backend.error = TimeoutError("pool exhausted")
    opt = make_optimizer(
        backend, batch_fn=backend.batch, config=OptimizerConfig(batch_window_ms=600_000, max_batch=5)
    )
    results = run_threads(5, lambda i: opt(f"k{i}"))
    assert len(backend.batches) == 1
    assert all(isinstance(r, TimeoutError) for r in results)


def test_a_key_missing_from_the_batch_result_raises_for_that_key_only(make_optimizer):
    def batch_without_b(keys: list[str]) -> dict[str, str]:
        return {k: k.upper() for k in keys if k != "b"}

    opt = make_optimizer(lambda k: k, batch_fn=batch_without_b, config=OptimizerConfig(max_batch=2))
    with pytest.raises(MissingFromBatch):
        opt.get_many(["a", "b"])
    assert opt("a") == "A"

"""Backend protection: the concurrency cap is never exceeded; the rate limit holds calls back."""

from __future__ import annotations

import pytest

from optimizer import OptimizerConfig, RateLimited, StaticGate
from tests.optimizer.conftest import CountingBackend, run_threads
from tests.support import wait_until


@pytest.mark.parametrize(
    ("config", "payload", "cap"),
    [
        pytest.param(OptimizerConfig(max_concurrency=3), None, 3, id="config"),
        pytest.param(OptimizerConfig(max_concurrency=10), {"max_concurrency": 2}, 2, id="payload"),
    ],
)
def test_the_concurrency_cap_is_never_exceeded(make_optimizer, config, payload, cap):
    backend = CountingBackend(hold=True)
    opt = make_optimizer(backend, config=config, gate=StaticGate(True, payload))

    def release_once_capped() -> None:
        wait_until(lambda: backend.in_flight == cap, what=f"{cap} backend calls in flight")
        wait_until(lambda: opt.stats()["in_flight"] == 20, what="all 20 loads started")
        assert backend.in_flight == cap
        backend.release.set()

    results = run_threads(20, lambda i: opt(f"k{i}"), while_running=release_once_capped)

    assert len(backend.calls) == 20
    assert backend.peak_in_flight == cap
    assert opt.stats()["backend_peak_in_use"] == cap
    assert all(r["key"] == f"k{i}" for i, r in enumerate(results))


def test_calls_beyond_the_rate_limit_wait_then_raise(make_optimizer):
    backend = CountingBackend()
    opt = make_optimizer(backend, config=OptimizerConfig(rate_limit="5/minute", queue_timeout_s=0.2))
    for i in range(5):
        opt(f"k{i}")
    with pytest.raises(RateLimited):
        opt("k5")
    assert len(backend.calls) == 5
    assert opt("k0") == {"key": "k0", "version": 0}  # hits do not count against the limit


def test_batches_refreshes_and_prefetches_share_the_cap(make_optimizer, clock):
    backend = CountingBackend(hold=True)
    config = OptimizerConfig(max_concurrency=2, max_batch=1, batch_window_ms=0, refresh_workers=4)
    opt = make_optimizer(backend, batch_fn=backend.batch, config=config)
    opt.prefetch([f"p{i}" for i in range(4)])

    def release_once_capped() -> None:
        wait_until(lambda: backend.in_flight == 2, what="2 backend calls in flight")
        wait_until(lambda: opt.stats()["in_flight"] == 14, what="prefetches and loads started")
        assert backend.in_flight == 2
        backend.release.set()

    run_threads(10, lambda i: opt(f"k{i}"), while_running=release_once_capped)
    wait_until(lambda: opt.cache.entries == 14, what="every key loaded")
    assert backend.peak_in_flight == 2

"""The headline: the same figures from the store's newest scrape as from the app's own /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from control.store import ControlStore
from dashboard.headline import NAMES, headline, totals_from_samples, totals_from_text
from flags.client import Flag, Guardrail, RollbackPolicy
from tests.dashboard.conftest import FN
from tests.dashboard.metrics import MetricsTarget, scrape_history


def _flag(**payload: object) -> Flag:
    return Flag(
        key="f",
        enabled=True,
        rollout=50,
        stages=(10, 50, 100),
        stage_hold_s=60,
        auto_promote=False,
        guardrails=(Guardrail("cache_bytes", "<", 15_000_000, window_s=20, min_samples=1),),
        rollback=RollbackPolicy(),
        state="rolling_out",
        payload={"fn": FN, **payload},
        version=3,
    )


def test_the_store_gives_the_figures_of_metrics(control_database_url: str) -> None:
    target = MetricsTarget(FN)
    try:
        scrape_history(control_database_url, target, seconds=60, error_fraction=0.1)
        text = httpx.get(target.url, timeout=5).text
    finally:
        target.stop()
    store = ControlStore(control_database_url)
    now = datetime.now(UTC)
    try:
        from_store = totals_from_samples(
            store.raw_samples(NAMES, start=now - timedelta(minutes=5), end=now, fn=FN)
        )
    finally:
        store.close()

    assert from_store == totals_from_text(text, fn=FN)
    figures = headline(from_store, _flag())
    # 13 scrapes of 20 calls per cohort; the optimized cohort reaches the backend for 20% of them.
    assert figures.calls_optimized == 13 * 20
    assert figures.backend_saved == 13 * 20 - 13 * 4
    assert figures.call_reduction == pytest.approx(0.8)
    assert figures.hit_rate == pytest.approx(0.8)
    # eta = (N - C_actual) / (N - C_min) = (20 - 4) / (20 - 2) per scrape.
    assert figures.eta == pytest.approx(16 / 18)
    assert figures.error_rate == {"optimized": pytest.approx(0.1), "direct": 0.0}
    assert (figures.cache_bytes, figures.cache_budget_bytes) == (2_000_000, 15_000_000)


def test_eta_counts_a_batch_as_the_keys_it_fetched() -> None:
    totals = {
        ("optimizer_requests_total", "optimized"): 1000.0,
        ("optimizer_backend_calls_total", "optimized"): 50.0,
        ("optimizer_batch_calls_total", None): 10.0,
        ("optimizer_batch_keys_total", None): 80.0,
        ("optimizer_ideal_fetches_total", "optimized"): 100.0,
    }
    # C_actual = 50 - 10 + 80 = 120 keys fetched; C_min = 100.
    assert headline(totals).eta == pytest.approx((1000 - 120) / (1000 - 100))
    assert headline({k: v for k, v in totals.items() if "ideal" not in k[0]}).eta is None


def test_the_payloads_max_bytes_is_the_budget() -> None:
    assert headline({}, _flag(max_bytes=8_000_000)).cache_budget_bytes == 8_000_000


def test_no_traffic_gives_no_ratios() -> None:
    figures = headline({}, None)
    assert (figures.call_reduction, figures.hit_rate, figures.backend_saved, figures.eta) == (None,) * 4
    assert figures.lines()[1] == "call reduction (optimized path): n/a"

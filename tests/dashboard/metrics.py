"""A real /metrics target for the dashboard tests, scraped into the controller's store by its own scraper."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge

from control.loop import Controller, Decision
from control.metrics import open_source
from control.scraper import Scraper
from control.settings import ControlSettings
from control.store import ControlStore
from flags.client import FlagsClient
from tests.metrics_target import ContractTarget


class MetricsTarget(ContractTarget):
    """The contract's optimizer metrics plus the process's resident memory, driven for one function."""

    def __init__(self, fn: str) -> None:
        self.fn = fn
        super().__init__()

    def _register(self, registry: CollectorRegistry) -> None:
        self.rss = Gauge("process_resident_memory_bytes", "resident memory", registry=registry)
        self.ideal = Counter(
            "optimizer_ideal_fetches", "fetches of an ideal cache", ["fn", "path"], registry=registry
        )

    def traffic(
        self,
        *,
        calls: int,
        error_fraction: float,
        latency_s: float,
        backend_share: float = 0.2,
        paths: tuple[str, ...] = ("optimized", "direct"),
    ) -> None:
        """Record one interval of traffic on `paths` (both cohorts): the optimized one with the given errors."""
        fn = self.fn
        for path, share in (("optimized", backend_share), ("direct", 1.0)):
            if path not in paths:
                continue
            self.requests.labels(fn, path).inc(calls)
            self.backend.labels(fn, path).inc(calls * share)
            # An ideal cache fresh within tau would have fetched half as often as the optimized path.
            self.ideal.labels(fn, path).inc(calls * share / 2 if path == "optimized" else calls)
            errors = round(calls * error_fraction) if path == "optimized" else 0
            self.errors.labels(fn, path).inc(errors)
            for _ in range(calls):
                self.latency.labels(fn, path).observe(latency_s if path == "optimized" else 0.08)
        self.hits.labels(fn).inc(calls * 0.8)
        self.misses.labels(fn).inc(calls * 0.2)
        self.cache_bytes.labels(fn).set(2_000_000)
        self.rss.set(80_000_000)


def scrape_history(
    database_url: str,
    target: MetricsTarget,
    *,
    seconds: int = 120,
    step_s: int = 5,
    error_fraction: float = 0.0,
    latency_s: float = 0.03,
    wave: bool = False,
) -> None:
    """Scrape `target` with the controller's scraper as if every `step_s` over the last `seconds`.

    The scraper's injected clock stamps each scrape in the past so a test has a
    history without waiting for it.
    """
    store = ControlStore(database_url)
    end = datetime.now(UTC)
    moment = [end - timedelta(seconds=seconds)]
    scraper = Scraper(store, [target.url], interval_s=step_s, retention_s=86_400 * 2, clock=lambda: moment[0])
    try:
        step = 0
        while moment[0] <= end:
            # `wave` varies load and latency over time so a screenshot looks like a real day.
            swing = math.sin(step / 25) if wave else 0.0
            target.traffic(
                calls=20 + int(10 * swing),
                error_fraction=error_fraction,
                latency_s=latency_s * (1 + 0.5 * swing),
                backend_share=0.2 + 0.05 * swing,
            )
            step += 1
            assert scraper.scrape_once() > 0, "the scraper stored nothing"
            moment[0] += timedelta(seconds=step_s)
    finally:
        scraper.close()
        store.close()


def scrape_now(
    database_url: str, target: MetricsTarget, *, scrapes: int = 3, error_fraction: float = 0.0
) -> None:
    """Scrape `target` a few times now, back to back, each after 20 calls of traffic.

    A stage that began just before (a flag created by the test) then has traffic of its
    own, which the controller judges: it cuts every guardrail's window at the stage's start.
    """
    store = ControlStore(database_url)
    scraper = Scraper(store, [target.url], interval_s=1, retention_s=86_400)
    try:
        for _ in range(scrapes):
            target.traffic(calls=20, error_fraction=error_fraction, latency_s=0.03)
            assert scraper.scrape_once() > 0, "the scraper stored nothing"
    finally:
        scraper.close()
        store.close()


def tick_controller(
    database_url: str,
    flags: FlagsClient,
    *,
    holder: str = "controller-test",
    env: Mapping[str, str] | None = None,
    stop: bool = False,
) -> list[Decision]:
    """Run one evaluation of the real controller (dry run) so the store holds its verdicts and lease.

    `env` configures its metric source as for `rollguard control run`; with `stop` it then
    stops as that command does on SIGTERM, giving its lease up: no controller is running.
    """
    store = ControlStore(database_url)
    settings = ControlSettings.from_env({"ROLLGUARD_CONTROL_DATABASE_URL": database_url, **(env or {})})
    controller = Controller(
        flags=flags,
        source=open_source(settings, store=store),
        store=store,
        holder=holder,
        dry_run=True,
        lease_s=600,
    )
    try:
        decisions = controller.tick()
        if stop:
            stopped = threading.Event()
            stopped.set()
            controller.run(stopped)  # returns at once and gives the lease up
        return decisions
    finally:
        store.close()

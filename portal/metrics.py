"""The portal's own Prometheus metrics, on a registry of the app's own.

`create_app` builds one `PortalMetrics` per app and hands the same registry to
the optimizer, so `/metrics` serves portal_*, optimizer_* and process_* series
together and several apps can live in one test process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "PortalMetrics"]


class PortalMetrics:
    """Counters and gauges the pages, the database layer and the batch endpoint update."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)
        # Several workers each serve their own /metrics on one port: a scraper tells them apart by this.
        self.process_id = Gauge(
            "portal_process_id",
            "The pid of the worker process that served this scrape",
            registry=self.registry,
        )
        self.process_id.set_function(lambda: float(os.getpid()))
        self.page_loads = Counter(
            "portal_page_loads", "MyTestSeries / ExamHome loads", ["page", "path"], registry=self.registry
        )
        self.db_queries = Counter(
            "portal_db_queries", "SQL statements sent to the database", registry=self.registry
        )
        self.pool_in_use = Gauge(
            "portal_db_pool_in_use", "Database connections checked out of the pool", registry=self.registry
        )
        self.pool_peak = Gauge(
            "portal_db_pool_in_use_max",
            "Most connections ever checked out at once since start",
            registry=self.registry,
        )
        self.pool_size = Gauge(
            "portal_db_pool_size",
            "Connections the pool may hand out (size + overflow)",
            registry=self.registry,
        )
        self.optimizer_pool_in_use = Gauge(
            "portal_db_optimizer_pool_in_use",
            "Connections checked out of the pool reserved for the optimizer's backend calls",
            registry=self.registry,
        )
        self.optimizer_pool_size = Gauge(
            "portal_db_optimizer_pool_size",
            "Connections reserved for the optimizer's backend calls",
            registry=self.registry,
        )
        self.pool_timeouts = Counter(
            "portal_db_pool_timeouts",
            "Requests answered 503 because no database connection came free within the pool timeout",
            registry=self.registry,
        )
        self.submissions = Counter(
            "portal_submissions", "Exam attempts written by POST /api/exam/submit", registry=self.registry
        )
        self.batch_in_flight = Gauge(
            "portal_batch_in_flight", "Batch requests being served now", registry=self.registry
        )
        self.batch_rejected = Counter(
            "portal_batch_rejected", "Batch requests refused", ["reason"], registry=self.registry
        )
        # Looking a labeled child up costs more than counting on it: once per (page, path).
        self._page_loads_by_labels: dict[tuple[str, str], Counter] = {}

    def page_loaded(self, page: str, path: str) -> None:
        """Count one load of `page` served by `path`."""
        child = self._page_loads_by_labels.get((page, path))
        if child is None:
            child = self._page_loads_by_labels.setdefault((page, path), self.page_loads.labels(page, path))
        child.inc()

    def watch_pool(
        self,
        *,
        in_use: Callable[[], int],
        peak: Callable[[], int],
        checkouts: Callable[[], int],
        capacity: int,
    ) -> None:
        """Report the pool's checked-out count, its high-water mark and its checkouts at every scrape."""
        self.pool_in_use.set_function(lambda: float(in_use()))
        self.pool_peak.set_function(lambda: float(peak()))
        self.registry.register(
            _CallbackCounter("portal_db_pool_checkouts", "Connections checked out of the pool", checkouts)
        )
        self.pool_size.set(capacity)

    def watch_optimizer_pool(self, in_use: Callable[[], int], capacity: int) -> None:
        """Report the optimizer's reserved connections in use at every scrape."""
        self.optimizer_pool_in_use.set_function(lambda: float(in_use()))
        self.optimizer_pool_size.set(capacity)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _CallbackCounter(Collector):
    """A counter whose value a function returns at every scrape (as `Gauge.set_function` for gauges)."""

    def __init__(self, name: str, documentation: str, value: Callable[[], int]) -> None:
        self._name = name
        self._documentation = documentation
        self._value = value

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, value=float(self._value()))

"""The embedded scraper: reads each target's /metrics every interval into the controller's store.

Started by `rollguard control run` when the metric source is embedded (a thread
next to the decision loop). Keeps only the metric contract's samples
(`control.promql.STORED_SAMPLE_NAMES`: counters, gauges, histogram buckets and
counts), stamps them with the scrape's start time as Prometheus does, inserts
each scrape in one batch and prunes samples older than the retention.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from control.promql import STORED_SAMPLE_NAMES
from control.store import ControlStore, Sample

logger = logging.getLogger(__name__)

PRUNE_EVERY_S = 60.0


def parse_samples(text: str, *, target: str, time: datetime) -> list[Sample]:
    """Parse a Prometheus text exposition and keep the contract's samples, stamped with `time`."""
    out: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in STORED_SAMPLE_NAMES and not math.isnan(sample.value):
                out.append(Sample(time, target, sample.name, dict(sample.labels), float(sample.value)))
    return out


class Scraper:
    """Scrapes `targets` (full /metrics URLs) into `store` every `interval_s` seconds."""

    def __init__(
        self,
        store: ControlStore,
        targets: Sequence[str],
        *,
        interval_s: float = 1.0,
        retention_s: float = 2 * 24 * 3600,
        clock: Callable[[], datetime] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.store = store
        self.targets = tuple(targets)
        self.interval_s = interval_s
        self.retention_s = retention_s
        self._clock = clock or (lambda: datetime.now(UTC))
        # A saturated target answers slowly; a scrape that times out leaves a gap, never a verdict.
        self._http = httpx.Client(timeout=min(10.0, max(5.0, interval_s)), transport=transport)
        self._last_prune: datetime | None = None

    def close(self) -> None:
        self._http.close()

    def scrape_once(self) -> int:
        """Scrape every target once and store what they exposed; return the number of samples stored."""
        stored = 0
        for target in self.targets:
            started = self._clock()
            try:
                response = self._http.get(target)
                response.raise_for_status()
                samples = parse_samples(response.text, target=target, time=started)
            except (httpx.HTTPError, ValueError) as exc:
                logger.warning("scrape of %s failed: %s", target, exc)
                continue
            stored += self.store.add_samples(samples)
        self._maybe_prune()
        return stored

    def run(self, stop: threading.Event, *, active: Callable[[], bool] = lambda: True) -> None:
        """Scrape until `stop` is set, one round per interval (a slow round is not repeated to catch up).

        Rounds are skipped while `active()` is false: a standby controller leaves
        scraping to the leader so the store holds one copy of each scrape.
        """
        while not stop.is_set():
            started = self._clock()
            try:
                if active():
                    self.scrape_once()
            except Exception:
                # The scraper thread must outlive a database hiccup; the next round retries.
                logger.exception("scrape round failed")
            elapsed = (self._clock() - started).total_seconds()
            stop.wait(max(0.0, self.interval_s - elapsed))

    def _maybe_prune(self) -> None:
        now = self._clock()
        if self._last_prune and (now - self._last_prune).total_seconds() < PRUNE_EVERY_S:
            return
        self._last_prune = now
        removed = self.store.prune_samples(before=now - timedelta(seconds=self.retention_s))
        if removed:
            logger.info("pruned %d samples older than %ss", removed, self.retention_s)

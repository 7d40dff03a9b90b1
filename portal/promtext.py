"""Read a portal's /metrics: parse the Prometheus text format and sum samples by name and labels.

The traffic generator scrapes before, during and after a run; the bench reads
the same figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Scrape:
    """One scrape of /metrics."""

    samples: tuple[Sample, ...]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples called `name` whose labels include `labels`."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def values(self, name: str, label: str) -> dict[str, float]:
        """Sum of the samples called `name`, grouped by one label's value."""
        grouped: dict[str, float] = {}
        for s in self.samples:
            if s.name == name and label in s.labels:
                grouped[s.labels[label]] = grouped.get(s.labels[label], 0.0) + s.value
        return grouped


def parse(text: str) -> Scrape:
    """Parse Prometheus text exposition into samples."""
    return Scrape(
        tuple(
            Sample(sample.name, dict(sample.labels), float(sample.value))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        )
    )


def scrape(base_url: str, *, client: httpx.Client | None = None, timeout: float = 5.0) -> Scrape:
    """GET <base_url>/metrics and parse it."""
    url = f"{base_url.rstrip('/')}/metrics"
    response = client.get(url, timeout=timeout) if client else httpx.get(url, timeout=timeout)
    response.raise_for_status()
    return parse(response.text)

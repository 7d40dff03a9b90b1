"""The Prometheus exposition of the optimizer metrics: valid text format, cumulative buckets, one series
per function even when several optimizers share a name."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from optimizer import Optimizer, StaticGate
from tests.optimizer.conftest import CountingBackend


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_exposition_parses_and_the_histogram_is_cumulative(clock):
    registry = CollectorRegistry()
    opt = Optimizer(CountingBackend(), name="fn", registry=registry, clock=clock)
    try:
        for _ in range(5):
            opt("k")
        samples = _samples(registry)
        buckets = sorted(
            (float(dict(labels)["le"]), value)
            for (name, labels), value in samples.items()
            if name == "optimizer_call_seconds_bucket" and dict(labels)["path"] == "optimized"
        )
        counts = [value for _, value in buckets]
        assert counts == sorted(counts) and counts[-1] == 5
        key = ("optimizer_call_seconds_count", (("fn", "fn"), ("path", "optimized")))
        assert samples[key] == 5
        assert samples[("optimizer_cache_hits_total", (("fn", "fn"),))] == 4
    finally:
        opt.close()


def test_optimizers_sharing_a_name_and_registry_are_summed_into_one_series(clock):
    registry = CollectorRegistry()
    first = Optimizer(CountingBackend(), name="fn", registry=registry, clock=clock)
    second = Optimizer(CountingBackend(), name="fn", registry=registry, clock=clock, gate=StaticGate(False))
    try:
        first("k")
        second("k")
        second("k")
        samples = _samples(registry)
        assert samples[("optimizer_requests_total", (("fn", "fn"), ("path", "optimized")))] == 1
        assert samples[("optimizer_requests_total", (("fn", "fn"), ("path", "direct")))] == 2
        assert first.stats()["requests"] == {"optimized": 1, "direct": 0}  # stats() stay per optimizer
    finally:
        first.close()
        second.close()


def test_the_default_registry_takes_optimizers_without_duplicate_registration_errors(clock):
    built = [Optimizer(CountingBackend(), name=f"default_registry_{i}", clock=clock) for i in range(3)]
    for opt in built:
        opt.close()

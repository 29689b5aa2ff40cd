"""Prometheus metrics: what tamma-sync is doing, for its operators (`GET /metrics`).

Counters and histograms are updated where things happen (requests, sync cycles); gauges
that describe current state (subscribers, broker lag, database pool) are read when the
metrics are scraped, through `StateGauges`.

Series labelled by `source` name an ELSA source, and so a tenant's: a scrape shows only
those of the sources its caller may see (see `Metrics.exposition`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: A gauge read at scrape time: name, help, and a function giving labelled values.
GaugeReader = tuple[str, str, list[str], Callable[[], list[tuple[list[str], float]]]]
#: The label naming an ELSA source.
SOURCE = "source"


class StateGauges(Collector):
    """Gauges computed when scraped, from readers registered by the running app."""

    def __init__(self) -> None:
        self._readers: list[GaugeReader] = []

    def add(self, reader: GaugeReader) -> None:
        self._readers.append(reader)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, documentation, labels, read in self._readers:
            family = GaugeMetricFamily(name, documentation, labels=labels)
            for label_values, value in read():
                family.add_metric(label_values, value)
            yield family


class Metrics:
    """One app's metrics, in a registry of its own (tests run several apps per process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "tamma_sync_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "tamma_sync_http_request_duration_seconds",
            "HTTP request latency by route template and method (streams: until they end).",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.sync_cycles = Counter(
            "tamma_sync_sync_cycles_total",
            "Sync cycles per source and outcome (ok, error).",
            [SOURCE, "outcome"],
            registry=self.registry,
        )
        self.sync_cycle_seconds = Histogram(
            "tamma_sync_sync_cycle_duration_seconds",
            "Duration of sync cycles per source.",
            [SOURCE],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
        )
        self.sync_items = Counter(
            "tamma_sync_sync_items_total",
            "Rows the sync stored per source and outcome (created, updated, unchanged, "
            "deleted, rejected).",
            [SOURCE, "outcome"],
            registry=self.registry,
        )
        self.state = StateGauges()
        self.registry.register(self.state)

    def exposition(self, sources: Collection[str] | None) -> bytes:
        """The metrics in Prometheus' text format: of the series labelled by source, those
        of `sources` only (None: all)."""
        if sources is None:
            return generate_latest(self.registry)
        return generate_latest(_OfSources(self.registry, sources))


class _OfSources(Collector):
    """A registry's metrics without the series of sources other than these."""

    def __init__(self, registry: CollectorRegistry, sources: Collection[str]) -> None:
        self._registry = registry
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [
                sample
                for sample in family.samples
                if SOURCE not in sample.labels or sample.labels[SOURCE] in self._sources
            ]
            yield kept

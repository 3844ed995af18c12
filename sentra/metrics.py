"""Prometheus metrics, one registry per app so tests can run many apps in one process."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sentra.registry import TopicRegistry

_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class _RegistryCollector(Collector):
    """Reads the topic registry's counters at scrape time, so the hot path only increments ints."""

    def __init__(self, topics: TopicRegistry) -> None:
        self.topics = topics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily("sentra_open_streams", "SSE streams open now", value=self.topics.open_streams)
        yield CounterMetricFamily("sentra_deliveries", "Lines queued to subscribers", value=self.topics.deliveries)
        yield CounterMetricFamily(
            "sentra_bus_resyncs",
            "Times every stream re-read storage because the bus may have missed commits (Redis down or lagging)",
            value=self.topics.resyncs,
        )
        cut = CounterMetricFamily("sentra_subscribers_cut", "Streams cut by the server, by reason", labels=["reason"])
        for reason, count in sorted(self.topics.cut_offs.items()):
            cut.add_metric([reason], count)
        yield cut


class Metrics:
    """The counters and histograms Sentra exports at /metrics."""

    def __init__(self, topics: TopicRegistry) -> None:
        self.registry = CollectorRegistry()
        self.lines_ingested = Counter("sentra_lines_ingested", "Lines committed", registry=self.registry)
        self.requests_rejected = Counter(
            "sentra_ingest_rejected",
            "Ingest requests answered with an error (refused, or failed), by status",
            ["status"],
            registry=self.registry,
        )
        self.commit_lines = Histogram(
            "sentra_commit_batch_lines",
            "Lines per group commit",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "sentra_commit_seconds",
            "Time of one group commit",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "sentra_webhook_deliveries",
            "Webhook delivery attempts, by result: delivered, failed (retried), refused (target not allowed; retried),"
            " gave_up",
            ["result"],
            registry=self.registry,
        )
        self.webhook_outbox = Gauge(
            "sentra_webhook_outbox",
            "Webhook messages waiting to be delivered (due or retrying)",
            registry=self.registry,
        )
        # Read from the database at each scrape (MetricsHandler): with several processes, each sees them all.
        self.attachments = Gauge("sentra_attachments", "Attachments stored", registry=self.registry)
        self.attachment_bytes = Gauge(
            "sentra_attachment_bytes", "Bytes of the attachments stored", registry=self.registry
        )
        self.registry.register(_RegistryCollector(topics))

    def observe_commit(self, lines: int, seconds: float) -> None:
        """Record one group commit."""
        self.lines_ingested.inc(lines)
        self.commit_lines.observe(lines)
        self.commit_seconds.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)

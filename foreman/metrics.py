"""`GET /metrics`: what foreman is doing, in Prometheus text format (ADR 0017).

One registry per daemon (tests run several in one process). Counters and histograms
are fed as things happen; gauges that live in the database or in other components
are read when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from foreman.services import Services

_JOB_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _Live(Collector):
    """Values other components keep, read at scrape time."""

    def __init__(self, read: Callable[[], Services]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        services = self._read()
        yield CounterMetricFamily("foreman_model_swaps", "Model loads the worker paid for", value=services.worker.swaps)
        yield CounterMetricFamily(
            "foreman_poll_failures", "Polls of the target that failed", value=services.poller.polls_failed
        )
        up = GaugeMetricFamily("foreman_target_up", "1 when the target answered the last poll, else 0")
        up.add_metric([], 0.0 if services.poller.degraded else 1.0)
        yield up
        deliveries = CounterMetricFamily("foreman_webhook_deliveries", "Webhook attempts, by result", labels=["result"])
        deliveries.add_metric(["delivered"], services.deliverer.delivered)
        deliveries.add_metric(["failed"], services.deliverer.failed_attempts)
        yield deliveries


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Gauge("foreman_jobs", "Jobs not finished, by state", ["state"], registry=self.registry)
        self.queue_depth = Gauge("foreman_queue_depth", "Queued jobs, by model", ["model"], registry=self.registry)
        self.transitions = Counter(
            "foreman_job_transitions", "Job state changes, by the state entered", ["state"], registry=self.registry
        )
        self.job_duration = Histogram(
            "foreman_job_duration_seconds",
            "From the worker taking a job to its end",
            ["endpoint", "state"],
            buckets=_JOB_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "foreman_job_queue_wait_seconds",
            "From submission to the worker taking the job",
            buckets=_JOB_BUCKETS,
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "foreman_http_request_duration_seconds",
            "HTTP requests served",
            ["handler", "method", "status"],
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )
        self._live_bound = False

    def bind(self, services: Services) -> None:
        """Read the live values from `services` at each scrape."""
        if not self._live_bound:
            self.registry.register(_Live(lambda: services))
            self._live_bound = True

    async def render(self, services: Services) -> bytes:
        counts = await services.store.count_by_state()
        for state, count in counts.items():
            self.jobs.labels(state).set(count)
        self.queue_depth.clear()
        for model, count in await services.store.queued_by_model():
            self.queue_depth.labels(model).set(count)
        return generate_latest(self.registry)

"""`GET /metrics`: what foreman is doing, in Prometheus text format (ADR 0017).

One registry per daemon (tests run several in one process). Counters and histograms
are fed as things happen; values other components keep are read when scraped,
through the callables of `LiveValues` (this module imports no other component);
the job counts that live in the database are handed to `render`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

_JOB_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# The `method` label of request metrics: anything else counts as "other", so invented methods
# cannot grow the scrape (one series per method sent).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


@dataclass(frozen=True)
class LiveValues:
    """Where the values other components keep are read, at each scrape."""

    swaps: Callable[[], int]  # model loads the worker paid for
    poll_failures: Callable[[], int]
    target_up: Callable[[], bool]
    deliveries: Callable[[], tuple[int, int]]  # webhook attempts (delivered, failed)
    storage_up: Callable[[], bool]  # the database takes writes
    queue_limit: Callable[[], int]  # max_queue


class _Live(Collector):
    def __init__(self, live: LiveValues) -> None:
        self._live = live

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        live = self._live
        yield CounterMetricFamily("foreman_model_swaps", "Model loads the worker paid for", value=live.swaps())
        yield CounterMetricFamily(
            "foreman_poll_failures", "Polls of the target that failed", value=live.poll_failures()
        )
        up = GaugeMetricFamily("foreman_target_up", "1 when the target answered the last poll, else 0")
        up.add_metric([], 1.0 if live.target_up() else 0.0)
        yield up
        storage = GaugeMetricFamily("foreman_storage_up", "1 while the database takes writes, else 0")
        storage.add_metric([], 1.0 if live.storage_up() else 0.0)
        yield storage
        yield GaugeMetricFamily("foreman_queue_limit", "Queued jobs at most (max_queue)", value=live.queue_limit())
        delivered, failed = live.deliveries()
        deliveries = CounterMetricFamily("foreman_webhook_deliveries", "Webhook attempts, by result", labels=["result"])
        deliveries.add_metric(["delivered"], delivered)
        deliveries.add_metric(["failed"], failed)
        yield deliveries


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Gauge("foreman_jobs", "Jobs not finished, by state", ["state"], registry=self.registry)
        self.queue_depth = Gauge("foreman_queue_depth", "Queued jobs, by model", ["model"], registry=self.registry)
        self.swaps = Counter(
            "foreman_swaps",
            "Loads the worker paid for, by reason (model, options, evicted)",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("model", "options", "evicted"):
            self.swaps.labels(reason)
        self.load_time = Histogram(
            "foreman_load_duration_seconds",
            "How long the target took to load a model for a job",
            buckets=_JOB_BUCKETS,
            registry=self.registry,
        )
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

    def observe_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        label = method if method in _METHODS else "other"
        self.request_duration.labels(handler, label, str(status)).observe(seconds)

    def watch(self, live: LiveValues) -> None:
        """Read `live` at each scrape (once the components it reads exist)."""
        if not self._live_bound:
            self.registry.register(_Live(live))
            self._live_bound = True

    def render(self, counts: dict[str, int], queued_by_model: list[tuple[str, int]]) -> bytes:
        """The text format, with the unfinished jobs by state and the queued ones by model."""
        for state, count in counts.items():
            self.jobs.labels(state).set(count)
        self.queue_depth.clear()
        for model, count in queued_by_model:
            self.queue_depth.labels(model).set(count)
        return generate_latest(self.registry)

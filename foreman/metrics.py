"""`GET /metrics`: what foreman is doing, in Prometheus text format (ADR 0017, 0034).

Counting is plain Python on the hot path (a dict update per transition, a bucket index per
observation); prometheus-client is imported at the first scrape, only to write the text
format, so a process nobody scrapes never loads it. One `Metrics` per daemon (tests run
several in one process). Values other components keep are read when scraped, through the
callables of `LiveValues` (this module imports no other component); the job counts that
live in the database are handed to `render`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
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


class Histogram:
    """Observations by label values: a count per bucket (not cumulative) and their sum."""

    __slots__ = ("bounds", "series")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.series: dict[tuple[str, ...], list[float]] = {}  # [per bucket..., +Inf, sum]

    def observe(self, value: float, *labels: str) -> None:
        counts = self.series.get(labels)
        if counts is None:
            counts = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        counts[bisect_left(self.bounds, value)] += 1  # the first bucket whose bound is >= value
        counts[-1] += value


class Metrics:
    def __init__(self) -> None:
        self.transitions: dict[str, int] = {}  # job state changes, by the state entered
        self.swaps = {"model": 0, "options": 0, "evicted": 0}  # loads the worker paid for, by reason
        self.load_time = Histogram(_JOB_BUCKETS)
        self.job_duration = Histogram(_JOB_BUCKETS)  # by endpoint, state
        self.queue_wait = Histogram(_JOB_BUCKETS)
        self.request_duration = Histogram(_REQUEST_BUCKETS)  # by handler, method, status
        self._live: LiveValues | None = None

    def transition(self, state: str) -> None:
        self.transitions[state] = self.transitions.get(state, 0) + 1

    def swap(self, reason: str) -> None:
        self.swaps[reason] = self.swaps.get(reason, 0) + 1

    def observe_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        label = method if method in _METHODS else "other"
        self.request_duration.observe(seconds, handler, label, str(status))

    def watch(self, live: LiveValues) -> None:
        """Read `live` at each scrape (once the components it reads exist)."""
        self._live = live

    def render(self, counts: dict[str, int], queued_by_model: list[tuple[str, int]]) -> bytes:
        """The text format, with the unfinished jobs by state and the queued ones by model."""
        from prometheus_client import CollectorRegistry, generate_latest  # loaded at the first scrape

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot(list(self._families(counts, queued_by_model))))
        return generate_latest(registry)

    def _families(self, counts: dict[str, int], queued_by_model: list[tuple[str, int]]) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        jobs = GaugeMetricFamily("foreman_jobs", "Jobs not finished, by state", labels=["state"])
        for state, count in counts.items():
            jobs.add_metric([state], count)
        yield jobs
        depth = GaugeMetricFamily("foreman_queue_depth", "Queued jobs, by model", labels=["model"])
        for model, count in queued_by_model:
            depth.add_metric([model], count)
        yield depth
        yield _counter(
            "foreman_swaps", "Loads the worker paid for, by reason (model, options, evicted)", "reason", self.swaps
        )
        yield _histogram(
            "foreman_load_duration_seconds", "How long the target took to load a model for a job", (), self.load_time
        )
        yield _counter("foreman_job_transitions", "Job state changes, by the state entered", "state", self.transitions)
        yield _histogram(
            "foreman_job_duration_seconds",
            "From the worker taking a job to its end",
            ("endpoint", "state"),
            self.job_duration,
        )
        yield _histogram(
            "foreman_job_queue_wait_seconds", "From submission to the worker taking the job", (), self.queue_wait
        )
        yield _histogram(
            "foreman_http_request_duration_seconds",
            "HTTP requests served",
            ("handler", "method", "status"),
            self.request_duration,
        )
        live = self._live
        if live is None:
            return
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


class _Snapshot:
    """The families of one scrape, as a prometheus-client collector."""

    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> list[Any]:
        return self._families


def _counter(name: str, doc: str, label: str, values: dict[str, int]) -> Any:
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name, doc, labels=[label])
    for value, count in values.items():
        family.add_metric([value], count)
    return family


def _histogram(name: str, doc: str, labels: tuple[str, ...], histogram: Histogram) -> Any:
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(name, doc, labels=list(labels))
    bounds = [repr(float(b)) for b in histogram.bounds] + ["+Inf"]  # as Go writes these: 0.001, 1.0
    for values, counts in histogram.series.items():
        cumulative, buckets = 0.0, []
        for bound, count in zip(bounds, counts, strict=False):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric(list(values), buckets, counts[-1])
    return family

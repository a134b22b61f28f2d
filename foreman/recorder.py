"""The recorder: the state machine's sink, where every job change is committed and then told.

A transition is committed through the store (CAS plus outbox event in one
transaction); only then are the others told: the worker's wake-up when a job
becomes queued, the webhook deliverer when a job with a `state_webhook_url` moves,
whoever waits for a job to end, and the transition counter of /metrics
(docs/adr/0010, 0011). The event feeds hear every event the commit wrote, a new
job's `queued` included, as soon as the commit returns (`publish`, which never
waits: docs/adr/0031). Who to tell is passed in at construction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from foreman.events import Event
from foreman.job import Job
from foreman.metrics import Metrics
from foreman.store import JobsTable
from statemachine import TERMINAL, Change, State

log = logging.getLogger(__name__)


def _visible(change: Change) -> bool:
    """Whether this transition reports an outcome, so must survive a power loss before anyone
    hears of it. Other commits survive a crash of foreman and ride on the next fsync (ADR 0011)."""
    return change.dest in TERMINAL


class Recorder:
    def __init__(
        self,
        store: JobsTable,
        metrics: Metrics,
        *,
        wake_worker: Callable[[], None],
        wake_deliverer: Callable[[], None],
        publish: Callable[[Sequence[Event]], None],
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._wake_worker = wake_worker
        self._wake_deliverer = wake_deliverer
        self._publish = publish
        self._hooked: set[str] = set()  # unfinished jobs with a state_webhook_url
        self._terminal_waiters: dict[str, list[asyncio.Future[None]]] = {}

    # --- Sink ------------------------------------------------------------------------------

    async def persist(self, change: Change) -> bool:
        events = await self._store.apply(change, durable=_visible(change))
        self._publish(events)
        return bool(events)

    async def persist_batch(self, create: Job | None, changes: Sequence[Change]) -> bool:
        durable = any(_visible(c) for c in changes) or (create is not None and not create.sync)
        events = await self._store.apply_batch(create, changes, durable)
        self._publish(events)
        return bool(events)

    def notify(self, change: Change) -> None:
        log.debug("job=%s %s -> %s", change.job_id, change.source.value, change.dest.value)
        self._metrics.transition(change.dest.value)
        if change.job_id in self._hooked:
            self._wake_deliverer()
            if change.dest in TERMINAL:
                self._hooked.discard(change.job_id)
        if change.dest is State.QUEUED:
            self._wake_worker()
        elif change.dest in TERMINAL:
            for waiter in self._terminal_waiters.pop(change.job_id, []):
                if not waiter.done():
                    waiter.set_result(None)

    # --- jobs entering the queue -----------------------------------------------------------

    async def create(self, job: Job, max_queued: int | None = None) -> str:
        """Store a new queued job and tell the worker (and the deliverer, for a hooked job).

        Returns its id; for a repeated idempotency key, the id of the job that key made first.
        A synchronous job reports nothing before its end (fsynced); after a power loss before
        that, restart would fail it anyway. An asynchronous one is durable before its 202
        (docs/adr/0011). QueueFull past `max_queued` queued jobs.
        """
        job_id, events = await self._store.create_job(job, durable=not job.sync, max_queued=max_queued)
        self._publish(events)
        if job_id == job.id:
            log.debug("job=%s queued model=%s endpoint=%s kind=%s", job.id, job.model, job.endpoint, job.kind)
            if job.webhook_url:
                self.hooked(job.id)
            self._wake_worker()
        return job_id

    def hooked(self, job_id: str) -> None:
        """The job has a `state_webhook_url`: each of its moves wakes the deliverer."""
        self._hooked.add(job_id)
        self._wake_deliverer()

    # --- waiting for an end ----------------------------------------------------------------

    async def wait_terminal(self, job_id: str, timeout: float | None) -> None:
        """Until the job reaches a terminal state, or `timeout` seconds pass."""
        waiter = asyncio.get_running_loop().create_future()
        self._terminal_waiters.setdefault(job_id, []).append(waiter)
        try:
            job = await self._store.get_job(job_id)
            if job is None or State(job.state) in TERMINAL:
                return
            async with asyncio.timeout(timeout):  # not wait_for: see clock.wait_event
                await asyncio.shield(waiter)
        except TimeoutError:
            pass
        finally:
            waiters = self._terminal_waiters.get(job_id)
            if waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._terminal_waiters[job_id]

    @property
    def waiting(self) -> int:
        """How many jobs someone waits on (tests check nothing is left behind)."""
        return len(self._terminal_waiters)

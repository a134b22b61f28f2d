"""The job service: submitting, cancelling and watching jobs, shared by handlers and the worker.

It is also the state machine's `Sink`: a transition is persisted through the store
(CAS plus outbox event in one transaction), then waiters are woken. Only the
worker drives a running job; a handler cancels a queued job with a CAS, and a
running one by asking the worker (docs/adr/0002).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from foreman.clock import new_id, now
from foreman.errors import Unavailable
from foreman.jobs import Job, Submission, new_job
from foreman.metrics import Metrics
from foreman.store import Store
from foreman.target import Exchange
from statemachine import TERMINAL, Change, JobFlow, Lifecycle, State, Trigger

log = logging.getLogger(__name__)


def _visible(change: Change) -> bool:
    """Whether this transition reports an outcome, so must survive a power loss before anyone
    hears of it. Other commits survive a crash of foreman and ride on the next fsync (ADR 0011)."""
    return change.dest in TERMINAL


class CallerGone(Exception):
    """The synchronous client closed its connection."""


class Caller(Protocol):
    """A client waiting on its job over HTTP (implemented in foreman/relay.py)."""

    upstream_headers: dict[str, str]
    job_id: str | None
    gone: bool

    @property
    def started(self) -> bool:
        """True once any byte of the answer went to the client."""
        ...

    async def begin(self, status: int, headers: list[tuple[str, str]]) -> None: ...

    async def send(self, data: bytes) -> None:
        """Write and flush one piece of the answer; raises CallerGone."""
        ...

    def reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """The whole answer at once (non-streamed, or an error before any byte)."""
        ...

    def end(self, last: bytes = b"") -> None:
        """Finish a started answer, optionally with one last line."""
        ...

    @property
    def answered(self) -> bool:
        """True once the caller's response is over (or it is gone)."""
        ...

    def abandon(self, message: str, status: int = 499) -> None:
        """End the caller's response with an error: its job ended without an answer."""
        ...


@dataclass
class Running:
    """The job the worker is running now, as far as others may see and touch it."""

    job: Job
    flow: JobFlow
    caller: Caller | None
    started: float = field(default_factory=now)
    chunks: int = 0
    exchange: Exchange | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)  # the target's, to relay
    cancel_reason: str | None = None

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        if self.exchange is not None:
            self.exchange.abort()


class JobService:
    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self.lifecycle = Lifecycle(self)
        self.running: Running | None = None
        self._callers: dict[str, Caller] = {}
        self._terminal_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._wake_worker: Callable[[], None] = lambda: None
        self._wake_deliverer: Callable[[], None] = lambda: None
        self._hooked: set[str] = set()  # unfinished jobs with a state_webhook_url
        self._offer: Callable[[Job], bool] = lambda job: False
        self.accepting = True
        self._background: set[asyncio.Future[Job | None]] = set()

    def attach_deliverer(self, wake: Callable[[], None]) -> None:
        """Register the webhook deliverer's wake-up (called when a hooked job moves)."""
        self._wake_deliverer = wake

    def attach_worker(self, wake: Callable[[], None], offer: Callable[[Job], bool]) -> None:
        """Register the worker's wake-up (called whenever a job becomes queued) and its
        `offer`, which takes a new job straight away when the worker is idle with nothing
        queued; it then creates the job itself, in the same commit as `loading`/`working`."""
        self._wake_worker = wake
        self._offer = offer

    # --- Sink ------------------------------------------------------------------------------

    async def persist(self, change: Change) -> bool:
        return await self.store.apply(change, durable=_visible(change))

    async def commit(self, new: Job | None, batch: list[Change]) -> bool:
        """Commit a worker's staged transitions (and the job itself when `new`): all or nothing."""
        durable = any(_visible(c) for c in batch) or (new is not None and not new.sync)
        if not await self.store.apply_batch(new, batch, durable):
            return False
        for change in batch:  # staged transitions are told only once they are on disk
            self.notify(change)
        return True

    def notify(self, change: Change) -> None:
        log.debug("job=%s %s -> %s", change.job_id, change.source.value, change.dest.value)
        self.metrics.transitions.labels(change.dest.value).inc()
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

    # --- for handlers ----------------------------------------------------------------------

    async def submit(self, sub: Submission, caller: Caller | None = None) -> str:
        """Queue a job (or hand a synchronous one to an idle worker); returns its id.

        For a repeated idempotency key, the id of the job that key made first.
        """
        if not self.accepting:
            raise Unavailable("foreman is shutting down; try again shortly")
        job = new_job(sub, new_id(), now())
        if caller is not None:
            # Attach before the row exists, so the worker never sees a sync job without its caller.
            caller.job_id = job.id
            self._callers[job.id] = caller
            self.metrics.transitions.labels(State.QUEUED.value).inc()
            if self._offer(job):
                return job.id
        try:
            # A synchronous job reports nothing before its end (fsynced); after a power loss
            # before that, restart would fail it anyway. An asynchronous one is durable before
            # its 202 (docs/adr/0011).
            job_id = await self.store.create_job(job, durable=not sub.sync)
        except BaseException:
            self._callers.pop(job.id, None)
            raise
        if job_id == job.id:
            if caller is None:
                self.metrics.transitions.labels(State.QUEUED.value).inc()
            log.debug("job=%s queued model=%s endpoint=%s kind=%s", job.id, job.model, job.endpoint, job.kind)
            if job.webhook_url:
                self._hooked.add(job.id)
                self._wake_deliverer()
            self._wake_worker()
        return job_id

    def caller(self, job_id: str) -> Caller | None:
        return self._callers.get(job_id)

    def detach(self, job_id: str) -> None:
        self._callers.pop(job_id, None)

    def cancel_soon(self, job_id: str, reason: str) -> None:
        """Cancel from a synchronous callback (a client that hung up)."""
        task = asyncio.ensure_future(self.cancel(job_id, reason))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def cancel(self, job_id: str, reason: str) -> Job | None:
        """Cancel a queued job here, or ask the worker to cancel the running one.

        Returns the job as it stands afterwards (None if unknown).
        """
        if self._cancel_running(job_id, reason):
            return await self.store.get_job(job_id)
        job = await self.store.get_job(job_id)
        if job is not None and job.state == State.QUEUED.value:
            with self.lifecycle.flow(job.id, State.QUEUED) as flow:
                if await flow.move(Trigger.CANCEL, fields={"error": reason, "finished_at": now()}):
                    caller = self._callers.pop(job_id, None)
                    if caller is not None:
                        caller.abandon(f"job cancelled: {reason}")
                    return await self.store.get_job(job_id)
        self._cancel_running(job_id, reason)  # the worker took it meanwhile (or it was not a row yet)
        return job if job is None else await self.store.get_job(job_id)

    def _cancel_running(self, job_id: str, reason: str) -> bool:
        running = self.running
        if running is not None and running.job.id == job_id:
            running.cancel(reason)
            return True
        return False

    async def wait_terminal(self, job_id: str, timeout: float | None) -> None:
        """Until the job reaches a terminal state, or `timeout` seconds pass."""
        waiter = asyncio.get_running_loop().create_future()
        self._terminal_waiters.setdefault(job_id, []).append(waiter)
        try:
            job = await self.store.get_job(job_id)
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

    async def recover(self, max_attempts: int) -> None:
        """At start: finish what a crash or kill interrupted (CONTRACT section 4).

        Synchronous jobs lost their caller with the old process: failed. Asynchronous jobs
        found loading/working go back to the queue with attempt + 1.
        """
        stranded = await self.store.jobs_in((State.QUEUED, State.LOADING, State.WORKING))
        for job in stranded:
            if job.webhook_url:
                self._hooked.add(job.id)
            with self.lifecycle.flow(job.id, job.state) as flow:
                if job.sync:
                    await flow.move(Trigger.FAIL, fields={"error": "interrupted by restart", "finished_at": now()})
                elif job.state != State.QUEUED.value and job.attempt >= max_attempts:
                    # The poison-job guard holds across restarts too (a job that kills foreman).
                    message = f"gave up after {job.attempt} attempts: interrupted by restart"
                    await flow.move(Trigger.FAIL, fields={"error": message, "finished_at": now()})
                elif job.state != State.QUEUED.value:
                    await flow.move(Trigger.REQUEUE, fields={"attempt": job.attempt + 1})
                log.info("job=%s recovered after restart: %s", job.id, flow.state)

"""The job service: what handlers do to jobs (submit, cancel, wait for an end) and the
recovery at start.

Only the worker drives a running job (docs/adr/0002): a queued job is cancelled here
with a compare-and-swap, a running one by asking the worker (`cancel_running`). A new
synchronous job is first offered to the worker (`offer`), which takes it straight
away when it is idle with nothing queued (docs/adr/0012). Both are passed in at
construction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from foreman.caller import Caller, Callers
from foreman.clock import new_id, now
from foreman.errors import Unavailable
from foreman.job import Job, Submission, new_job
from foreman.metrics import Metrics
from foreman.recorder import Recorder
from foreman.store import JobsTable
from statemachine import Lifecycle, State, Trigger

log = logging.getLogger(__name__)


class JobService:
    def __init__(
        self,
        store: JobsTable,
        recorder: Recorder,
        lifecycle: Lifecycle,
        callers: Callers,
        metrics: Metrics,
        *,
        offer: Callable[[Job, Caller], bool],
        cancel_running: Callable[[str, str], bool],
        max_queue: int,
    ) -> None:
        self.max_queue = max_queue
        self._store = store
        self._recorder = recorder
        self._lifecycle = lifecycle
        self._callers = callers
        self._metrics = metrics
        self._offer = offer
        self._cancel_running = cancel_running
        self.accepting = True
        self._background: set[asyncio.Future[Job | None]] = set()

    async def submit(self, sub: Submission, caller: Caller | None = None) -> str:
        """Queue a job (or hand a synchronous one to an idle worker); returns its id.

        For a repeated idempotency key, the id of the job that key made first.
        """
        if not self.accepting:
            raise Unavailable("foreman is shutting down; try again shortly")
        job = new_job(sub, new_id(), now())
        if caller is not None:
            # Attach before the row exists, so the worker never sees a sync job without its caller.
            self._callers.add(job.id, caller)
            self._metrics.transition(State.QUEUED.value)
            if self._offer(job, caller):
                return job.id
        try:
            job_id = await self._recorder.create(job, self.max_queue)
        except BaseException:
            self._callers.pop(job.id)
            raise
        if caller is None and job_id == job.id:
            self._metrics.transition(State.QUEUED.value)
        return job_id

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
            return await self._store.get_job(job_id)
        job = await self._store.get_job(job_id)
        if job is not None and job.state == State.QUEUED.value:
            with self._lifecycle.flow(job.id, State.QUEUED) as flow:
                if await flow.move(Trigger.CANCEL, fields={"error": reason, "finished_at": now()}):
                    caller = self._callers.pop(job_id)
                    if caller is not None:
                        caller.abandon(f"job cancelled: {reason}")
                    return await self._store.get_job(job_id)
        self._cancel_running(job_id, reason)  # the worker took it meanwhile (or it was not a row yet)
        return job if job is None else await self._store.get_job(job_id)

    async def wait_terminal(self, job_id: str, timeout: float | None) -> None:
        """Until the job reaches a terminal state, or `timeout` seconds pass."""
        await self._recorder.wait_terminal(job_id, timeout)

    async def recover(self, max_attempts: int) -> None:
        """At start: finish what a crash or kill interrupted (docs/contract.md section 4).

        Synchronous jobs lost their caller with the old process: failed. Asynchronous jobs
        found loading/working go back to the queue with attempt + 1.
        """
        stranded = await self._store.jobs_in((State.QUEUED, State.LOADING, State.WORKING))
        for job in stranded:
            if job.webhook_url:
                self._recorder.hooked(job.id)
            with self._lifecycle.flow(job.id, job.state) as flow:
                if job.sync:
                    await flow.move(Trigger.FAIL, fields={"error": "interrupted by restart", "finished_at": now()})
                elif job.state != State.QUEUED.value and job.attempt >= max_attempts:
                    # The poison-job guard holds across restarts too (a job that kills foreman).
                    message = f"gave up after {job.attempt} attempts: interrupted by restart"
                    await flow.move(Trigger.FAIL, fields={"error": message, "finished_at": now()})
                elif job.state != State.QUEUED.value:
                    await flow.move(Trigger.REQUEUE, fields={"attempt": job.attempt + 1})
                log.info("job=%s recovered after restart: %s", job.id, flow.state)

"""The worker: one coroutine, one generation at a time, ever (docs/adr/0002).

It chooses the next job (drain-by-model: the resident model's queue empties before
a swap is paid), or waits until there may be one, and runs it as a `JobRun`, which
it owns while it runs: others cancel a running job through `cancel`, and read it
through `running`. A new synchronous job may be `offer`ed to an idle worker, which
then creates it in the same commit as its first transitions (docs/adr/0012). The
loop never dies: it logs, marks the job, continues. When the store stops taking writes
it pauses, sending nothing to the target, until they commit again (docs/adr/0026).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from foreman.caller import Caller, Callers
from foreman.clock import now, wait_event
from foreman.config import Settings
from foreman.errors import StorageUnavailable
from foreman.job import Job
from foreman.job_run import JobRun, RunContext, job_request
from foreman.metrics import Metrics
from foreman.poller import Poller
from foreman.residency import SWAP_REASONS, Residency
from foreman.store import JobsTable
from foreman.target import Exchange, TargetClient
from statemachine import TERMINAL, Lifecycle, State, Trigger

log = logging.getLogger(__name__)


_STORAGE_PAUSE_FIRST = 0.5  # seconds before the first try after a failed commit
_STORAGE_PAUSE_MAX = 10.0


class Wakeup:
    """Whether the queue may hold runnable jobs the worker has not looked at.

    Everything that queues a job pokes it (through the recorder), so an idle worker
    skips the database entirely until then.
    """

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.stale = True

    def poke(self) -> None:
        self.stale = True
        self.event.set()


class Offer:
    """A new synchronous job handed straight to the idle worker, not in the database yet.

    `exchange` is its request, already on its way when no model load was due."""

    def __init__(self, job: Job, caller: Caller | None, exchange: Exchange | None) -> None:
        self.job, self.caller, self.exchange = job, caller, exchange


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    """Until the first of `waits` completes; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


class Worker:
    def __init__(
        self,
        settings: Settings,
        store: JobsTable,
        target: TargetClient,
        poller: Poller,
        *,
        lifecycle: Lifecycle,
        callers: Callers,
        wakeup: Wakeup,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._max_job_time = settings.max_job_time
        self._max_wait = settings.max_wait
        self._loading_s = 0.0  # time spent loading models, since start
        self._busy_s = 0.0  # time spent running jobs, since start
        self._target = target
        self._poller = poller
        self._lifecycle = lifecycle
        self._callers = callers
        self._wakeup = wakeup
        self._metrics = metrics
        self.residency = Residency(poller, settings.embed_model)
        self._ctx = RunContext(settings, target, poller, self.residency)
        self.running: JobRun | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiting_on_empty_queue = False
        self._offer: Offer | None = None
        self._next_wakeup: float | None = None  # earliest not_before of a backed-off job
        self._storage_pause = _STORAGE_PAUSE_FIRST  # grows while the store keeps failing

    @property
    def resident(self) -> str | None:
        return self.residency.model

    @property
    def resident_runner(self) -> str | None:
        return self.residency.runner

    @property
    def swaps(self) -> int:
        return self.residency.swaps

    @property
    def swaps_by_reason(self) -> dict[str, int]:
        return {reason: self.residency.swaps_by_reason[reason] for reason in SWAP_REASONS}

    @property
    def loading_share(self) -> float | None:
        """The share of the worker's busy time spent loading models, since start."""
        return round(self._loading_s / self._busy_s, 4) if self._busy_s > 0 else None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def stop(self, grace: float = 10.0) -> None:
        """Let the running job end within `grace` seconds, else cancel it (restart recovers it)."""
        self._stopping.set()
        self._wakeup.poke()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:
            log.warning("worker did not stop within %gs; cancelling the running job", grace)
            self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker step failed; continuing")
                await asyncio.sleep(1.0)

    async def run_once(self) -> bool:
        """Run the next runnable job, or wait until there may be one. True if a job ran."""
        if not self._poller.up:
            await _first(self._poller.wait_up(), self._stopping.wait())
            return False
        wakeup = self._wakeup
        if wakeup.stale:
            wakeup.stale = False
            wakeup.event.clear()  # before looking, so a poke during the look is not lost
            self.residency.check()
            job, jumped = await self._next()
            if job is not None:
                wakeup.stale = True  # there may be more
                await self._run(job, self._callers.get(job.id), jumped=jumped)
                return True
            self._next_wakeup = await self._store.next_wakeup()
        await self._idle()
        offer, self._offer = self._offer, None
        if offer is None:
            return False
        await self._run(offer.job, offer.caller, unsaved=True, exchange=offer.exchange)
        return True

    async def _next(self) -> tuple[Job | None, bool]:
        """The next job by drain-by-runner (docs/adr/0029), and whether `max_wait` sent it
        ahead of the resident runner's jobs."""
        at = now()
        compatible = self.residency.compatible()
        if self._max_wait > 0:
            waited = await self._store.oldest_waiting(at - self._max_wait, at)
            if waited is not None and waited.runner not in compatible:
                log.info("job=%s waited over max_wait: it goes next, ahead of the resident runner", waited.id)
                return waited, True
        return await self._store.next_queued(compatible, at), False

    def offer(self, job: Job, caller: Caller | None) -> bool:
        """Take a new job at once if idle with nothing runnable queued (docs/adr/0012).

        True means the worker now owns it: it will create the job itself, in the same
        commit as its first transitions, while its request already travels to the target.
        """
        wakeup = self._wakeup
        if not self._waiting_on_empty_queue or wakeup.event.is_set() or wakeup.stale or not self._poller.up:
            return False
        if not self._store.health.ok:
            return False  # the submit's own commit will say why
        exchange = None
        if not self.residency.needs_load(job):
            # The request leaves now, in the handler's turn of the loop, not the worker's next.
            exchange = job_request(self._target, job, caller)
            exchange.send()
        self._offer = Offer(job, caller, exchange)
        wakeup.event.set()
        return True

    def cancel(self, job_id: str, reason: str) -> bool:
        """Cancel `job_id` if it is the running job (its upstream request is closed at once)."""
        running = self.running
        if running is not None and running.job.id == job_id:
            running.cancel(reason)
            return True
        return False

    async def _idle(self) -> None:
        timeout = None if self._next_wakeup is None else max(0.0, self._next_wakeup - now())
        self._waiting_on_empty_queue = True
        try:
            if not await wait_event(self._wakeup.event, timeout):
                self._wakeup.stale = True  # a backed-off job is due
        finally:
            self._waiting_on_empty_queue = False
            self._wakeup.event.clear()  # consumed: `stale` and `_offer` carry what it meant

    async def _run(
        self,
        job: Job,
        caller: Caller | None,
        *,
        unsaved: bool = False,
        exchange: Exchange | None = None,
        jumped: bool = False,
    ) -> None:
        with self._lifecycle.flow(job.id, State.QUEUED) as flow:
            if job.sync and caller is None:
                if exchange is not None:
                    exchange.abort()
                await flow.move(Trigger.FAIL, fields={"error": "interrupted: its caller is gone", "finished_at": now()})
                return
            run = JobRun(self._ctx, job, flow, caller, unsaved=unsaved, exchange=exchange, jumped=jumped)
            self.running = run
            self._metrics.queue_wait.observe(max(0.0, run.started - job.created_at))
            limit = self._max_job_time
            timer = asyncio.get_running_loop().call_later(limit, run.time_out, limit) if limit > 0 else None
            try:
                await run.run_to_end()
            finally:
                if timer is not None:
                    timer.cancel()
                self.running = None
                self._account(run)
                if flow.current in TERMINAL or (caller is not None and caller.answered):
                    self._callers.pop(job.id)
                    self._metrics.job_duration.observe(now() - run.started, job.endpoint, flow.state)
        if run.storage_fault is not None:
            await self._after_storage_fault(job, run.storage_fault)
        else:
            self._storage_pause = _STORAGE_PAUSE_FIRST

    def _account(self, run: JobRun) -> None:
        self._busy_s += now() - run.started
        self._loading_s += run.loading_s
        if run.swap is not None:
            self._metrics.swap(run.swap[0])
            if run.load_duration:
                self._metrics.load_time.observe(run.load_duration / 1e9)

    async def _after_storage_fault(self, job: Job, fault: StorageUnavailable) -> None:
        """A commit of `job` failed for the storage's sake: pause (nothing is sent to the target
        meanwhile), then, once the store writes again, settle the job as the database has it:
        one left `loading`/`working` goes back to the queue (asynchronous: its attempt not
        counted) or fails (synchronous: its caller was told 503). docs/adr/0026."""
        log.warning("job=%s: %s; the worker pauses until the store writes again", job.id, fault.message)
        while not self._stopping.is_set():
            await _first(asyncio.sleep(self._storage_pause), self._stopping.wait())
            self._storage_pause = min(self._storage_pause * 2, _STORAGE_PAUSE_MAX)
            try:
                await self._settle_after_fault(job, fault)
            except StorageUnavailable:
                continue
            log.info("job=%s: the store writes again; the worker resumes", job.id)
            return

    async def _settle_after_fault(self, job: Job, fault: StorageUnavailable) -> None:
        row = await self._store.get_job(job.id)
        if row is None or row.state not in (State.LOADING.value, State.WORKING.value):
            await self._store.probe()  # nothing to settle: only whether the store writes
            return
        with self._lifecycle.flow(job.id, row.state) as flow:
            if job.sync:
                error = f"interrupted: {fault.message}"
                await flow.move(Trigger.FAIL, fields={"error": error, "finished_at": now()})
            else:
                await flow.move(Trigger.REQUEUE)
